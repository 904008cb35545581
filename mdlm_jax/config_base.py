"""The base configuration: every key any experiment may set is declared here, once.

Experiment files in ``configs/`` call :func:`base_config`, override what they need and
return the locked result. ``--config.key=value`` overrides are checked against these
declarations; an unknown key is an error naming the nearest valid key.
"""

from __future__ import annotations

import difflib

import ml_collections as mlc

# Logical axis -> mesh axes. ``None`` means replicated.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("cond", None),
    ("lora_rank", "tensor"),  # taken only where the adapter's feature axes leave it free
)


def base_config() -> mlc.ConfigDict:
    c = mlc.ConfigDict()
    c.seed = 0

    # ---------------------------------------------------------------- model
    m = c.model = mlc.ConfigDict()
    m.family = "dit"  # dit (MDLM DiT) | llama (LLaDA / Llama / Qwen2 / Dream)
    m.vocab_size = 258
    m.d_model = 128
    m.n_layers = 4
    m.n_heads = 4
    m.n_kv_heads = 0  # 0: same as n_heads (MHA); fewer: GQA
    m.head_dim = 0  # 0: d_model // n_heads
    m.mlp_dim = 512
    m.max_length = 1024
    m.rope_theta = 10000.0
    m.rope_scaling = "none"  # none | llama3 (Llama-3.1 frequency rescaling)
    m.rope_scaling_factor = 8.0  # llama3: long-context factor
    m.rope_low_freq_factor = 1.0  # llama3
    m.rope_high_freq_factor = 4.0  # llama3
    m.rope_original_max_length = 8192  # llama3: the pre-extension context length
    m.qkv_bias = False
    m.causal = False  # True: autoregressive baseline
    m.logit_shift = False  # Dream: logits at i predict token i+1, shifted back by one
    m.time_conditioning = False  # DiT adaLN-zero on the noise level
    m.cond_dim = 128  # width of the time embedding (DiT)
    m.norm_eps = 1e-5
    m.tie_embeddings = False
    m.dtype = "float32"  # compute dtype
    m.param_dtype = "float32"
    m.attention_impl = "auto"  # auto: cuDNN on GPU, splash on TPU, XLA on CPU | xla | cudnn
    m.remat_policy = "none"  # none | full | dots_saveable | nothing_saveable | ...
    m.scan_layers = True
    m.init_std = 0.02
    m.init_from = ""  # a HF-format directory to load weights from (checkpoint.hf)
    m.imported_from = ""  # family of imported published weights (llada | dream | ...): hf

    # ----------------------------------------------------------- diffusion
    d = c.diffusion = mlc.ConfigDict()
    d.schedule = "loglinear"  # linear | loglinear | cosine | polynomial
    d.schedule_eps = 1e-3  # log-linear: mask prob (1 - eps) t
    d.schedule_power = 2.0  # polynomial: alpha = 1 - t^k
    d.mask_id = 257
    d.time_eps = 1e-3  # t = (1 - eps) u + eps (LLaDA p_mask floor: linear + time_eps)
    d.antithetic = True  # t_i = (u + i / B) mod 1
    d.random_crop_prob = 0.0  # LLaDA: share of batches cropped to a random length

    # ---------------------------------------------------------------- loss
    lo = c.loss = mlc.ConfigDict()
    lo.terms = mlc.ConfigDict({"nelbo": 1.0})  # term name -> weight
    lo.normalize = "tokens"  # tokens: divide by valid tokens; sequence: by sequences
    lo.logits_chunk = 0  # positions projected to the vocabulary at a time (0: all at once)
    lo.normalize = "auto"  # tokens | sequence | auto (prompt/answer data: sequence, LLaDA's
    # SFT objective, each sequence by its own answer length; else tokens): losses.normalization
    ma = lo.mask_agnostic = mlc.ConfigDict()  # PAPER.md section 5 (diffusion/mask_agnostic.py)
    ma.alpha = 0.1  # weight of L_CE
    ma.beta = 1.0  # weight of L_TV (>= 0; 0: CE-only)
    ma.p_low = 0.2  # answer mask probability p ~ U(p_low, p_high)
    ma.p_high = 0.8
    ma.max_masks = 600  # most appended masks l_i (after the curriculum)
    ma.curriculum_start = 8  # max_masks at step 0 when curriculum_steps > 0
    ma.curriculum_steps = 0  # 0: no curriculum (max_masks from the start)
    ma.tv_half = False  # True: TV = L1 / 2 (the paper uses the plain L1 distance)
    ma.stop_gradient_branch = "none"  # none | first | second
    ma.pretrain_answer_len = 64  # batches without answer_mask: answer window length
    ma.probe_mask_counts = (0, 8, 32, 128)  # invariance report (before / after training)

    # ---------------------------------------------------------------- data
    da = c.data = mlc.ConfigDict()
    da.name = "embedded"  # embedded | text_files | openwebtext | prompt_answer | context_tasks
    da.data_dir = ""  # TFDS data_dir ('' : $TFDS_DATA_DIR or ~/tensorflow_datasets)
    da.files = ""  # glob of local files for text_files / prompt_answer
    da.tokenizer = "char"  # char | gpt2 | kjv_bpe | hf
    da.tokenizer_path = ""  # gpt2: folder with encoder.json + vocab.bpe; hf: tokenizer.json
    da.chat_template = ""  # prompt_answer: name of a chat template ('' : none)
    da.eos_id = -1  # EOS / padding id: -1 reads it from the tokenizer (tokenizers.eos_id);
    # a recipe that describes a model without its files may state it (must match)
    da.seq_len = 128
    da.packing = "wrap"  # wrap (MDLM: EOS between documents) | pad (LM1B-style)
    da.global_batch_size = 32
    da.train_split = "train"
    da.eval_split = "validation"
    da.shuffle = True
    da.num_workers = 0
    ct = da.context_tasks = mlc.ConfigDict()  # the generated task corpus (task_documents.py)
    ct.fraction = 0.5  # share of tokens from task documents (the rest: the embedded corpus)
    ct.documents = 20000  # task documents in the train split (validation: 1 in 50)
    ct.max_relevant = 4  # relevant examples per document: 1..max_relevant
    ct.max_distractors = 8  # distractor examples: 0..max_distractors (fewer if too long)
    ct.max_filler = 32  # masks or ' .' after the last question: 1..max_filler
    ct.seed = 0

    # ----------------------------------------------------------- optimizer
    o = c.optimizer = mlc.ConfigDict()
    o.learning_rate = 3e-4
    o.warmup_steps = 100
    o.decay = "cosine"  # cosine | constant | linear
    o.min_lr_ratio = 0.1
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0
    o.grad_clip = 1.0
    o.ema_decay = 0.0  # 0: no EMA
    o.grad_accum_steps = 1

    # --------------------------------------------------------------- train
    t = c.train = mlc.ConfigDict()
    t.num_steps = 1000
    t.log_every = 20  # > 0 (steps between metric lines)
    t.eval_every = 0  # >= 0; 0 means never during training (evaluated once at the end)
    t.progress_bar = True
    t.eval_at_end = True  # the eval command's NELBO / NLL once training reaches num_steps
    t.sample_at_end = True  # one sample per strategy at the end (diffusion terms)
    t.peak_flops_per_device = 0.0  # for MFU; 0: look up by device kind
    t.check_token_ids = True  # refuse batches with ids outside the vocabulary

    # ---------------------------------------------------------------- mesh
    me = c.mesh = mlc.ConfigDict()
    me.shape = (-1, 1, 1)  # (data, fsdp, tensor); one -1 takes the remaining devices
    me.rules = DEFAULT_RULES

    # ---------------------------------------------------------- checkpoint
    ck = c.checkpoint = mlc.ConfigDict()
    ck.every_steps = 500  # > 0 (also saved at the end and on SIGTERM)
    ck.keep = 3
    ck.async_save = True
    ck.restore_from = ""  # initialise from another workdir's latest checkpoint

    # -------------------------------------------------------------- lora
    lr = c.lora = mlc.ConfigDict()  # model/lora.py
    lr.rank = 0  # 0: no LoRA
    lr.full_finetune = False  # True: train every weight of a model given by model.init_from
    # or checkpoint.restore_from (needs rank 0); such a run with rank 0 must say so
    lr.alpha = 16.0  # adapter scale alpha / rank
    lr.targets = ("q", "k", "v", "o")  # projection names: q k v o gate up down fc_in fc_out

    # ------------------------------------------------------------- sampler
    s = c.sampler = mlc.ConfigDict()
    s.strategy = "ancestral"  # ancestral | confidence | threshold
    s.steps = 64
    s.gen_length = 128
    s.block_length = 128
    s.batch_size = 4
    s.prompt = ""
    s.extra_masks = 0
    s.temperature = 1.0
    s.top_k = 0
    s.top_p = 1.0
    s.time_grid = "uniform"  # ancestral: uniform | cosine
    s.use_cache = True  # ancestral: MDLM's cache
    s.remasking = "low_confidence"  # confidence: low_confidence | random
    s.threshold = 0.9  # threshold strategy: tau
    s.kv_cache = "none"  # none | prefix | dual
    s.mask_in_softmax = "auto"  # auto | keep | drop: parameterization.resolve_mask_in_softmax
    s.suppress_eos_confidence = False
    s.eos_id = -1  # EOS / end-of-turn id whose confidence is suppressed (-1: data's EOS)
    s.seed = 0
    s.eval_model_workdir = ""  # workdir of a causal (ar_nll) model scoring sample perplexity

    # ------------------------------------------------------------- context
    cx = c.context = mlc.ConfigDict()  # the context-comprehension suite (mdlm_jax/context)
    cx.experiment = "extra_masks"  # see mdlm_jax/context/experiments.py (EXPERIMENTS)
    cx.model_path = ""  # a workdir of this project or a HuggingFace model directory
    cx.model_name = ""  # label in the results ('' : the directory's name)
    cx.dtype = "bfloat16"  # weights and compute dtype while scoring
    cx.seed = 0  # the test points (questions, examples, orders)
    cx.relevant_tasks = ("adjective", "verb", "animal", "colour", "fruit", "country",
                         "sport", "instrument")
    cx.distractor_tasks = ("smallest", "largest")
    cx.words = "all"  # all | heldout (the evaluation words of models trained on the
    # context_tasks corpus) | train (its training words): context/tasks.py word_lists
    cx.points = 1000  # test points per task pair
    cx.n_relevant = 10  # in-context examples of the relevant task
    cx.n_distractors = 40  # in-context examples of the distractor task
    cx.positions = (0, 5, 10, 15, 20, 25, 30, 35, 40)  # relevant block starts (1, 2, 8)
    cx.locations = ("left", "middle", "right")  # test question location (2)
    cx.mask_counts = (0, 1, 2, 5, 10, 20, 50, 100, 150, 200)  # extra masks k (4, 6, 7)
    cx.locality_mask_counts = (2, 50, 100, 200)  # extra masks of the locality sweep (8)
    cx.distractor_counts = (0, 5, 10, 15, 20, 25, 30)  # context length sweep (5)
    cx.fixed_masks = 2  # (5) masks in the input, answer slot included
    cx.mask_fraction = 0.2  # (5) masks as a share of the input length
    cx.order_seeds = 30  # (3, 9) random orders per test question
    cx.attribution_points = 20  # (3, 9) test questions per task pair
    cx.attribution_masks = 50  # (9) extra masks appended
    cx.decode_steps = 40  # (7) sampler steps decoding the answer slot and the k masks
    cx.batch_size = 8  # rounded up to a multiple of the data-parallel size
    cx.length_multiple = 64  # prompt lengths padded up to a multiple (fewer compiles)
    cx.progress_bar = True
    cx.eval_at_end = False  # (10) mask-sensitivity evaluation at the end of training
    cx.sensitivity_counts = (0, 8, 32, 128)  # (10) extra masks k
    cx.sensitivity_points = 8  # (10) test points per task pair

    # ---------------------------------------------------------------- eval
    e = c.eval = mlc.ConfigDict()
    e.mc_samples = 4  # Monte Carlo time samples per sequence
    e.num_batches = 8  # >= 0; 0: the whole split
    e.batch_size = 32
    e.use_ema = True

    # ----------------------------------------------------------- benchmark
    b = c.benchmark = mlc.ConfigDict()  # lm-evaluation-harness runs (mdlm_jax/benchmark/)
    b.path = ""  # a workdir of this project or a HF model directory
    b.dtype = ""  # HF directories: parameter/compute dtype ('' : as stored)
    b.tasks = ""  # comma-separated lm-eval task names
    b.include_path = ""  # a folder of extra lm-eval task YAML files
    b.builtin_tasks = True  # False: only the tasks of include_path (no index of lm-eval's)
    b.num_fewshot = -1  # -1: the task's default
    b.fewshot_as_multiturn = False
    b.chat_template = ""  # '' (plain) | llada (LLaDA / Llama-3 turns)
    b.limit = 0  # 0: every document; n: the first n per task
    b.batch_size = 8  # generate_until rows per sampler call (a multiple of the data axes)
    b.mc_samples = 128  # loglikelihood: Monte Carlo samples per request (MDLM)
    b.mc_batch_size = 32  # loglikelihood: rows per model call (divides mc_samples)
    b.cfg_scale = 0.0  # classifier-free guidance (likelihood and generation; 0: off)
    b.greedy_check = False  # MDLM loglikelihood is_greedy by LLaDA's one-token-a-step decode
    b.stop_at_eos = True  # cut generations at the first end-of-text token
    b.rolling_batch_size = 8  # loglikelihood_rolling windows per model call
    b.output_dir = "benchmarks"  # result JSON files (never overwritten)
    b.source = ""  # where the recipe's settings and published score come from
    b.published = ""  # the published score(s) beside the recipe, as text
    b.seed = 1234
    return c


def lock(config: mlc.ConfigDict) -> mlc.ConfigDict:
    config.lock()
    return config


def nearest_key(config: mlc.ConfigDict, dotted: str) -> str | None:
    """The declared key closest to ``dotted`` (for 'did you mean' errors)."""
    keys = list(flat_keys(config))
    match = difflib.get_close_matches(dotted, keys, n=1, cutoff=0.0)
    return match[0] if match else None


def flat_keys(config, prefix="", *, whole=()):
    """Dotted keys of a ConfigDict; the groups named in ``whole`` (e.g. ``loss.terms``,
    whose entries are data) count as one key."""
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, mlc.ConfigDict) and name not in whole:
            yield from flat_keys(v, name + ".", whole=whole)
        else:
            yield name


def parse_arg(arg, *, config_name: str, flags=(), keys=()) -> tuple[set, dict]:
    """A config's argument string ``'flag,key=value,...'`` -> ``(flags, values)``.

    Unknown flags or keys are an error naming the valid ones.
    """
    got_flags, values = set(), {}
    for item in filter(None, (arg or "").split(",")):
        key, eq, value = item.partition("=")
        if eq:
            values[key] = value
        else:
            got_flags.add(key)
    unknown = (got_flags - set(flags)) | (set(values) - set(keys))
    if unknown:
        valid = [*flags, *(f"{k}=..." for k in keys)]
        raise ValueError(f"{config_name}: unknown config args {sorted(unknown)}; valid: "
                         f"{', '.join(valid) or 'none'}")
    return got_flags, values


def shrink_for_smoke(c: mlc.ConfigDict) -> None:
    """A few tiny steps of any config (the ``smoke`` arg used by tests)."""
    c.data.global_batch_size = 8
    c.optimizer.warmup_steps = 2
    c.optimizer.grad_accum_steps = 1
    c.train.num_steps = 4
    c.train.log_every = 2
    c.train.eval_every = 0
    c.checkpoint.every_steps = 2
    c.eval.batch_size = 8
    c.eval.num_batches = 1
    c.sampler.gen_length = 32
    c.sampler.block_length = 32
    c.sampler.steps = 8


def load_config_module(path: str):
    """The module of a config file given by path (configs are not a package)."""
    import importlib.util
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    name = "_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config_file(path: str, arg: str | None = None) -> mlc.ConfigDict:
    """``get_config(arg)`` of the config file at ``path``."""
    return load_config_module(path).get_config(arg)


def sibling_path(this_file: str, name: str) -> str:
    import os

    return os.path.join(os.path.dirname(os.path.abspath(this_file)), name)


def sibling_config(this_file: str, name: str, arg: str | None = None) -> mlc.ConfigDict:
    """The config ``name`` (e.g. 'quickstart.py') next to ``this_file``."""
    return load_config_file(sibling_path(this_file, name), arg)

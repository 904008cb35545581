import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from mdlm_jax.data.builders import data_config
from mdlm_jax.data.tokenizers import (
    MASK_GLYPH,
    CharTokenizer,
    GPT2Tokenizer,
    HFTokenizer,
    get_tokenizer,
)


def test_char_round_trip_non_ascii():
    tok = CharTokenizer()
    text = "In the beginning — Ἐν ἀρχῇ, 太初 ✓"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8")) > len(text)
    assert max(ids) < 256
    assert tok.decode(ids) == text
    assert (tok.vocab_size, tok.eos_id) == (257, 256)
    assert tok.decode(tok.encode("ab") + [257] + tok.encode("c")) == f"ab{MASK_GLYPH}c"
    assert tok.decode([104, 105, 256]) == "hi<eos>"


def test_gpt2_known_ids():
    tok = get_tokenizer(data_config(tokenizer="gpt2"))
    assert isinstance(tok, GPT2Tokenizer)
    assert tok.encode("Hello world") == [15496, 995]
    assert (tok.vocab_size, tok.eos_id) == (50257, 50256)
    text = "The quick brown fox, naïvely."
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([15496, 50300, 995]) == f"Hello{MASK_GLYPH} world"


def test_gpt2_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        get_tokenizer(data_config(tokenizer="gpt2", tokenizer_path=str(tmp_path)))


def _tiny_hf(path, extra_tokens):
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    for t in extra_tokens:
        vocab[t] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return vocab


def test_hf_tokenizer_json(tmp_path):
    vocab = _tiny_hf(tmp_path / "tokenizer.json", ["</s>"])
    tok = get_tokenizer(data_config(tokenizer="hf", tokenizer_path=str(tmp_path)))
    assert isinstance(tok, HFTokenizer)
    assert tok.encode("hello world hello") == [1, 2, 1]
    assert tok.eos_id == vocab["</s>"]
    assert tok.vocab_size == 4
    assert tok.name.startswith("hf")


def test_hf_eos_from_tokenizer_config(tmp_path):
    vocab = _tiny_hf(tmp_path / "tokenizer.json", ["</s>", "<END>"])
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<END>"}))
    tok = HFTokenizer(str(tmp_path / "tokenizer.json"))
    assert tok.eos_id == vocab["<END>"]


def test_hf_errors(tmp_path):
    _tiny_hf(tmp_path / "tokenizer.json", [])
    with pytest.raises(ValueError, match="No EOS token"):
        HFTokenizer(str(tmp_path / "tokenizer.json"))
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match="nope"):
        get_tokenizer(data_config(tokenizer="hf", tokenizer_path=str(missing)))


def test_unknown_tokenizer_lists_valid_names():
    with pytest.raises(ValueError, match="bpe") as e:
        get_tokenizer(data_config(tokenizer="bpe"))
    for name in ("char", "gpt2", "hf"):
        assert name in str(e.value)


def test_kjv_bpe_round_trip_and_subwords():
    from mdlm_jax.data.tokenizers import KJV_BPE_VOCAB

    tok = get_tokenizer(data_config(tokenizer="kjv_bpe"))
    assert (tok.name, tok.vocab_size, tok.eos_id, tok.mask_id) == ("kjv_bpe", KJV_BPE_VOCAB,
                                                                    0, None)
    text = "And God said, Let there be light: and there was light. Ἐν ✓"
    ids = tok.encode(text)
    assert tok.decode(ids) == text  # byte-level: any text round-trips
    assert len(tok.encode("And God said, Let there be light")) <= 12  # words, not letters
    # the context suite's quickstart preset: the answer letter and each " ." are tokens
    from mdlm_jax.context import tasks

    assert len(set(tasks.letter_ids(tok))) == 3  # raises if a letter is not one token
    assert len(tok.encode(" . . .")) == 6
    assert tok.decode(ids[:3] + [KJV_BPE_VOCAB]) == tok.decode(ids[:3]) + MASK_GLYPH


def test_kjv_bpe_is_rebuilt_identically_and_tagged_by_content(tmp_path):
    from mdlm_jax.data import tokenizers

    path = tmp_path / "kjv_bpe.json"
    tokenizers.train_kjv_bpe().save(str(path), pretty=False)
    with open(tokenizers.KJV_BPE_FILE, "rb") as f:
        assert path.read_bytes() == f.read()
    tag = tokenizers.tokenizer_tag(data_config(tokenizer="kjv_bpe"))
    assert tag.startswith("kjv_bpe") and len(tag) == len("kjv_bpe") + 8

"""Prompt/answer records, templates, the embedded set and grain batches."""

import json

import numpy as np
import pytest

from mdlm_jax.data import pipeline, registry
from mdlm_jax.data import prompt_answer as pa
from mdlm_jax.data.builders import data_config
from mdlm_jax.data.tokenizers import CharTokenizer

EOS = 256


def test_record_is_prompt_answer_then_eos_padding():
    rec = pa.encode_example(CharTokenizer(), "Q: 2+2?", " 4", 16)
    tokens = rec["tokens"].tolist()
    assert rec["prompt_len"] == 7 and rec["answer_len"] == 2
    assert tokens[:9] == list(b"Q: 2+2? 4") and tokens[9:] == [EOS] * 7
    row = pa.batch_fields(rec)
    assert row["prompt_mask"].tolist() == [True] * 7 + [False] * 9
    assert row["answer_mask"].tolist() == [False] * 7 + [True] * 2 + [False] * 7
    assert row["valid"].all()


def test_answer_is_truncated_to_the_context():
    rec = pa.encode_example(CharTokenizer(), "abcd", "efghijkl", 8)
    assert rec["answer_len"] == 4 and rec["tokens"].tolist() == list(b"abcdefgh")


def test_llada_template_marks_turns():
    p, a = pa.render("Hi?", "Yes.", "llada", system="Be brief.")
    assert p == ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief."
                 "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert a == "Yes.<|eot_id|>"
    assert pa.render("Hi?", "Yes.", "", system="S") == ("S\n\nHi?", "Yes.")
    with pytest.raises(ValueError, match="chat_template='chatml' is unknown"):
        pa.render("a", "b", "chatml")


def test_bad_examples_are_clear_errors():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="longer than the context.*f.jsonl:3"):
        pa.encode_example(tok, "x" * 20, "y", 16, where="f.jsonl:3")
    with pytest.raises(ValueError, match="answer is empty after truncation"):
        pa.encode_example(tok, "x" * 16, "y", 16)
    with pytest.raises(ValueError, match="answer is empty"):
        pa.encode_example(tok, "x", "  ", 16)


def test_embedded_set_is_deterministic_and_well_formed():
    a, b = pa.embedded_examples(400), pa.embedded_examples(400)
    assert a == b and len({x[0] for x in a}) > 390
    for prompt, answer, _, _ in a:
        assert answer in ("A", "B", "C") and prompt.endswith("\nAnswer:")
        options = prompt.rsplit("Options: ", 1)[1].split("\n")[0]
        picked = options.split(f"({answer}) ")[1].split(",")[0]
        task = prompt.split("Choose the ", 1)[1].split(".")[0]
        if task.endswith("number"):
            nums = [int(o.split(") ")[1]) for o in options.split(", ")]
            want = min(nums) if task.startswith("smallest") else max(nums)
            assert int(picked) == want
        else:
            assert picked in pa.WORDS[task]
            others = [o.split(") ")[1] for o in options.split(", ") if o[1] != answer]
            assert not any(o in pa.WORDS[task] for o in others)


def test_jsonl_fields_including_openorca(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = [{"prompt": "p1", "answer": "a1"},
            {"system_prompt": "sys", "question": "q2", "response": "r2"},
            {"text": "no fields"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    it = pa.read_jsonl(str(f))
    assert next(it)[:3] == ("p1", "a1", "")
    assert next(it)[:3] == ("q2", "r2", "sys")
    with pytest.raises(KeyError, match="d.jsonl:3.*'prompt' and 'answer'"):
        next(it)


def test_builder_and_batches(tmp_path):
    cfg = data_config(name="prompt_answer", files="embedded", seq_len=256,
                      data_dir=str(tmp_path), global_batch_size=8)
    it = pipeline.make_iterator(cfg, "train", global_batch_size=8, seed=0)
    batch = next(it)
    assert batch["tokens"].shape == (8, 256) and batch["tokens"].dtype == np.int32
    q = batch["prompt_mask"].sum(1)
    a = batch["answer_mask"].sum(1)
    assert np.all(a == 1) and np.all(q > 10)
    assert not np.any(batch["prompt_mask"] & batch["answer_mask"])
    for i in range(8):  # prompt, answer, then EOS only
        assert np.all(batch["tokens"][i, q[i] + a[i]:] == EOS)
        assert np.all(batch["tokens"][i, :q[i] + a[i]] != EOS)
    # two processes read the two halves of the same global batch
    halves = [next(pipeline.make_iterator(cfg, "train", global_batch_size=8, seed=0,
                                    process_index=p, process_count=2)) for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([h["tokens"] for h in halves]),
                                  batch["tokens"])
    ev = pipeline.make_eval_iterator(cfg, global_batch_size=64)
    sizes = [b["valid"].any(1).sum() for b in ev]
    assert sum(sizes) == 150  # 3000 examples, every 20th is validation


def test_builder_reports_the_bad_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    rows = [{"prompt": "ok", "answer": "y"}, {"prompt": "x" * 40, "answer": "y"},
            {"prompt": "ok", "answer": "z"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = data_config(name="prompt_answer", files=str(f), seq_len=16,
                      data_dir=str(tmp_path / "tfds"))
    with pytest.raises(Exception, match="longer than the context.*bad.jsonl:2"):
        registry.load_builder(cfg)

"""The generated task corpus (data.name='context_tasks'): the suite's format, masks and
' .' filler as the experiments lay them out, and never an evaluation word."""

import re

import numpy as np
import pytest

from mdlm_jax.context import tasks
from mdlm_jax.data import builders, packing, registry, task_documents
from mdlm_jax.data.builders import data_config
from mdlm_jax.data.tokenizers import CharTokenizer

MASK = 257
OPTION = re.compile(r"\(([ABC])\) ([^,\n]+)(?=,|\n)")  # complete options only
HELDOUT = {w for ws in tasks.word_lists("heldout").values() for w in ws}
TRAIN = {w for ws in tasks.word_lists("train").values() for w in ws}


def _cfg(tmp_path, **tasks_settings):
    cfg = data_config(name="context_tasks", seq_len=256, data_dir=str(tmp_path))
    cfg.context_tasks = {**cfg.context_tasks, "documents": 300, "max_relevant": 2,
                         "max_distractors": 3, "max_filler": 16, **tasks_settings}
    return cfg


def _words(text):
    return [o for _, o in OPTION.findall(text) if not o.isdigit()]


def test_records_hold_the_suite_format_and_never_an_evaluation_word(tmp_path):
    cfg = _cfg(tmp_path)
    builder, built = registry.prepare(cfg)
    assert built
    tok = CharTokenizer()
    seen, masks, dots, questions = set(), 0, 0, 0
    for split in ("train", "validation"):
        for rec in builder.as_data_source(split=split):
            tokens, valid = np.asarray(rec["tokens"]), np.asarray(rec["valid"])
            assert tokens.shape == (256,) and valid.shape == (256,)
            # the mask id is input only: exactly the invalid positions
            assert np.array_equal(tokens == MASK, ~valid)
            masks += int(np.sum(tokens == MASK))
            text = tok.decode(tokens)
            words = _words(text)
            assert not set(words) & HELDOUT, set(words) & HELDOUT
            assert set(words) <= TRAIN
            seen |= set(words)
            dots += text.count("[A . .") + text.count("[B . .") + text.count("[C . .")
            questions += len(re.findall(r"Answer:\[[ABC]\]\.\n\n", text))
    assert len(seen) > 100 and masks > 0 and dots > 0 and questions > 100


def test_mask_runs_follow_the_answer_letter_and_end_the_document():
    tok = CharTokenizer()
    s = {"fraction": 1.0, "documents": 60, "max_relevant": 3, "max_distractors": 4,
         "max_filler": 8, "seed": 0}
    kinds = set()
    for i in range(60):
        ids, valid = task_documents.task_document(i, "train", s, tok, 320)
        assert len(ids) <= 319 and len(valid) == len(ids)
        text = tok.decode(ids)
        if MASK in ids:
            first = ids.index(MASK)
            assert ids[first:] == [MASK] * (len(ids) - first)  # a run to the end
            assert chr(ids[first - 1]) in "ABC" and text[:first].endswith(
                "Answer:[" + chr(ids[first - 1]))
            assert valid == [True] * first + [False] * (len(ids) - first)
            kinds.add("mask")
        elif text.endswith(" ."):
            assert re.search(r"Answer:\[[ABC]( \.)+$", text)
            kinds.add("dot")
        assert not set(_words(text)) & HELDOUT
    assert kinds == {"mask", "dot"}


def test_mixture_fraction_and_determinism(tmp_path):
    tok = CharTokenizer()
    cfg = _cfg(tmp_path, fraction=0.5, documents=100)
    docs = list(task_documents.mixed_documents(cfg, "train", tok))
    assert docs == list(task_documents.mixed_documents(cfg, "train", tok))
    task = sum(len(i) for i, _ in docs if b"Options:" in bytes(x for x in i if x < 256))
    total = sum(len(i) for i, _ in docs)
    assert 0.4 < task / total < 0.6
    only = list(task_documents.mixed_documents(_cfg(tmp_path, fraction=1.0), "train", tok))
    assert len(only) == 300


@pytest.mark.parametrize("key,value,match", [
    ("fraction", 0.0, "fraction=0.0 must be in"), ("documents", 0, "documents=0 must be"),
    ("max_filler", -1, "max_filler=-1 must be")])
def test_bad_settings_are_one_clear_line(tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match):
        builders.builder_config(_cfg(tmp_path, **{key: value}), builders.ContextTasks)


def test_too_short_context_is_refused():
    s = {"fraction": 1.0, "documents": 1, "max_relevant": 1, "max_distractors": 0,
         "max_filler": 0, "seed": 0}
    with pytest.raises(ValueError, match="data.seq_len=40 is too short"):
        task_documents.task_document(0, "train", s, CharTokenizer(), 40)


def test_settings_name_the_dataset():
    a = builders.builder_config(data_config(name="context_tasks", seq_len=256),
                               builders.ContextTasks)
    b_cfg = data_config(name="context_tasks", seq_len=256)
    b_cfg.context_tasks = {**b_cfg.context_tasks, "fraction": 0.9}
    assert a.name != builders.builder_config(b_cfg, builders.ContextTasks).name
    assert a.name.startswith("char_wrap_256_t")


def test_prompt_answer_records_end_at_the_slot_with_room_for_masks(tmp_path):
    cfg = data_config(name="prompt_answer", files="context_tasks", seq_len=256,
                      data_dir=str(tmp_path))
    cfg.context_tasks = {**cfg.context_tasks, "documents": 100, "max_distractors": 3,
                         "max_filler": 16}
    tok = CharTokenizer()
    rows = list(registry.data_source(cfg, "train"))
    assert len(rows) == 100
    for r in rows:
        q, a = int(r["prompt_len"]), int(r["answer_len"])
        text = tok.decode(r["tokens"][:q + a])
        assert a == 1 and text[-1] in "ABC" and text[:-1].endswith("Answer:[")
        assert q + a <= 256 - 16
        assert not set(_words(text)) & HELDOUT


def test_wrap_packing_keeps_per_token_flags():
    rows = list(packing.pack([([1, 2, 3], [True, False, False]), [4]], "wrap", 3, 9))
    assert [r["tokens"].tolist() for r in rows] == [[1, 2, 3], [9, 4, 9]]
    assert [r["valid"].tolist() for r in rows] == [[True, False, False], [True] * 3]

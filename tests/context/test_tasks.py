"""The task generator: one correct option, balance, placement, no leak, determinism."""

import collections

import pytest

from mdlm_jax.context import tasks
from mdlm_jax.data.tokenizers import CharTokenizer


def _options(piece):
    body = piece.split("Options: ", 1)[1].split("\n")[0]
    return [o.split(") ", 1)[1] for o in body.split(", ")]


def _is_correct(task, options, i):
    if task in tasks.DISTRACTORS:
        nums = [int(o) for o in options]
        return nums[i] == (min(nums) if task == "smallest" else max(nums))
    return options[i] in tasks.WORDS[task]


@pytest.mark.parametrize("rel,dis", [("animal", "smallest"), ("verb", "largest")])
def test_every_question_has_exactly_one_correct_option(rel, dis):
    for i in range(30):
        p = tasks.build_prompt(0, rel, dis, i, tasks.Layout(n_relevant=3, n_distractors=5))
        for piece, kind in zip(p.pieces, p.kinds):
            task = dis if kind == "distractor" else rel
            opts = _options(piece)
            right = [j for j in range(3) if _is_correct(task, opts, j)]
            assert len(right) == 1, (piece, kind)
            if kind != "question":
                assert piece.endswith(f"Answer:[{tasks.LETTERS[right[0]]}].\n\n")
            else:
                assert right[0] == p.answer and piece.endswith("\nAnswer:")


def test_answers_balanced_and_layout_exact():
    letters = collections.Counter(
        tasks.build_prompt(3, "colour", "largest", i, tasks.Layout(1, 1)).letter
        for i in range(300))
    assert letters == {"A": 100, "B": 100, "C": 100}
    p = tasks.build_prompt(0, "fruit", "smallest", 0, tasks.Layout(1, 0))
    opts = _options(p.pieces[0])
    letter = tasks.LETTERS[[_is_correct("fruit", opts, j) for j in range(3)].index(True)]
    assert p.pieces[0] == (f"Options: (A) {opts[0]}, (B) {opts[1]}, (C) {opts[2]}\nAnswer:["
                           f"{letter}].\n\n")


@pytest.mark.parametrize("location", tasks.LOCATIONS)
def test_relevant_block_lands_where_asked(location):
    for j in (0, 3, 7):
        p = tasks.build_prompt(1, "sport", "smallest", 5,
                               tasks.Layout(4, 7, position=j, location=location))
        ex = [k for k in p.kinds if k != "question"]
        assert ex == ["distractor"] * j + ["relevant"] * 4 + ["distractor"] * (7 - j)
        q = p.question_index
        assert q == {"left": 0, "middle": 5, "right": 11}[location]


def test_mixed_order_depends_on_order_seed_only_and_questions_stay():
    a = tasks.build_prompt(0, "country", "largest", 2, tasks.Layout(5, 20, order_seed=0))
    b = tasks.build_prompt(0, "country", "largest", 2, tasks.Layout(5, 20, order_seed=1))
    c = tasks.build_prompt(0, "country", "largest", 2, tasks.Layout(5, 20, order_seed=0))
    assert a == c and a.kinds != b.kinds and sorted(a.pieces) == sorted(b.pieces)
    block = tasks.build_prompt(0, "country", "largest", 2, tasks.Layout(5, 20, position=4))
    assert block.options == a.options and sorted(block.pieces) == sorted(a.pieces)


def test_test_answer_never_leaks_into_the_context():
    for i in range(50):
        p = tasks.build_prompt(7, "adjective", "smallest", i, tasks.Layout(10, 5))
        context = [_options(x) for x, k in zip(p.pieces, p.kinds) if k != "question"]
        for words in context:
            assert not set(words) & set(p.options)


def test_encoding_slot_spans_and_letter_ids():
    tok = CharTokenizer()
    assert tasks.letter_ids(tok) == (ord("A"), ord("B"), ord("C"))
    p = tasks.build_prompt(0, "animal", "largest", 1, tasks.Layout(2, 2, location="middle"))
    enc = tasks.encode_prompt(p, tok, slot_id=257, filler_ids=[257] * 3)
    assert enc.tokens[enc.slot] == 257 and enc.filler == (enc.slot + 1, enc.slot + 4)
    assert tok.decode(enc.tokens[enc.slot - 8:enc.slot]) == "Answer:["
    assert tok.decode(enc.tokens[enc.slot + 4:enc.slot + 8]) == "].\n\n"
    assert [e - s for s, e in enc.spans][0] == len(p.pieces[0])
    assert enc.spans[-1][1] == len(enc.tokens)


def test_unknown_task_and_multi_token_letter_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown task.*valid: adjective, verb"):
        tasks.task_pairs(["adjective", "planet"])

    class Merging(CharTokenizer):
        name = "merging"

        def encode(self, text):
            return [999] if text.endswith("[A") else super().encode(text)

    with pytest.raises(ValueError, match="'A' after 'Answer:\\[' is not a single token"):
        tasks.letter_ids(Merging())
    assert len(tasks.task_pairs()) == 16


def test_held_out_split_is_a_fixed_quarter_of_each_category():
    held, train = tasks.word_lists("heldout"), tasks.word_lists("train")
    for c, ws in tasks.WORDS.items():
        assert set(held[c]) | set(train[c]) == set(ws) and not set(held[c]) & set(train[c])
        assert len(held[c]) == len(ws) // 4
    with pytest.raises(ValueError, match="context.words='some'.*all, train, heldout"):
        tasks.word_lists("some")
    held_prompt = tasks.build_prompt(0, "fruit", "largest", 4, tasks.Layout(3, 2),
                                     held)
    words = [o for piece, kind in zip(held_prompt.pieces, held_prompt.kinds)
             if kind != "distractor" for o in _options(piece)]
    assert set(words) <= {w for ws in held.values() for w in ws}

"""The task family of PAPER.md section 3: few-shot three-option multiple choice.

One solved example reads exactly::

    Options: (A) knit, (B) quirky, (C) persuade\\nAnswer:[B].\\n\\n

The 8 relevant tasks (:data:`CATEGORIES`: choose the word of a category among three, the
other two drawn from the other categories) cross the 2 distractor tasks
(:data:`DISTRACTORS`: the smallest / largest of three numbers in 1..99): 16 task pairs.
A prompt holds ``n_relevant`` solved examples of the relevant task and ``n_distractors``
of the distractor task, either as one contiguous relevant block starting at example
``position`` or mixed at random by an ``order_seed``, plus the test question (of the
relevant task) at the ``left``, ``middle`` or ``right`` of the prompt. The test question
ends ``Answer:[`` followed by the answer slot: the mask token for an MDLM, the next token
for an AR model.

Everything is a function of ``(seed, relevant, distractor, index)``: the test question and
the examples do not change when only the layout changes, so sweeps over the block position,
the question location or the mask count compare the same questions. The test question's
answer letter is ``index % 3`` (balanced A / B / C), and none of its three words appears in
any in-context example. The word lists are package data (``context/words/*.txt``).

Held-out words (``context.words``): each category's list splits into training words and
evaluation words (a quarter, chosen by a hash: :func:`word_lists`). Models trained on the
generated task corpus (``data.name='context_tasks'``) see only the training words;
the suite evaluates them on the evaluation words (``'heldout'``). ``'all'`` (the default,
for published models) uses every word.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
from importlib import resources

CATEGORIES = ("adjective", "verb", "animal", "colour", "fruit", "country", "sport",
              "instrument")
DISTRACTORS = ("smallest", "largest")
LETTERS = ("A", "B", "C")
LOCATIONS = ("left", "middle", "right")
ANSWER_PREFIX = "Answer:["
ANSWER_SUFFIX = "].\n\n"


def _read_words(category: str) -> tuple[str, ...]:
    text = (resources.files("mdlm_jax.context") / "words" / f"{category}.txt").read_text()
    return tuple(w.strip() for w in text.split() if w.strip())


WORDS = {c: _read_words(c) for c in CATEGORIES}
WORD_SETS = ("all", "train", "heldout")
HELDOUT_SHARE = 4  # one in 4 of each category's words is an evaluation word


def _heldout(ws) -> set[str]:
    """The evaluation words of one list: the quarter first in the order of their SHA-1."""
    ranked = sorted(ws, key=lambda w: hashlib.sha1(w.encode()).hexdigest())
    return set(ranked[:len(ws) // HELDOUT_SHARE])


@functools.cache
def word_lists(which: str = "all") -> dict[str, tuple[str, ...]]:
    """Each category's words: ``all``, the training words (``train``) or the evaluation
    words (``heldout``); the split depends only on the words (a hash), not on list order."""
    if which not in WORD_SETS:
        raise ValueError(f"context.words={which!r} is unknown; use one of {', '.join(WORD_SETS)}")
    if which == "all":
        return WORDS
    keep = which == "heldout"
    return {c: tuple(w for w in ws if (w in _heldout(ws)) == keep) for c, ws in WORDS.items()}


def check_names(names, valid, key: str) -> tuple[str, ...]:
    """``names`` if each is in ``valid``; else a one-line error listing the valid ones."""
    names = tuple(names)
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise ValueError(f"{key}={list(names)} holds unknown task {bad or 'none'}; valid: "
                         f"{', '.join(valid)}")
    return names


def task_pairs(relevant=CATEGORIES, distractors=DISTRACTORS) -> list[tuple[str, str]]:
    """The ``(relevant, distractor)`` pairs; 16 with the defaults."""
    rel = check_names(relevant, CATEGORIES, "context.relevant_tasks")
    dis = check_names(distractors, DISTRACTORS, "context.distractor_tasks")
    return [(r, d) for r in rel for d in dis]


# ------------------------------------------------------------------- questions
def mc_question(rng: random.Random, task: str, *, right: int | None = None,
                exclude=frozenset(), words=None) -> tuple[tuple[str, str, str], int]:
    """Three options and the index of the correct one, drawn from ``rng``.

    ``right`` fixes the correct index (word tasks); ``exclude`` are words never used;
    ``words`` the category word lists (default :data:`WORDS`; see :func:`word_lists`).
    """
    words = WORDS if words is None else words
    if task in DISTRACTORS:
        nums = rng.sample(range(1, 100), 3)
        pick = min(nums) if task == "smallest" else max(nums)
        return tuple(str(n) for n in nums), nums.index(pick)
    pool = sorted(w for k, ws in words.items() if k != task for w in ws
                  if w not in WORDS[task] and w not in exclude)
    correct = [w for w in words[task] if w not in exclude]
    right = rng.randrange(3) if right is None else right
    opts = rng.sample(pool, 2)
    opts.insert(right, rng.choice(correct))
    return tuple(opts), right


def options_text(options) -> str:
    """``'Options: (A) x, (B) y, (C) z\\nAnswer:'``."""
    body = ", ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"Options: {body}\nAnswer:"


def example_text(options, right: int) -> str:
    """One solved in-context example, the paper's layout exactly."""
    return f"{options_text(options)}[{LETTERS[right]}{ANSWER_SUFFIX}"


# ---------------------------------------------------------------------- prompts
@dataclasses.dataclass(frozen=True)
class Layout:
    """Counts and placement of the in-context examples and of the test question."""

    n_relevant: int = 10
    n_distractors: int = 40
    position: int = -1  # start of the contiguous relevant block (0..n_distractors); -1: mixed
    order_seed: int = 0  # the random order when mixed
    location: str = "right"  # of the test question: left | middle | right

    def check(self) -> Layout:
        if self.n_relevant < 0 or self.n_distractors < 0:
            raise ValueError(f"example counts must be >= 0, got {self.n_relevant} relevant "
                             f"and {self.n_distractors} distractors")
        if not -1 <= self.position <= self.n_distractors:
            raise ValueError(f"relevant block position {self.position} must be in 0.."
                             f"{self.n_distractors} (the number of distractors), or -1 (mixed)")
        if self.location not in LOCATIONS:
            raise ValueError(f"question location {self.location!r} is unknown; use one of "
                             f"{', '.join(LOCATIONS)}")
        return self


@dataclasses.dataclass(frozen=True)
class Prompt:
    """The pieces of a prompt in order; ``kinds[i]`` is relevant | distractor | question."""

    pieces: tuple[str, ...]
    kinds: tuple[str, ...]
    options: tuple[str, str, str]
    answer: int  # index into LETTERS

    @property
    def letter(self) -> str:
        return LETTERS[self.answer]

    @property
    def question_index(self) -> int:
        return self.kinds.index("question")


def build_prompt(seed, relevant: str, distractor: str, index: int,
                 layout: Layout, words=None) -> Prompt:
    """The ``index``-th test point of a task pair (see the module docstring); ``words``
    as in :func:`mc_question`."""
    layout.check()
    rng = random.Random(f"{seed}/{relevant}/{distractor}/{index}")
    q_opts, q_right = mc_question(rng, relevant, right=index % 3, words=words)
    rel = [example_text(*mc_question(rng, relevant, exclude=set(q_opts), words=words))
           for _ in range(layout.n_relevant)]
    dis = [example_text(*mc_question(rng, distractor)) for _ in range(layout.n_distractors)]
    if layout.position >= 0:
        j = layout.position
        items = ([(d, "distractor") for d in dis[:j]] + [(r, "relevant") for r in rel]
                 + [(d, "distractor") for d in dis[j:]])
    else:
        items = [(r, "relevant") for r in rel] + [(d, "distractor") for d in dis]
        random.Random(f"{seed}/order{layout.order_seed}/{relevant}/{distractor}/{index}"
                      ).shuffle(items)
    at = {"left": 0, "middle": len(items) // 2, "right": len(items)}[layout.location]
    items.insert(at, (options_text(q_opts), "question"))
    return Prompt(tuple(p for p, _ in items), tuple(k for _, k in items), q_opts, q_right)


# --------------------------------------------------------------------- tokens
@dataclasses.dataclass(frozen=True)
class Encoded:
    """Token ids of a prompt with its answer slot and the token span of every piece."""

    tokens: tuple[int, ...]
    slot: int  # position of the answer slot (the first mask for an MDLM)
    spans: tuple[tuple[int, int], ...]  # [start, end) of each piece (question: incl. slot)
    filler: tuple[int, int]  # [start, end) of the k tokens after the slot


def letter_ids(tok) -> tuple[int, int, int]:
    """The token id of each option letter as it follows ``Answer:[``; refuse if not one."""
    head = tok.encode(ANSWER_PREFIX)
    ids = []
    for letter in LETTERS:
        full = tok.encode(ANSWER_PREFIX + letter)
        if len(full) != len(head) + 1 or full[:len(head)] != head:
            raise ValueError(
                f"option letter {letter!r} after {ANSWER_PREFIX!r} is not a single token "
                f"under the {tok.name} tokenizer ({head} -> {full}); the suite needs "
                "single-token answers: use a model whose tokenizer keeps '[' and the letter "
                "apart")
        ids.append(full[-1])
    if len(set(ids)) != 3:
        raise ValueError(f"option letters map to the same token ids {ids} under {tok.name}")
    return tuple(ids)


def encode_prompt(prompt: Prompt, tok, *, slot_id: int, filler_ids=()) -> Encoded:
    """Pieces tokenized one by one; the question ends ``Answer:[`` + slot + filler."""
    tokens, spans = [], []
    filler = (0, 0)
    last = len(prompt.pieces) - 1
    slot = -1
    for i, (piece, kind) in enumerate(zip(prompt.pieces, prompt.kinds)):
        start = len(tokens)
        if kind == "question":
            tokens += tok.encode(piece + "[")
            slot = len(tokens)
            tokens.append(int(slot_id))
            filler = (len(tokens), len(tokens) + len(filler_ids))
            tokens += [int(t) for t in filler_ids]
            if i != last:
                tokens += tok.encode(ANSWER_SUFFIX)
        else:
            tokens += tok.encode(piece)
        spans.append((start, len(tokens)))
    return Encoded(tuple(tokens), slot, tuple(spans), filler)


__all__ = ["ANSWER_PREFIX", "CATEGORIES", "DISTRACTORS", "LETTERS", "LOCATIONS", "WORDS",
           "WORD_SETS", "Encoded", "Layout", "Prompt", "build_prompt", "check_names",
           "encode_prompt", "example_text", "letter_ids", "mc_question", "options_text",
           "task_pairs", "word_lists"]

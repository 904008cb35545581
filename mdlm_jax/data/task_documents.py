"""Training documents in the context suite's task format, mixed with ordinary text.

The corpus ``data.name='context_tasks'`` (``builders.ContextTasks``) teaches a model trained
from scratch the format of ``mdlm_jax/context/tasks.py``: each task document is one prompt
of the suite, built by the suite's own generator (``tasks.build_prompt`` /
``tasks.encode_prompt``), with the test question's answer filled in:

* a random task pair (one of the 8 word categories x one of the 2 number distractors);
* ``1..max_relevant`` relevant examples and ``0..max_distractors`` distractor examples
  (fewer when the document would not fit ``data.seq_len``), either as one contiguous
  relevant block at a random position or mixed at random (half each);
* the test question at the right (half), left or middle (a quarter each), its answer
  letter in the slot (``Answer:[B``), then ``].\\n\\n`` unless it is the last piece;
* at the right, as the experiments lay out their prompts (extra masks, dot filler, mask
  sensitivity), a third of the questions are followed by ``k`` mask tokens and a third by
  ``" ."`` repeated ``k`` times, ``k`` drawn log-uniformly in ``1..max_filler``; the
  document ends there. Mask tokens are input only: their positions are ``valid=False``, so
  no loss scores them and the forward process never masks them again.

Word lists: only the suite's training words (``tasks.word_lists('train')``) appear in
options; the evaluation words (``'heldout'``) are left for ``context.words='heldout'``.
(The ordinary text, the embedded KJV excerpt, is left as it is and may mention any word.)

Mixing: task documents and the embedded corpus's chapters (cycled when needed) alternate
so that task documents make ``fraction`` of the tokens; ``documents`` task documents go to
the train split and one in 50 as many (at least 8) to validation, with the validation
chapters of the embedded corpus. Everything is a function of ``(seed, split, index)``.

The mask-agnostic fine-tunes read the same documents as prompt / answer pairs
(``data.name='prompt_answer'``, ``data.files='context_tasks'``: :func:`prompt_answer_examples`):
the question at the right, the prompt ending ``Answer:[``, the answer its letter, and
``max_filler`` positions left free for the appended masks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from mdlm_jax.context import tasks
from mdlm_jax.data import documents

SETTINGS = ("fraction", "documents", "max_relevant", "max_distractors", "max_filler", "seed")
VALIDATION_SHARE = 50  # one validation task document per 50 train ones
HOLDOUT_EVERY = 50  # the embedded corpus's validation chapters (as builders.EmbeddedCorpus)


def settings(data_cfg) -> dict:
    """``data.context_tasks`` as a checked dict (a ConfigDict or a plain dict)."""
    ct = data_cfg.context_tasks
    s = {k: ct[k] for k in SETTINGS}
    if not 0.0 < float(s["fraction"]) <= 1.0:
        raise ValueError(f"data.context_tasks.fraction={s['fraction']} must be in (0, 1]: the "
                         "share of tokens from task documents")
    for k in ("documents", "max_relevant"):
        if int(s[k]) < 1:
            raise ValueError(f"data.context_tasks.{k}={s[k]} must be >= 1")
    for k in ("max_distractors", "max_filler"):
        if int(s[k]) < 0:
            raise ValueError(f"data.context_tasks.{k}={s[k]} must be >= 0")
    return s


def mask_id_of(tok) -> int:
    """The mask id the documents use: the tokenizer's own, else the first id after its
    vocabulary (the convention of every config here: char 257, GPT-2 50257)."""
    return int(tok.mask_id) if tok.mask_id is not None else int(tok.vocab_size)


def _layout(rng: random.Random, s: dict, location: str) -> tasks.Layout:
    n_rel = rng.randint(1, int(s["max_relevant"]))
    n_dis = rng.randint(0, int(s["max_distractors"]))
    position = -1 if rng.random() < 0.5 else rng.randint(0, n_dis)
    return tasks.Layout(n_rel, n_dis, position, 0, location)


def _filler(rng: random.Random, s: dict) -> tuple[str, int]:
    """``(kind, k)``: none, mask or dot, and the count (log-uniform in 1..max_filler)."""
    kind = rng.choice(("none", "mask", "dot")) if int(s["max_filler"]) > 0 else "none"
    if kind == "none":
        return kind, 0
    return kind, min(int(s["max_filler"]),
                     int(math.exp(rng.uniform(0.0, math.log(int(s["max_filler"]) + 1)))))


def _fit(seed: str, rel: str, dis: str, index: int, layout: tasks.Layout, encode, budget: int,
         words) -> tuple[tasks.Prompt, object]:
    """The prompt with as many of the drawn examples as fit ``budget`` tokens (distractors
    dropped first, then relevant examples down to one)."""
    while True:
        prompt = tasks.build_prompt(seed, rel, dis, index, layout, words)
        enc = encode(prompt)
        over = len(enc.tokens) - budget
        if over <= 0:
            return prompt, enc
        per = max(1, len(enc.tokens) // len(prompt.pieces))
        drop = -(-over // per)
        n_dis = max(0, layout.n_distractors - drop)
        n_rel = layout.n_relevant
        if n_dis == layout.n_distractors:
            if n_rel == 1:
                raise ValueError(f"data.seq_len={budget + 1} is too short for one task "
                                 f"example and the question ({len(enc.tokens)} tokens); "
                                 "raise data.seq_len or lower data.context_tasks.max_filler")
            n_rel = max(1, n_rel - drop)
        layout = tasks.Layout(n_rel, n_dis, min(layout.position, n_dis), 0, layout.location)


def task_document(index: int, split: str, s: dict, tok, seq_len: int):
    """``(token ids, valid flags)`` of the ``index``-th task document of ``split``."""
    words = tasks.word_lists("train")
    seed = f"context_tasks{s['seed']}/{split}"
    rng = random.Random(f"{seed}/draw/{index}")
    rel, dis = rng.choice(tasks.CATEGORIES), rng.choice(tasks.DISTRACTORS)
    location = rng.choice(("right", "right", "left", "middle"))
    layout = _layout(rng, s, location)
    kind, k = _filler(rng, s) if location == "right" else ("none", 0)
    mask_id = mask_id_of(tok)
    filler = [mask_id] * k if kind == "mask" else tok.encode(" ." * k) if kind == "dot" else []
    letters = tasks.letter_ids(tok)

    def encode(prompt):
        return tasks.encode_prompt(prompt, tok, slot_id=letters[prompt.answer],
                                   filler_ids=filler)

    prompt, enc = _fit(seed, rel, dis, index, layout, encode, seq_len - 1, words)
    ids = list(enc.tokens)
    valid = [True] * len(ids)
    if kind == "mask":
        for i in range(*enc.filler):
            valid[i] = False
    return ids, valid


def prompt_answer_examples(data_cfg, split: str, tok) -> Iterator[tuple[str, str, str, str]]:
    """``(prompt, answer, '', where)`` for the mask-agnostic fine-tunes (module docstring)."""
    s = settings(data_cfg)
    n = _count(s, split)
    words = tasks.word_lists("train")
    seed = f"context_tasks{s['seed']}/answers/{split}"
    budget = int(data_cfg.seq_len) - int(s["max_filler"]) - 1
    letters = tasks.letter_ids(tok)
    for index in range(n):
        rng = random.Random(f"{seed}/draw/{index}")
        rel, dis = rng.choice(tasks.CATEGORIES), rng.choice(tasks.DISTRACTORS)
        layout = _layout(rng, s, "right")

        def encode(prompt):
            return tasks.encode_prompt(prompt, tok, slot_id=letters[prompt.answer])

        prompt, _ = _fit(seed, rel, dis, index, layout, encode, budget, words)
        text = "".join(prompt.pieces) + "["
        yield text, prompt.letter, "", f"context_tasks:{split}:{index}"


def _count(s: dict, split: str) -> int:
    n = int(s["documents"])
    return n if split == "train" else max(8, n // VALIDATION_SHARE)


def mixed_documents(data_cfg, split: str, tok) -> Iterator[tuple[list[int], list[bool]]]:
    """``(ids, valid)`` of each document of ``split``: task documents and embedded chapters
    mixed so that task documents make ``fraction`` of the tokens (module docstring)."""
    if split not in documents.SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits: {documents.SPLITS}.")
    s = settings(data_cfg)
    fraction = float(s["fraction"])
    chapters = [tok.encode(d) for d in documents.split_documents(
        documents.embedded_documents(), split, HOLDOUT_EVERY)] if fraction < 1 else []
    task_tokens = text_tokens = 0
    index = chapter = 0
    n = _count(s, split)
    while index < n:
        if chapters and task_tokens > fraction * (task_tokens + text_tokens):
            ids = chapters[chapter % len(chapters)]
            chapter += 1
            text_tokens += len(ids) + 1
            yield ids, [True] * len(ids)
            continue
        ids, valid = task_document(index, split, s, tok, int(data_cfg.seq_len))
        index += 1
        task_tokens += len(ids) + 1
        yield ids, valid


__all__ = ["mask_id_of", "mixed_documents", "prompt_answer_examples", "settings",
           "task_document"]

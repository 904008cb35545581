import json
import os

import numpy as np
import pytest

from mdlm_jax.data import builders, documents, packing, prepare, registry
from mdlm_jax.data.builders import data_config
from mdlm_jax.data.tokenizers import CharTokenizer

EOS = 256


def _chars(s):
    return list(s.encode())


def test_wrap_puts_eos_between_documents_and_cuts_exact_chunks():
    tok = CharTokenizer()
    rows = list(packing.pack(packing.tokenize(["ab", "cde", "f", "gh"], tok), "wrap", 3, EOS))
    a, b, c, d, e, f, g, h = _chars("abcdefgh")
    want = [[a, b, EOS], [c, d, e], [EOS, f, EOS]]  # trailing [g, h, EOS] is 3 long too
    want.append([g, h, EOS])
    assert [r["tokens"].tolist() for r in rows] == want
    assert all(r["tokens"].dtype == np.int32 and r["valid"].all() for r in rows)
    rows = list(packing.pack([[1, 2], [3]], "wrap", 4, EOS))  # 1 2 E 3 E: partial dropped
    assert [r["tokens"].tolist() for r in rows] == [[1, 2, EOS, 3]]


def test_pad_valid_marks_exactly_the_real_tokens():
    rows = list(packing.pack([[1, 2, 3], [7], [1, 2, 3, 4, 5, 6]], "pad", 4, EOS))
    assert [r["tokens"].tolist() for r in rows] == [
        [1, 2, 3, EOS],
        [7, EOS, EOS, EOS],
        [1, 2, 3, 4],
    ]
    assert [r["valid"].tolist() for r in rows] == [
        [True] * 4,
        [True, True, False, False],
        [True] * 4,
    ]


def test_split_documents_partition():
    docs = [f"d{i}" for i in range(250)]
    train = list(documents.split_documents(docs, "train", 100))
    val = list(documents.split_documents(docs, "validation", 100))
    assert val == ["d99", "d199"]
    assert sorted(train + val) == sorted(docs) and len(train) == 248
    few = ["a", "b", "c"]
    assert list(documents.split_documents(few, "validation", 100)) == ["c"]
    assert list(documents.split_documents(few, "train", 100)) == ["a", "b"]
    with pytest.raises(ValueError, match="train"):
        list(documents.split_documents(few, "test", 100))


def write_corpus(folder, n_txt=6, n_jsonl=4):
    """Small text files; returns the glob and the documents in read order."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(n_txt):
        text = f"file {i} " + "word " * (i + 2)
        (folder / f"a{i:02d}.txt").write_text(text)
        docs.append(text)
    lines = [{"text": f"json doc {i} é " * (1 + i % 3)} for i in range(n_jsonl)]
    (folder / "b.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    docs += [x["text"] for x in lines]
    return str(folder / "*"), docs


def test_text_files_wrap_records_match_documents(tmp_path):
    files, docs = write_corpus(tmp_path / "src")
    cfg = data_config(name="text_files", files=files, seq_len=8, data_dir=str(tmp_path / "d"))
    builder, built = registry.prepare(cfg)
    assert built and builder.builder_config.name.startswith("char_wrap_8_f")
    train = registry.data_source(cfg, "train")
    val = registry.data_source(cfg, "validation")
    assert len(val) >= 1
    stream = [t for d in docs[:-1] for t in _chars(d) + [EOS]]
    n = len(stream) // 8
    got = np.stack([train[i]["tokens"] for i in range(len(train))])
    assert got.shape == (n, 8)
    np.testing.assert_array_equal(got.reshape(-1), stream[: n * 8])
    assert registry.split_sizes(cfg) == {"train": n, "validation": len(val)}


def test_text_files_pad_mode(tmp_path):
    files, docs = write_corpus(tmp_path / "src")
    cfg = data_config(
        name="text_files", files=files, seq_len=24, packing="pad", data_dir=str(tmp_path / "d")
    )
    registry.prepare(cfg)
    train = registry.data_source(cfg, "train")
    assert len(train) == len(docs) - 1
    for i, doc in enumerate(docs[:-1]):
        rec = train[i]
        n = min(len(_chars(doc)) + 1, 24)
        assert rec["valid"].tolist() == [True] * n + [False] * (24 - n)
        assert rec["tokens"][:n].tolist() == (_chars(doc) + [EOS])[:n]


def test_missing_dataset_error_names_dir_and_command(tmp_path):
    cfg = data_config(
        name="openwebtext",
        files="/data/owt/*.txt",
        tokenizer="gpt2",
        seq_len=1024,
        data_dir=str(tmp_path),
    )
    with pytest.raises(FileNotFoundError) as e:
        registry.data_source(cfg, "train")
    msg = str(e.value)
    assert "python -m mdlm_jax.data.prepare --name openwebtext --files '/data/owt/*.txt'" in msg
    assert "--tokenizer gpt2 --seq_len 1024 --packing wrap" in msg
    assert os.path.join(str(tmp_path), "mdlm_openwebtext", "gpt2_wrap_1024") in msg


def test_failed_build_leaves_nothing_and_prepared_is_not_rebuilt(tmp_path):
    files, _ = write_corpus(tmp_path / "src")
    (tmp_path / "src" / "c.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    cfg = data_config(name="text_files", files=files, seq_len=8, data_dir=str(tmp_path / "d"))
    with pytest.raises(KeyError, match="text"):
        registry.prepare(cfg)
    assert not registry.get_builder(cfg).is_prepared()
    root = tmp_path / "d" / "mdlm_text_files"
    leftovers = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert leftovers == []
    (tmp_path / "src" / "c.jsonl").unlink()
    builder, built = registry.prepare(cfg)
    assert built
    record = next(p for p in builder.data_path.iterdir() if "train" in p.name)
    mtime = os.stat(record).st_mtime_ns
    (tmp_path / "src" / "d.txt").write_text("a new document that must not be picked up")
    _, built = registry.prepare(cfg)
    assert not built and os.stat(record).st_mtime_ns == mtime


def test_config_validation(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="seq_len"):
        registry.get_builder(data_config(seq_len=1, data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="wrap, pad"):
        registry.get_builder(data_config(packing="concat", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="embedded, text_files, openwebtext"):
        registry.get_builder(data_config(name="c4", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="files"):
        registry.get_builder(data_config(name="text_files", data_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        registry.prepare(
            data_config(name="text_files", files=str(tmp_path / "x*.txt"), data_dir=str(tmp_path))
        )
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
    assert builders.default_data_dir(data_config()) == str(tmp_path / "env")
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert builders.default_data_dir(data_config()) == os.path.expanduser("~/tensorflow_datasets")


def test_embedded_corpus_and_prepare_cli(tmp_path, capsys):
    text = list(documents.embedded_documents())
    assert len(text) == 291 and text[0].startswith("Genesis 1\nIn the beginning")
    argv = ["--seq_len", "64", "--data_dir", str(tmp_path)]
    prepare.main(argv)
    out = capsys.readouterr().out
    assert "built in" in out and str(tmp_path / "mdlm_embedded" / "char_wrap_64") in out
    sizes = registry.split_sizes(data_config(seq_len=64, data_dir=str(tmp_path)))
    total = sum(len(d.encode()) + 1 for d in text) // 64
    assert 0.01 < sizes["validation"] / total < 0.04
    assert sizes["train"] + sizes["validation"] in (total - 1, total)
    with pytest.raises(ValueError, match="validation"):
        registry.data_source(data_config(seq_len=64, data_dir=str(tmp_path)), "test")
    prepare.main(argv)
    assert "already prepared" in capsys.readouterr().out

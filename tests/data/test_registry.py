"""A dataset is one registry entry: the pipeline and ``prepare`` need no other edit."""

import functools

import numpy as np
import pytest

from mdlm_jax.data import builders, pipeline, prepare, registry
from mdlm_jax.data.builders import data_config

DOCS = [f"document {i} " + "ab" * i for i in range(40)]


class _CountingCorpus(builders._PackedBuilder):
    """A generated packed-text corpus, defined only here."""

    name = "mdlm_test_counting_corpus"
    HOLDOUT_EVERY = 10

    def _documents(self):
        return iter(DOCS)


def _with_mark(record):
    return {**record, "mark": np.asarray(record["valid"]) & False}


@pytest.fixture
def counting(monkeypatch):
    entry = registry.Dataset(functools.partial(builders.get_builder, _CountingCorpus),
                             built_on_first_use=True, to_batch=_with_mark,
                             batch_fields=("tokens", "valid", "mark"))
    monkeypatch.setitem(registry.DATASETS, "counting", entry)
    return entry


def test_a_registered_dataset_flows_through_pipeline_and_prepare(counting, tmp_path, capsys):
    cfg = data_config(name="counting", seq_len=16, data_dir=str(tmp_path))
    assert not registry.get_builder(cfg).is_prepared()
    batch = next(pipeline.make_iterator(cfg, "train", global_batch_size=4, seed=0,
                                        process_index=0, process_count=1))
    assert batch["tokens"].shape == (4, 16) and batch["mark"].shape == (4, 16)
    assert not batch["mark"].any()  # the entry's batch transform ran
    eos = 256  # the char tokenizer's
    stream = [t for i, d in enumerate(DOCS) if i % 10 != 9 for t in [*d.encode(), eos]]
    train = registry.data_source(cfg, "train")
    assert train[0]["tokens"].tolist() == stream[:16]
    prepare.main(["--name", "counting", "--seq_len", "16", "--data_dir", str(tmp_path)])
    assert "already prepared" in capsys.readouterr().out


def test_files_requirement_and_unknown_names_come_from_the_registry(tmp_path):
    with pytest.raises(ValueError, match="data.name='text_files' needs data.files: a glob"):
        registry.get_builder(data_config(name="text_files", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="needs data.files: a glob of .jsonl files, or 'emb"):
        registry.get_builder(data_config(name="prompt_answer", files="", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="valid: embedded, text_files, openwebtext, context_t"):
        registry.dataset("c4")
    # a dataset that reads no files ignores data.files: the same prepared dataset
    a = registry.get_builder(data_config(data_dir=str(tmp_path)))
    b = registry.get_builder(data_config(files="/somewhere/*.txt", data_dir=str(tmp_path)))
    assert a.data_dir == b.data_dir

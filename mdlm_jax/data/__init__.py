"""Data: tokenizers, the embedded corpus, TFDS ``array_record`` builders and grain pipelines.

* ``tokenizers``: ``get_tokenizer(data_cfg)`` (char | gpt2 | kjv_bpe | hf).
* ``builders``: tokenize + pack at build time; ``python -m mdlm_jax.data.prepare`` builds once.
* ``registry``: one record per ``data.name`` (builder, files, batch transform), read by the
  pipeline and ``prepare``.
* ``pipeline``: ``make_iterator`` / ``make_eval_iterator`` / ``dataset_info``.
"""

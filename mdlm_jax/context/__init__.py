"""The paper's context-comprehension suite (PAPER.md sections 3-4).

``tasks``: the few-shot three-option task family; ``scoring``: one greedy decoding step
at the answer slot and the gradient attribution, through the pure ``apply``;
``experiments``: experiments 1-10 as lists of points; ``loading``: the model (a workdir or
a HuggingFace directory); ``harness``: the ``context`` command (batching, resumable JSON
lines); ``report``: summary, table, plots.
"""

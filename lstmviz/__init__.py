"""lstmviz: record every gate, cell and hidden state of a PyTorch LSTM/GRU/RNN, and look at them.

Public API (torch is imported only when a recording function is first used)::

    output, cache = lstmviz.run_with_cache(model, ids)      # notebook: one forward, every activation
    run_dir = lstmviz.record_corpus(model, token_ids, out)  # stream a corpus into a run directory
    run_dir = lstmviz.record_text(lstmviz.load_model("model.pt"), text, out, annotate="code")  # a text, tokenized
    run_dir = lstmviz.record_docs(loaded, lstmviz.read_docs("reviews.jsonl"), out)  # each document alone
    run = lstmviz.open_run(run_dir)                         # lazy reader: run.tokens, run.activations(...)
    output, cache = lstmviz.intervene(model, ids, clamp={"rnn.l0.fwd.c": {255: 1.0}})  # units held (lstmviz.causal)
    a = lstmviz.attribute(model, ids, position, target)      # each token's share of log p(target)
    ids = lstmviz.generate(model, prompt_ids, 200, clamp=..., seed=0)
    f = lstmviz.tap(self, "f", f, gate=True)                # inside your own cell: record f (a no-op otherwise)

Errors the user can fix are :class:`UserError` (:class:`RunError` for a run directory, :class:`ModelError` when
the user's own model raised): one line that names the argument at fault.
"""

from __future__ import annotations

from typing import Any

from .errors import ModelError, RunError, UserError
from .store import Run, open_run, write_run
from .taps import tap

__version__ = "0.1.0"
__all__ = [
    "ModelError",
    "Run",
    "RunError",
    "UserError",
    "__version__",
    "attribute",
    "effects",
    "generate",
    "intervene",
    "load_model",
    "open_run",
    "read_docs",
    "record_corpus",
    "record_docs",
    "record_text",
    "run_with_cache",
    "tap",
    "write_run",
]
_CAUSAL = ("intervene", "effects", "attribute", "generate")


def __getattr__(name: str) -> Any:
    if name == "run_with_cache":
        from .recorder import run_with_cache

        return run_with_cache
    if name == "record_corpus":
        from .corpus import record_corpus

        return record_corpus
    if name in _CAUSAL:
        from . import causal

        return getattr(causal, name)
    if name == "record_text":
        from .record import record_text

        return record_text
    if name in ("record_docs", "read_docs"):
        from . import documents

        return getattr(documents, name)
    if name == "load_model":
        from .models import loading

        return loading.load_model
    raise AttributeError(f"module 'lstmviz' has no attribute {name!r}")

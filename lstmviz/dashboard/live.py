"""Live mode: record the text a user types, with the model of the run on screen (or a checkpoint they name).

With :mod:`lstmviz.dashboard.prepare` (the samples at first start), this is the only place in the dashboard that
records. A live run goes to a per-user temporary folder (:func:`live_dir`), named by a hash of the model, its
files' mtimes and the text, so the same text is recorded once. Characters the model's vocabulary lacks (curly
quotes pasted from a word processor, say) never fail the recording: they are read as the vocabulary's UNK
symbol when it has one, else left out, and :attr:`LiveRecording.note` says which (:func:`fit_vocabulary`).
Nothing here writes ``st.session_state``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ..errors import UserError
from ..models.tokenizers import Tokenizer, text_lines
from ..record import record_text
from ..store import Run, open_run
from . import data

LIVE_MAX_CHARS = 5_000
_SHOWN = 8  # unknown symbols named in the note

ModelRef = tuple[str, str, tuple[float, ...]]
"""``(kind, path, mtimes)``: the cache key of a model to record with. kind ``"run"``: the model a run was recorded
with, rebuilt from its manifest (path: the run; mtimes: its manifest's and its weight files'); kind
``"checkpoint"``: a native checkpoint file."""


@dataclass(frozen=True)
class LiveRecording:
    """``path``: the recorded run directory; ``note``: one line on the symbols that were not in the vocabulary
    (mapped to UNK, or skipped), ``""`` when every symbol was known."""

    path: str
    note: str


def live_dir() -> Path:
    """Where live recordings go: a per-user folder under the system temp directory."""
    return Path(tempfile.gettempdir()) / f"lstmviz-live-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _mtime(path: str | None) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return 0.0


def live_model(run: Run, typed: str = "") -> ModelRef:
    """What live mode records with: the run's own model (rebuilt from ``model_source.rebuild`` in its manifest:
    a native checkpoint, or a factory with its weights and code directory), or a native checkpoint typed in the
    browser (``typed``, which must lie under the runs root or the sample models: see :func:`data.browsable`).

    Never unpickles: a run of a pickled module raises a :class:`UserError` that says so, and a typed file is read
    weights-only. A run recorded before manifests kept ``rebuild`` falls back to its native checkpoint.
    """
    if typed.strip():
        p = data.browsable(typed.strip(), "the checkpoint")
        if not p.is_file():
            raise UserError(f"no checkpoint file at {p}")
        return "checkpoint", str(p), (p.stat().st_mtime,)
    source = run.manifest.get("model_source") or {}
    spec = source.get("rebuild")
    if isinstance(spec, dict):
        if spec.get("pickled"):
            raise UserError(
                "this run's model is a pickled module (torch.save(model)); the dashboard never unpickles, since "
                "that runs code from the file. Record it from a state_dict with --model and --weights, or type a "
                "native checkpoint below"
            )
        files = (spec.get("checkpoint"), spec.get("weights"), spec.get("tokenizer"))
        return "run", str(run.path), (data.ref(run.path)[1], *(_mtime(f) for f in files))
    ckpt = data.checkpoint_of(run)
    if ckpt is None:
        raise UserError(
            "this run's manifest names no model that can be rebuilt (recorded before lstmviz kept one, or its "
            "checkpoint is gone): type a native checkpoint below"
        )
    return "checkpoint", str(ckpt), (ckpt.stat().st_mtime,)


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _live_loaded(model: ModelRef):
    from ..models.loading import rebuild

    kind, path, _ = model
    if kind == "checkpoint":
        return data.load_model(path)  # weights-only: a pickle is refused with its reason
    manifest = open_run(path).manifest
    tok = manifest.get("tokenizer")
    return rebuild(manifest.get("model_source") or {}, tokenizer=Tokenizer.from_json(tok) if tok else None)


def fit_vocabulary(tok: Tokenizer, text: str) -> tuple[str, str]:
    """``text`` made readable by ``tok``, and a one-line note on what was changed (``""`` if nothing).

    Symbols outside the vocabulary are kept when ``tok`` has an UNK symbol (its encoder reads them as UNK);
    otherwise they are removed: characters from the text, or for a word vocabulary the unknown words from their
    line (the remaining words joined by single spaces). Raises :class:`UserError` when nothing known is left.
    """
    symbols = tok.split(text)
    unknown = Counter(s for s in symbols if s not in tok.index)
    if not unknown:
        return text, ""
    shown = ", ".join(f"{s!r}" + (f" ({n}×)" if n > 1 else "") for s, n in unknown.most_common(_SHOWN))
    more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
    what = "character" if tok.kind == "char" else "word"
    if tok.unk is not None:
        return text, f"Not in the model's vocabulary, so read as {tok.unk}: {shown}{more}."
    if tok.kind == "char":
        kept = "".join(c for c in text if c in tok.index)
    else:
        lines = ([w for w in tok.split(line) if w in tok.index and w != tok.eos] for line in text_lines(text))
        kept = "\n".join(" ".join(words) for words in lines)  # an eos vocabulary adds its own again
    if not any(s in tok.index for s in tok.split(kept)):
        raise UserError(f"no {what} of the text is in the model's vocabulary (it has no UNK symbol): {shown}{more}")
    return kept, f"Not in the model's vocabulary (which has no UNK symbol), so skipped: {shown}{more}."


def live_run(model: ModelRef, text: str, annotate: str = "none") -> LiveRecording:
    """Record ``text`` with ``model`` (from :func:`live_model`) into a temporary run directory.

    ``annotate`` is ``"code"`` (Python tokenize tracks, when the text parses), ``"parens"`` or ``"none"``.
    Symbols outside the model's vocabulary are mapped to UNK or skipped (:func:`fit_vocabulary`).
    """
    if not text.strip():
        raise UserError("the text is empty: type or paste something to record")
    if len(text) > LIVE_MAX_CHARS:
        raise UserError(f"the text has {len(text):,} characters; live mode records at most {LIVE_MAX_CHARS:,}")
    tok = _live_loaded(model).tokenizer
    if tok is None:
        raise UserError("this model has no tokenizer, so typed text cannot be read: type a native checkpoint below")
    kept, note = fit_vocabulary(tok, text)
    return LiveRecording(_live_run(model, kept, annotate), note)


@st.cache_data(max_entries=32, show_spinner="Recording your text…")
def _live_run(model: ModelRef, text: str, annotate: str) -> str:
    digest = hashlib.sha1(f"{model!r}\0{annotate}\0{text}".encode()).hexdigest()[:16]
    out = live_dir() / digest
    if (out / "manifest.json").is_file():
        return str(out)
    loaded = _live_loaded(model)
    if annotate == "code":
        try:
            compile(text, "<live>", "exec")
        except (SyntaxError, ValueError):
            annotate = "none"  # Python tracks need code that tokenizes; plain text gets none
    with data.MODEL_LOCK:
        record_text(
            loaded,
            text,
            out,
            annotate=annotate,
            manifest={"corpus": {"live": True, "chars": len(text)}},
            streams=1,
            chunk=256,
            device="cpu",
            overwrite=True,
            progress=False,
            cards=False,  # a typed text's units are read against the corpus's cards, never its own
        )
    return str(out)

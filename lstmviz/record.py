"""Record a text: tokenize it, check it against the model, add annotation tracks and write the run.

    loaded = lstmviz.load_model("model.pt")
    record_text(loaded, open("code.py").read(), "runs/mine", annotate="code")

The one way a text becomes a run: ``lstmviz record``, ``lstmviz samples`` and the dashboard's live mode all
call :func:`record_text`. Every check runs before any recording starts, and each error names the argument at
fault (see :mod:`lstmviz.errors`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from .models.loading import LoadedModel

ANNOTATE = ("none", "code", "parens")
"""The built-in annotation tracks of a char text: none, Python tokenize tracks, parenthesis nesting depth."""


def record_text(
    loaded: LoadedModel,
    text: str,
    out: str | os.PathLike,
    *,
    annotate: str = "none",
    annotations: str | os.PathLike | None = None,
    max_tokens: int | None = None,
    manifest: dict | None = None,
    **options,
) -> Path:
    """Tokenize ``text``, check it against the model, add annotation tracks and record it into ``out``.

    ``loaded``: a :class:`~lstmviz.models.loading.LoadedModel` with a tokenizer. ``annotate``: one of
    :data:`ANNOTATE` (code and parens need a char tokenizer). ``annotations``: a CSV with a header and one row per
    token, added as token columns. ``max_tokens``: record only the first N tokens. ``manifest``: extra entries for
    the run's manifest (the corpus it came from, say). ``options`` go to
    :func:`~lstmviz.corpus.record_corpus` (streams, chunk, device, mode, names, overwrite, progress), except
    ``projections`` (methods the caller will precompute, checked here against the number of tokens).
    Returns the run directory.
    """
    from .annotate.text import read_annotations
    from .corpus import record_corpus

    tok = loaded.tokenizer
    if tok is None:
        raise UserError(
            'this model has no tokenizer: load it with tokenizer="FILE" (a JSON list, or one token per line)',
            arguments=('tokenizer="FILE"',),
        )
    if annotate not in ANNOTATE:
        raise UserError(f"annotate= must be one of {', '.join(ANNOTATE)}, got {annotate!r}", arguments=("annotate=",))
    if annotate != "none" and tok.kind != "char":
        raise UserError(
            f"annotate={annotate!r} needs a char tokenizer; this one splits {tok.kind}s",
            arguments=(f"annotate={annotate!r}",),
        )
    if max_tokens is not None and tok.kind == "char":
        text = text[:max_tokens]
    projections = options.pop("projections", None)
    check_device(options.get("device"))
    ids = tok.encode(text)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    loaded.check_ids(ids)
    check_projections(projections, len(ids))
    if options.get("mode") == "sequences" and tok.kind != "char":
        raise UserError(
            "mode='sequences' records one sequence per line of the text, which needs a char tokenizer",
            arguments=("mode='sequences'",),
        )
    display = tok.display(ids)
    extra = annotation_tracks(annotate, text) if tok.kind == "char" else None
    if annotations is not None:
        user = read_annotations(annotations, display)
        extra = user if extra is None else extra.join(user, rsuffix="_user")
    if options.get("mode") == "sequences":  # each line a document, its line end not part of it
        from .documents import drop_line_ends

        ids, display, extra, options["docs"] = drop_line_ends(text, ids, display, extra)
    meta = {"model_source": loaded.description, "tokenizer": tok.to_json(), **(manifest or {})}
    return record_corpus(
        loaded.module, ids, out, display=display, call=loaded.call, tokens_extra=extra, manifest=meta, **options
    )


def annotation_tracks(kind: str, text: str) -> pd.DataFrame | None:
    """Annotation tracks of ``text`` for a char model, one row per character: ``"code"`` (Python tokenize
    tracks), ``"parens"`` (nesting depth) or ``"none"`` (None)."""
    if kind == "code":
        from .annotate.code import python_tracks

        return python_tracks(text)
    if kind == "parens":
        from .annotate.parens import paren_depth

        return paren_depth(text)
    return None


def check_projections(methods: Sequence[str] | None, n_tokens: int) -> None:
    """Refuse, before recording, projections that cannot be made of ``n_tokens`` tokens or without umap-learn."""
    from .analysis.projection import MIN_TOKENS

    for method in methods or ():
        if n_tokens < MIN_TOKENS[method]:
            raise UserError(
                f"projections={method!r} needs at least {MIN_TOKENS[method]} tokens; this recording has {n_tokens}",
                arguments=(f"projections={method!r}",),
            )
        if method == "umap" and importlib.util.find_spec("umap") is None:
            raise UserError(
                "projections='umap' needs umap-learn: pip install umap-learn", arguments=("projections='umap'",)
            )


def check_device(name: str | None) -> str | None:
    """``name`` when it is cpu, cuda, cuda:N (or mps) that this machine has; None stays None (the recorder then
    picks cuda when available); anything else is a :class:`UserError`."""
    if name is None:
        return None
    import torch

    given = (f"device={name!r}",)
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"device={name!r} is not a device (use cpu, cuda or cuda:N)", arguments=given) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name!r}: CUDA is not available on this machine", arguments=given)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"device={name!r}: this machine has {count} CUDA device(s), cuda:0…cuda:{count - 1}", arguments=given
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"device={name!r}: MPS is not available on this machine", arguments=given)
    elif device.type != "cpu":
        raise UserError(
            f"device={name!r}: lstmviz records on cpu, cuda or cuda:N, not on {device.type!r}", arguments=given
        )
    return name

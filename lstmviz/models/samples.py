"""The bundled sample models (sample_models/) and how ``lstmviz samples`` records them.

:data:`SAMPLES_DIR` is the one place that says where the sample models live: ``sample_models/`` of the source
checkout this package runs from, or the folder that the environment variable ``LSTMVIZ_SAMPLES`` names.

Each sample is a native checkpoint plus the corpus it was trained on. It is recorded on a held-out excerpt from
the end of that corpus (the last ``--val-frac`` that training never saw), with the annotation tracks that
suit the text: Python tokenize tracks for code, nesting depth for the parentheses language.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

SAMPLES_ENV = "LSTMVIZ_SAMPLES"
SAMPLES_DIR = Path(os.environ.get(SAMPLES_ENV) or Path(__file__).resolve().parents[2] / "sample_models").expanduser()
"""The folder of the sample checkpoints and their corpora: $LSTMVIZ_SAMPLES, else sample_models/ of the source
checkout (an installed wheel has none: :func:`check_samples_dir` says so)."""


@dataclass(frozen=True)
class Sample:
    """A bundled checkpoint, its corpus, and its annotation (``"code"`` or ``"parens"``)."""

    name: str
    checkpoint: str
    corpus: str
    annotate: str

    def excerpt(self, text: str, chars: int) -> str:
        """About the last ``chars`` characters of ``text``, starting at a line (for code: a file) boundary."""
        if len(text) <= chars:
            return text
        cut = len(text) - chars
        start = text.find("\n# ==== ", cut) + 1 if self.annotate == "code" else 0
        if start <= 0:
            start = text.find("\n", cut) + 1
        return text[start:] if 0 < start < len(text) else text[cut:]


SAMPLES = (
    Sample("code_lstm", "code_lstm.pt", "corpora/python_stdlib.txt", "code"),
    Sample("code_gru", "code_gru.pt", "corpora/python_stdlib.txt", "code"),
    Sample("code_rnn", "code_rnn.pt", "corpora/python_stdlib.txt", "code"),
    Sample("parens_lstm", "parens_lstm.pt", "corpora/parens.txt", "parens"),
)


def check_samples_dir(samples_dir: Path = SAMPLES_DIR) -> Path:
    """``samples_dir`` when it is a directory, else a :class:`UserError` that says where to point instead."""
    if not samples_dir.is_dir():
        raise UserError(
            f"no sample models at {samples_dir}: set {SAMPLES_ENV} to the sample_models folder of a source "
            f"checkout of lstmviz"
        )
    return samples_dir


def pick(only: Sequence[str] | None) -> list[Sample]:
    """The samples named in ``only`` (all when empty), or a :class:`UserError` naming the unknown ones."""
    if not only:
        return list(SAMPLES)
    known = {s.name: s for s in SAMPLES}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise UserError(f"no sample model named {', '.join(unknown)}; there are {', '.join(known)}")
    return [known[n] for n in only]


def record_sample(
    sample: Sample,
    out: Path,
    *,
    chars: int = 20000,
    streams: int = 4,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    samples_dir: Path = SAMPLES_DIR,
    projections: Sequence[str] = ("pca", "umap"),
) -> Path:
    """Record one sample model on the held-out tail of its corpus into ``out``, then cache its default maps.

    ``projections`` are precomputed (see :func:`lstmviz.analysis.projection.precompute`), so the Projection page
    opens from cache; UMAP's first use in a process compiles numba code for about a minute.
    """
    from ..analysis.projection import precompute
    from ..models.loading import load_model
    from ..models.tokenizers import read_text
    from ..record import record_text
    from ..store import open_run

    corpus = samples_dir / sample.corpus
    text = sample.excerpt(read_text(corpus), chars)
    path = record_text(
        load_model(samples_dir / sample.checkpoint),
        text,
        out,
        annotate=sample.annotate,
        manifest={
            "corpus": {"file": str(corpus), "excerpt": "held-out tail", "chars": len(text)},
            "sample": sample.name,
        },
        streams=streams,
        chunk=256,
        device=device,
        overwrite=overwrite,
        progress=progress,
    )
    precompute(open_run(path), projections)
    return path


def record_all(
    root: Path,
    on_progress: Callable[[float, str], None] = lambda fraction, message: None,
    *,
    only: Sequence[str] | None = None,
    samples_dir: Path = SAMPLES_DIR,
    overwrite: bool = False,
    **options,
) -> list[Path]:
    """Record the chosen samples (all by default) under ``root``, one folder each. Every file is checked first,
    so a missing checkpoint does not stop the job halfway. ``on_progress(fraction, message)`` is called before
    each sample and at the end; ``options`` go to :func:`record_sample`.
    """
    chosen = pick(only)
    check_samples_dir(samples_dir)
    for s in chosen:
        for f in (samples_dir / s.checkpoint, samples_dir / s.corpus):
            if not f.is_file():
                raise UserError(f"sample file {f} is missing (train it with sample_models/train_all.sh)")
        if (root / s.name).exists() and not overwrite:
            raise UserError(
                f"{root / s.name} already exists: pass overwrite=True to replace it", arguments=("overwrite=True",)
            )
    root.mkdir(parents=True, exist_ok=True)
    done = []
    for i, s in enumerate(chosen):
        on_progress(i / len(chosen), f"Recording sample {s.name} ({i + 1}/{len(chosen)})…")
        done.append(record_sample(s, root / s.name, samples_dir=samples_dir, overwrite=overwrite, **options))
    on_progress(1.0, "Samples recorded.")
    return done

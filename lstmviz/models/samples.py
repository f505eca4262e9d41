"""The bundled sample models (sample_models/) and how ``lstmviz samples`` records them.

:data:`SAMPLES_DIR` is the one place that says where the sample models live: ``sample_models/`` of the source
checkout this package runs from, or the folder that the environment variable ``LSTMVIZ_SAMPLES`` names.

Most samples are a native checkpoint plus the corpus it was trained on. Each is recorded on a held-out excerpt
from the end of that corpus (the last ``--val-frac`` that training never saw), with the annotation tracks that
suit the text: Python tokenize tracks for code, nesting depth for the parentheses language, none for prose.

A documents sample (``factory`` set: a many-to-one classifier) is a ``package.module:factory`` in the samples
folder, its state_dict and its vocabulary file; it is recorded as ``lstmviz record --docs`` records, one held-out
string per document, so the run has each document's true ``doc_label`` and the model's ``pred`` and ``p0`` … .
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
    """A bundled checkpoint, its corpus, and its annotation (``"code"``, ``"parens"`` or ``"none"``).

    For a documents sample, ``checkpoint`` is the state_dict that ``factory`` (``module:function``, importable
    from the samples folder) fills, ``tokenizer`` its vocabulary file, and ``corpus`` a JSONL documents file.
    """

    name: str
    checkpoint: str
    corpus: str
    annotate: str
    factory: str | None = None
    tokenizer: str | None = None

    @property
    def docs(self) -> bool:
        """Whether the sample is recorded as independent documents (a classifier), not as a text stream."""
        return self.factory is not None

    def files(self) -> list[str]:
        """Every file of the sample, relative to the samples folder."""
        code = [f"{self.factory.partition(':')[0]}.py"] if self.factory else []
        return [self.checkpoint, self.corpus, *code, *([self.tokenizer] if self.tokenizer else [])]

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
    Sample("shakespeare_lstm", "shakespeare_lstm.pt", "corpora/shakespeare.txt", "none"),
    Sample(
        "balanced_gru",
        "balanced_gru.pt",
        "corpora/balanced.jsonl",
        "none",
        factory="balanced_gru:build",
        tokenizer="balanced_vocab.json",
    ),
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
    from ..store import open_run

    if sample.docs:
        path = _record_documents(sample, out, streams, device, overwrite, progress, samples_dir)
    else:
        path = _record_text(sample, out, chars, streams, device, overwrite, progress, samples_dir)
    precompute(open_run(path), projections)
    return path


def _record_text(
    sample: Sample, out: Path, chars: int, streams: int, device: str, overwrite: bool, progress: bool, samples_dir: Path
) -> Path:
    from ..models.loading import load_model
    from ..models.tokenizers import read_text
    from ..record import record_text

    corpus = samples_dir / sample.corpus
    text = sample.excerpt(read_text(corpus), chars)
    return record_text(
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


def _record_documents(
    sample: Sample, out: Path, streams: int, device: str, overwrite: bool, progress: bool, samples_dir: Path
) -> Path:
    """As ``lstmviz record --model FACTORY --code SAMPLES --weights CKPT --tokenizer VOCAB --docs CORPUS``."""
    from ..documents import read_docs, record_docs
    from ..models.loading import load_model

    loaded = load_model(
        model=sample.factory,
        weights=samples_dir / sample.checkpoint,
        code=samples_dir,
        tokenizer=samples_dir / sample.tokenizer if sample.tokenizer else None,
    )
    corpus = samples_dir / sample.corpus
    return record_docs(
        loaded,
        read_docs(corpus),
        out,
        manifest={"corpus": {"file": str(corpus), "excerpt": "held-out documents"}, "sample": sample.name},
        streams=max(streams, 64),  # documents per batch: short strings, so many at once
        device=device,
        overwrite=overwrite,
        progress=progress,
    )


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
        for f in (samples_dir / name for name in s.files()):
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

"""The options of each ``lstmviz`` subcommand, and how library arguments are spelled as flags.

Only argument definitions live here; :mod:`lstmviz.cli` builds the parser from them and runs the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .record import ANNOTATE

PROJECTIONS = ["pca", "umap"]

FLAGS = {
    "model": "--model",
    "weights": "--weights",
    "code": "--code",
    "trust_pickle": "--trust-pickle",
    "tokenizer": "--tokenizer",
    "convention": "--convention",
    "layout": "--layout",
    "annotate": "--annotate",
    "names": "--names",
    "mode": "--mode",
    "device": "--device",
    "projections": "--project",
    "overwrite": "--overwrite",
    "gates": "--gates",
    "shards": "--shards",
    "cards": "--no-cards",
}
"""Library argument name → the flag that sets it, for :meth:`lstmviz.errors.UserError.reworded`."""


def add_record(p: argparse.ArgumentParser) -> None:
    """The options of ``lstmviz record``."""
    src = p.add_argument_group("model (a native checkpoint, or --model with --weights)")
    src.add_argument("--checkpoint", type=Path, help="native lstmviz checkpoint (or a pickled module)")
    src.add_argument("--model", metavar="PKG.MOD:FACTORY", help="build your own model by calling this")
    src.add_argument("--weights", type=Path, help="state_dict file for --model (loaded weights-only)")
    src.add_argument(
        "--code",
        type=Path,
        help="directory to add to the import path: for --model, or a pickled --checkpoint's classes",
    )
    src.add_argument(
        "--trust-pickle", action="store_true", help="allow a pickled whole module; loading one runs code from the file"
    )
    src.add_argument(
        "--tokenizer",
        "--vocab",
        type=Path,
        help="vocabulary file (a JSON list, or one token per line; the id is the position) for --model. It splits "
        "text by character when every entry but special symbols like <pad>, <unk> is one character, else into "
        "words on whitespace; a word vocabulary listing <eos> ends every line with it, as word_language_model's "
        "data.py does",
    )
    src.add_argument(
        "--convention",
        choices=["ids", "ids_hidden", "ids_lengths"],
        help="call as model(ids), model(ids, hidden) or model(ids, lengths); guessed by default",
    )
    src.add_argument("--layout", choices=["batch", "seq"], help="ids as [batch, time] or [time, batch]")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", type=Path, help="UTF-8 text to record")
    given.add_argument(
        "--docs",
        type=Path,
        metavar="FILE",
        help='documents to record each on its own: JSONL ({"text": …, "label": …} a line; the other fields '
        "become doc_* token columns) or one document per line (the line end not part of it). A classifier's "
        "output per document is kept as pred, pred_p, p0…",
    )
    p.add_argument(
        "--out",
        required=True,
        help="run directory to create, or a URI on a pyarrow filesystem (s3://bucket/prefix, gs://…)",
    )
    p.add_argument(
        "--annotate",
        choices=list(ANNOTATE),
        default="none",
        help="add Python tokenize tracks (code) or nesting depth (parens) to the tokens",
    )
    p.add_argument("--annotations", type=Path, help="CSV with a header and one row per token")
    p.add_argument("--max-tokens", type=int, help="record only the first N tokens")
    p.add_argument("--streams", type=int, default=16, help="parallel streams (default 16)")
    p.add_argument("--chunk", type=int, default=256, help="steps per forward (default 256)")
    p.add_argument(
        "--mode",
        choices=["stateful", "sequences"],
        default="stateful",
        help="stateful: one continuous text; sequences: each line of --text alone (its line end not part of it)",
    )
    p.add_argument("--names", nargs="+", help="record only these activation names")
    p.add_argument(
        "--gates",
        choices=["float16", "8bit"],
        default="float16",
        help="store the sigmoid gates (i f o, r z) as float16, or as 8bit levels: 1 byte per value, "
        "each within 0.0022 of the exact gate (docs/FORMAT.md)",
    )
    p.add_argument(
        "--no-cards",
        dest="cards",
        action="store_false",
        help="leave the unit cards out of the recording (the Unit page then builds an activation's cards on its "
        "first visit)",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--shards", type=int, help="record N contiguous pieces on Ray workers into one sharded run")
    p.add_argument("--ray", metavar="local|ADDRESS", help="Ray cluster for --shards (default: local)")
    p.add_argument(
        "--project",
        nargs="+",
        choices=PROJECTIONS,
        help="precompute these projections of the default activation for the Projection page",
    )


def add_samples(p: argparse.ArgumentParser) -> None:
    """The options of ``lstmviz samples``."""
    from .models.samples import SAMPLES_DIR

    p.add_argument("--out", type=Path, default=Path("runs"), help="directory for the runs (default runs/)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="record only these samples")
    p.add_argument("--chars", type=int, default=20000, help="characters per run (default 20000)")
    p.add_argument("--streams", type=int, default=4, help="parallel streams (default 4)")
    p.add_argument("--samples-dir", type=Path, default=SAMPLES_DIR, help=argparse.SUPPRESS)
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace existing runs")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--project",
        nargs="*",
        default=PROJECTIONS,
        choices=PROJECTIONS,
        help="projections to precompute for the Projection page (default: pca umap; none: --project)",
    )


def add_import(p: argparse.ArgumentParser) -> None:
    """The options of ``lstmviz import-lstmvis``."""
    p.add_argument("folder", type=Path)
    p.add_argument(
        "--out",
        required=True,
        help="run directory to create, or a URI on a pyarrow filesystem (s3://bucket/prefix, gs://…)",
    )
    p.add_argument("--overwrite", action="store_true")


def add_export(p: argparse.ArgumentParser) -> None:
    """The options of ``lstmviz export``."""
    p.add_argument("run", help="run directory, or its URI on a pyarrow filesystem (s3://bucket/prefix, gs://…)")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--lstmvis", type=Path, metavar="FOLDER", help="an LSTMVis project folder")
    dest.add_argument("--csv", type=Path, metavar="FILE", help="a CSV table, one row per token")
    dest.add_argument("--parquet", type=Path, metavar="FILE", help="a parquet table, one row per token")
    p.add_argument("--names", nargs="+", help="activations to export (default: all)")
    p.add_argument("--start", type=int, help="first token (CSV/parquet)")
    p.add_argument("--stop", type=int, help="token after the last (CSV/parquet)")
    p.add_argument("--overwrite", action="store_true")

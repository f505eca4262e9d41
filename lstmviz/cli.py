"""The ``lstmviz`` command line.

    lstmviz train   --corpus code.txt --arch lstm --layers 2 --hidden 256 --out model.pt
    lstmviz record  --checkpoint model.pt --text code.py --annotate code --out runs/mine
    lstmviz record  --model mypkg.models:build --weights sd.pt --tokenizer vocab.json --text t.txt --out runs/x
    lstmviz info    runs/mine
    lstmviz samples --out runs
    lstmviz export  runs/mine --csv mine.csv --names rnn.l1.fwd.c --start 0 --stop 1000
    lstmviz import-lstmvis lstmvis_project/ --out runs/imported

A user error (a missing file, a bad option, a text the model cannot read…) prints one line,
``lstmviz: error: …``, to stderr and exits with status 2, leaving no half-written output behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError, UserError

if TYPE_CHECKING:
    from .models.loading import LoadedModel

EXIT_USAGE = 2
EXIT_FAILURE = 1


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too, without the usage block (``--help`` shows that)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())}\n")


# --- record ---------------------------------------------------------------------------------------------------


def _check_out(out: Path, overwrite: bool, kind: str = "run", option: str = "--out") -> None:
    """Refuse, before any work, an output that lstmviz may not write or replace (see lstmviz/outputs.py)."""
    from .outputs import check_target

    check_target(out, kind, overwrite, name=option, flag="--overwrite")


def _device(name: str | None) -> str | None:
    """``--device``: cpu, cuda, cuda:N (or mps) that this machine has; anything else is a UserError."""
    if name is None:
        return None
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r} is not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0…cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {name}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: lstmviz records on cpu, cuda or cuda:N, not on {device.type!r}")
    return name


def _check_projections(methods: Sequence[str] | None, n_tokens: int, option: str) -> None:
    """Refuse, before recording, projections that cannot be made of ``n_tokens`` tokens or without umap-learn."""
    import importlib.util

    from .analysis.projection import MIN_TOKENS

    for method in methods or ():
        if n_tokens < MIN_TOKENS[method]:
            raise UserError(
                f"{option} {method} needs at least {MIN_TOKENS[method]} tokens; this recording has {n_tokens}"
            )
        if method == "umap" and importlib.util.find_spec("umap") is None:
            raise UserError(f"{option} umap needs umap-learn: pip install umap-learn")


def record_text(
    loaded: LoadedModel,
    text: str,
    out: Path,
    *,
    annotate: str = "none",
    annotations: Path | None = None,
    max_tokens: int | None = None,
    manifest: dict | None = None,
    **options,
) -> Path:
    """Tokenize ``text``, check it against the model, add annotation tracks and record it into ``out``.

    ``loaded``: a :class:`~lstmviz.models.loading.LoadedModel`. ``options`` go to ``record_corpus``
    (streams, chunk, device, mode, names, overwrite, progress), except ``projections`` (methods the caller
    will precompute, checked here against the number of tokens). Every check runs before any recording starts.
    """
    from . import recorder
    from .annotate.text import read_annotations
    from .documents import drop_line_ends
    from .models.samples import annotations as tracks

    tok = loaded.tokenizer
    if tok is None:
        raise UserError("this model has no tokenizer: pass --tokenizer FILE (a JSON list, or one token per line)")
    if annotate in ("code", "parens") and tok.kind != "char":
        raise UserError(f"--annotate {annotate} needs a char tokenizer; this one splits {tok.kind}s")
    if max_tokens is not None and tok.kind == "char":
        text = text[:max_tokens]
    projections = options.pop("projections", None)
    names = options.get("names")
    if names:
        available = [a.name for rm in recorder.find_recurrent(loaded.module) for a in rm.activations()]
        unknown = [n for n in names if n not in available]
        if unknown:
            raise UserError(
                f"--names: this model has no activation {unknown[0]!r}; it has e.g. {', '.join(available[:6])}"
            )
    ids = tok.encode(text)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    loaded.check_ids(ids)
    _check_projections(projections, len(ids), "--project")
    if options.get("mode") == "sequences" and tok.kind != "char":
        raise UserError("--mode sequences records one sequence per line of the text, which needs a char tokenizer")
    display = tok.display(ids)
    extra = tracks(annotate, text) if tok.kind == "char" else None
    if annotations is not None:
        user = read_annotations(annotations, display)
        extra = user if extra is None else extra.join(user, rsuffix="_user")
    if options.get("mode") == "sequences":
        ids, display, extra, options["docs"] = drop_line_ends(text, ids, display, extra)
    meta = {"model_source": loaded.description, "tokenizer": tok.to_json(), **(manifest or {})}
    return recorder.record_corpus(
        loaded.module, ids, out, display=display, call=loaded.call, tokens_extra=extra, manifest=meta, **options
    )


def _record(args: argparse.Namespace) -> int:
    from .models.loading import load_model
    from .models.tokenizers import read_text

    _check_out(args.out, args.overwrite)
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if args.streams < 1 or args.chunk < 1:
        raise UserError("--streams and --chunk must be at least 1")
    device = _device(args.device)
    if args.docs is not None:
        from .documents import read_docs

        docs = read_docs(args.docs)
        given = [
            f
            for f, v in (
                ("--annotate", args.annotate != "none"),
                ("--annotations", args.annotations),
                ("--max-tokens", args.max_tokens),
                ("--mode", args.mode != "stateful"),
                ("--project", args.project),
            )
            if v
        ]
        if given:
            raise UserError(f"{given[0]} applies to --text, not to --docs (each document is recorded on its own)")
    text = read_text(args.text) if args.text is not None else None
    loaded = load_model(
        args.checkpoint,
        model=args.model,
        weights=args.weights,
        code=args.code,
        trust_pickle=args.trust_pickle,
        tokenizer=args.tokenizer,
        convention=args.convention,
        layout=args.layout,
    )
    if args.docs is not None:
        from .documents import record_docs

        out = record_docs(
            loaded,
            docs,
            args.out,
            manifest={"corpus": {"file": str(args.docs.resolve())}},
            streams=args.streams,
            device=device,
            names=args.names,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        print(f"recorded {out}")
        return 0
    out = record_text(
        loaded,
        text,
        args.out,
        annotate=args.annotate,
        annotations=args.annotations,
        max_tokens=args.max_tokens,
        manifest={"corpus": {"file": str(args.text)}},
        streams=args.streams,
        chunk=args.chunk,
        device=device,
        mode=args.mode,
        names=args.names,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        projections=args.project,
    )
    if args.project:
        from .analysis.projection import precompute
        from .store import open_run

        precompute(open_run(out), args.project)
    print(f"recorded {out}")
    return 0


def _add_record(sub) -> None:
    p = sub.add_parser(
        "record",
        help="record every activation of a model over a text into a run directory",
        description="Record every gate, cell and hidden state of a model over a text.",
    )
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
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument(
        "--annotate",
        choices=["none", "code", "parens"],
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
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--project",
        nargs="+",
        choices=["pca", "umap"],
        help="precompute these projections of the default activation for the Projection page",
    )
    p.set_defaults(func=_record)


# --- info -------------------------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe_run(path: Path) -> list[str]:
    """The lines ``lstmviz info`` prints: tokens, model, tokenizer, activations by layer, size on disk."""
    from collections import defaultdict

    from .store import open_run

    run = open_run(path)
    m = run.manifest
    tokens = run.tokens
    model = m.get("model", {})
    source = m.get("model_source", {})
    metrics = source.get("metrics") or {}
    tok = m.get("tokenizer") or {}
    rec = m.get("recording", {})
    params = f", {model['params']:,} parameters" if model.get("params") else ""
    val = f", val {metrics['val_bpc']} bits/char" if metrics.get("val_bpc") else ""
    lines = [
        f"run         {run.path}",
        f"created     {m.get('created', '?')} by lstmviz {m.get('lstmviz_version', '?')}",
        f"tokens      {run.n_tokens:,} in {tokens['doc'].nunique() if len(tokens) else 0} document(s)",
        f"model       {model.get('class', '?')}{params}{val}",
    ]
    if tok.get("vocab"):
        lines.append(f"tokenizer   {tok.get('kind')}, {len(tok['vocab'])} symbols")
    elif tok:
        lines.append(f"tokenizer   {tok.get('type', '?')}, {tok.get('size', '?')} symbols")
    if rec:
        lines.append(
            f"recording   {rec.get('mode')}, {rec.get('streams')} streams × {rec.get('chunk')} steps, "
            f"{rec.get('device')}"
        )
    if "loss" in tokens:
        import numpy as np

        loss = tokens["loss"].to_numpy(dtype=float)
        lines.append(f"loss        {np.nanmean(loss) / np.log(2):.3f} bits/token")
    extra = [c for c in tokens.columns if c not in ("idx", "doc", "pos", "token_id", "token")]
    lines.append(f"columns     {', '.join(extra) if extra else '(none beyond the tokens)'}")
    groups: dict[str, list[str]] = defaultdict(list)
    for a in m["activations"]:
        groups[f"{a['module']}.l{a['layer']}.{a['dir']}"].append(f"{a['kind']}[{a['units']}]")
    lines.append(f"activations {len(m['activations'])}, {sum(a['units'] for a in m['activations']):,} units")
    lines += [f"  {prefix}: {' '.join(kinds)}" for prefix, kinds in groups.items()]
    lines.append(f"size        {_size(run.path) / 1e6:.1f} MB on disk")
    return lines


def _info(args: argparse.Namespace) -> int:
    print("\n".join(describe_run(args.run)))
    return 0


# --- samples --------------------------------------------------------------------------------------------------


def _samples(args: argparse.Namespace) -> int:
    from .models import samples

    if args.chars < 1:
        raise UserError(f"--chars must be at least 1, got {args.chars}")
    if args.streams < 1:
        raise UserError(f"--streams must be at least 1, got {args.streams}")
    _check_projections(args.project, args.chars, "--project")
    for s in samples.pick(args.only):
        _check_out(args.out / s.name, args.overwrite)
    for out in samples.record_all(
        args.out,
        only=args.only,
        samples_dir=args.samples_dir,
        overwrite=args.overwrite,
        chars=args.chars,
        streams=args.streams,
        device=_device(args.device),
        progress=not args.no_progress,
        projections=args.project,
    ):
        print(f"recorded {out}")
    return 0


def _add_samples(sub) -> None:
    from .models.samples import SAMPLES, SAMPLES_DIR

    p = sub.add_parser(
        "samples",
        help="record the bundled sample models on their corpora",
        description="Record the bundled sample models ("
        + ", ".join(s.name for s in SAMPLES)
        + ") on a held-out excerpt of their corpora, with annotation tracks.",
    )
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
        default=["pca", "umap"],
        choices=["pca", "umap"],
        help="projections to precompute for the Projection page (default: pca umap; none: --project)",
    )
    p.set_defaults(func=_samples)


# --- train, import, export ------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from .models import train

    train.train(args)
    return 0


def _import(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        raise UserError(f"{args.folder} is not a directory (an LSTMVis project folder with lstm.yml)")
    _check_out(args.out, args.overwrite)
    from .interop.lstmvis import import_lstmvis

    print(f"imported {import_lstmvis(args.folder, args.out, overwrite=args.overwrite)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .store import open_run

    run = open_run(args.run)
    for name in args.names or []:
        run.info(name)  # a RunError naming the unknown activation
    option, dest = next((f"--{k}", getattr(args, k)) for k in ("lstmvis", "csv", "parquet") if getattr(args, k))
    if Path(os.path.abspath(dest)).is_relative_to(Path(os.path.abspath(run.path))):
        raise UserError(f"{option} {dest} is inside the run {run.path}: export it somewhere else")
    if args.lstmvis is not None:
        if args.start is not None or args.stop is not None:
            raise UserError("--start and --stop choose the tokens of a --csv or --parquet table; --lstmvis exports all")
        _check_out(dest, args.overwrite, "lstmvis", option)
        from .interop.lstmvis import export_lstmvis

        dest = export_lstmvis(run, dest, names=args.names, overwrite=args.overwrite)
    else:
        start, stop = _token_range(args.start, args.stop, run.n_tokens)
        _check_out(dest, args.overwrite, "table", option)
        from .interop.tables import export_table

        dest = export_table(run, dest, args.names, start, stop, option[2:], overwrite=args.overwrite)
    print(f"exported {dest}")
    return 0


def _token_range(start: int | None, stop: int | None, n_tokens: int) -> tuple[int, int]:
    """``--start``/``--stop`` as ``0 ≤ start < stop ≤ n_tokens`` (default: every token), or a UserError: an
    empty or out-of-range selection is a mistake, not a table with a header and no rows."""
    start = 0 if start is None else start
    stop = n_tokens if stop is None else stop
    if start < 0 or stop < 0:
        raise UserError(f"--start and --stop count tokens from 0; got --start {start} --stop {stop}")
    if start >= n_tokens:
        raise UserError(f"--start {start} is past the end: the run has {n_tokens} tokens (0…{n_tokens - 1})")
    if stop > n_tokens:
        raise UserError(f"--stop {stop} is past the end: the run has {n_tokens} tokens")
    if stop <= start:
        raise UserError(f"--stop {stop} must be greater than --start {start}")
    return start, stop


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = _Parser(prog="lstmviz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the whole traceback of an unexpected error, e.g. one raised inside your own model",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_record(sub)

    from .models import train

    p = sub.add_parser(
        "train",
        help="train the reference char model on a text",
        description=train.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("info", help="what is in a run, and its size")
    p.add_argument("run", type=Path)
    p.set_defaults(func=_info)
    _add_samples(sub)

    p = sub.add_parser("import-lstmvis", help="turn an LSTMVis project folder into a run")
    p.add_argument("folder", type=Path)
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_import)

    p = sub.add_parser("export", help="write a run's activations as an LSTMVis folder, CSV or parquet")
    p.add_argument("run", type=Path)
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--lstmvis", type=Path, metavar="FOLDER", help="an LSTMVis project folder")
    dest.add_argument("--csv", type=Path, metavar="FILE", help="a CSV table, one row per token")
    dest.add_argument("--parquet", type=Path, metavar="FILE", help="a parquet table, one row per token")
    p.add_argument("--names", nargs="+", help="activations to export (default: all)")
    p.add_argument("--start", type=int, help="first token (CSV/parquet)")
    p.add_argument("--stop", type=int, help="token after the last (CSV/parquet)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_export)
    return parser


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename:
        msg = f"{e.strerror or type(e).__name__}: {e.filename}"
    return " ".join(msg.split())


def _failure(message: str, command: str) -> int:
    print(
        f"lstmviz: error: {message} (rerun as `lstmviz --traceback {command} …` to see where it was raised)",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lstmviz`` script; returns the exit status."""
    from .store import RunError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # train stores the command that made a checkpoint
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that left (`lstmviz info RUN | head`) shows up here rather than at exit
        return status
    except BrokenPipeError:  # which is fine: send what is left of our output nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModelError as e:  # before UserError, which it is: the user's own code raised, so show the way in
        if args.traceback:
            raise
        return _failure(str(e), args.command)
    except (
        UserError,
        RunError,
        ValueError,
        OSError,
    ) as e:
        print(f"lstmviz: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lstmviz: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything else (a bug of ours, say): one line too, and the way to the traceback
        if args.traceback:
            raise
        return _failure(f"{type(e).__name__}: {_one_line(e)}", args.command)

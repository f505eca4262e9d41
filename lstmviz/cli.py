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

from . import cli_args
from .errors import ModelError, UserError
from .record import check_device, check_projections, record_text

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


def _check_run_out(out: str, overwrite: bool):
    """The run's location (a Path, or an FsPath on object storage), refused before any work if lstmviz may not
    write there; a URI that does not resolve (unknown scheme, no bucket, no credentials) is one line too."""
    from .location import FsPath, check_remote_target, resolve

    target = resolve(out)
    if isinstance(target, FsPath):
        check_remote_target(target, "--out")
    else:
        _check_out(target, overwrite)
    return target


def _record(args: argparse.Namespace) -> int:
    from .models.loading import load_model
    from .models.tokenizers import read_text

    args.out = _check_run_out(args.out, args.overwrite)
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if args.streams < 1 or args.chunk < 1:
        raise UserError("--streams and --chunk must be at least 1")
    if args.shards is not None and args.shards < 1:
        raise UserError(f"--shards must be at least 1, got {args.shards}")
    if args.ray is not None and args.shards is None:
        raise UserError("--ray names where to record shards: pass --shards N too")
    device = check_device(args.device)
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
                ("--shards", args.shards is not None),
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
            gates=args.gates,
            cards=args.cards,
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
        gates=args.gates,
        cards=args.cards,
        **({"shards": args.shards, "ray": args.ray or "local"} if args.shards is not None else {}),
    )
    if args.project:
        from .analysis.projection import precompute
        from .store import open_run

        precompute(open_run(out), args.project)
    print(f"recorded {out}")
    return 0


# --- info -------------------------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe_run(path: str | Path) -> list[str]:
    """The lines ``lstmviz info`` prints: tokens, model, tokenizer, activations by layer, size on disk."""
    from collections import defaultdict

    from .location import FsPath, tree_size
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
    if rec.get("shards"):
        lines.append(f"shards      {len(rec['shards'])}, recorded on Ray ({rec.get('ray', '?')})")
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
    if isinstance(run.path, FsPath):
        lines.append(f"size        {tree_size(run.path) / 1e6:.1f} MB stored")
    else:
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
    check_projections(args.project, args.chars)
    for s in samples.pick(args.only):
        _check_out(args.out / s.name, args.overwrite)
    for out in samples.record_all(
        args.out,
        only=args.only,
        samples_dir=args.samples_dir,
        overwrite=args.overwrite,
        chars=args.chars,
        streams=args.streams,
        device=check_device(args.device),
        progress=not args.no_progress,
        projections=args.project,
    ):
        print(f"recorded {out}")
    return 0


# --- train, import, export ------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from .models import train

    train.train(args)
    return 0


def _import(args: argparse.Namespace) -> int:
    _check_out(args.out, args.overwrite)
    from .interop.lstmvis_import import import_lstmvis

    print(f"imported {import_lstmvis(args.folder, args.out, overwrite=args.overwrite)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .store import open_run

    run = open_run(args.run)
    for name in args.names or []:
        run.info(name)  # a RunError naming the unknown activation
    option, dest = next((f"--{k}", getattr(args, k)) for k in ("lstmvis", "csv", "parquet") if getattr(args, k))
    local = isinstance(run.path, Path)  # a run on object storage cannot hold a local destination
    if local and Path(os.path.abspath(dest)).is_relative_to(Path(os.path.abspath(run.path))):
        raise UserError(f"{option} {dest} is inside the run {run.path}: export it somewhere else")
    if args.lstmvis is not None:
        if args.start is not None or args.stop is not None:
            raise UserError("--start and --stop choose the tokens of a --csv or --parquet table; --lstmvis exports all")
        _check_out(dest, args.overwrite, "lstmvis", option)
        from .interop.lstmvis_export import export_lstmvis

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
    from .models import train
    from .models.samples import SAMPLES

    parser = _Parser(prog="lstmviz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the whole traceback of an unexpected error, e.g. one raised inside your own model",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser(
        "record",
        help="record every activation of a model over a text into a run directory",
        description="Record every gate, cell and hidden state of a model over a text.",
    )
    cli_args.add_record(p)
    p.set_defaults(func=_record)

    p = sub.add_parser(
        "train",
        help="train the reference char model on a text",
        description=train.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("info", help="what is in a run, and its size")
    p.add_argument("run", help="run directory, or its URI on a pyarrow filesystem (s3://bucket/prefix, gs://…)")
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "samples",
        help="record the bundled sample models on their corpora",
        description=f"Record the bundled sample models ({', '.join(s.name for s in SAMPLES)}) on a held-out "
        "excerpt of their corpora, with annotation tracks.",
    )
    cli_args.add_samples(p)
    p.set_defaults(func=_samples)

    p = sub.add_parser("import-lstmvis", help="turn an LSTMVis project folder into a run")
    cli_args.add_import(p)
    p.set_defaults(func=_import)

    p = sub.add_parser("export", help="write a run's activations as an LSTMVis folder, CSV or parquet")
    cli_args.add_export(p)
    p.set_defaults(func=_export)
    return parser


def _one_line(e: BaseException) -> str:
    """The error's message on one line, a library error's arguments spelled as the flags that set them."""
    msg = (e.reworded(cli_args.FLAGS) if isinstance(e, UserError) else str(e)) or type(e).__name__
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
        return _failure(_one_line(e), args.command)
    except (ValueError, OSError) as e:  # UserError and RunError, which are ValueErrors, too
        print(f"lstmviz: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lstmviz: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything else (a bug of ours, say): one line too, and the way to the traceback
        if args.traceback:
            raise
        return _failure(f"{type(e).__name__}: {_one_line(e)}", args.command)

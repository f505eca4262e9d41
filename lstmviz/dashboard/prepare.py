"""First start: the bundled samples recorded into a runs root in the background, while the app is already up.

    python -m lstmviz.dashboard.prepare RUNS_ROOT [--samples-dir DIR] [--chars N] [--parent PID]

With :mod:`lstmviz.dashboard.live` this is the only place of the dashboard that writes runs. ``app.py`` calls
:func:`ensure` on every run of its script. When the root needs preparing (:func:`needed`: it holds no run yet, a
preparation began and did not finish, or a sample is missing beside the others) and no preparer is at work on
it, :func:`ensure` starts one: this module, as a subprocess, so that torch's work and numba's compilation never
hold the app's interpreter, and so that it outlives the rerun and the session that started it.

A preparer works through :func:`plan` in order:

1. record the first sample, code_lstm (the teaching model); the app waits for this one alone, a few seconds;
2. record every other sample the root lacks;
3. the Projection page's default maps (PCA, UMAP) of every sample run;
4. the Gradients page's default curves of every sample that is a language model
   (:mod:`lstmviz.analysis.gradient_cache`);
5. the unit catalogue of every sample (every unit labelled by the annotation it tracks best: the Units page, and
   the units a lesson points to), code_lstm's first.

**One preparer per root.** A preparer holds an exclusive lock on ``ROOT/.prepare.lock`` (``flock``) for its whole
life, and exits at once if another holds it. The operating system drops the lock with the process however it
ends, so a killed preparer leaves no stale lock: the next start of the app starts a new one, which skips every
step whose output exists.

**Never a half run.** A run is filled as a hidden ``.partial`` sibling and renamed into place
(:mod:`lstmviz.outputs`); cache files are written under a temporary name and renamed. A preparer killed midway
leaves nothing that looks complete and is not.

**Progress** goes to ``ROOT/.prepare.json``, rewritten atomically after every step (:class:`Status`): the steps,
which are done and how long each took, the errors. The estimate of what is left scales each step's expected
seconds (:data:`EXPECTED_S`) by how fast the finished ones went on this machine. Started by the app, a preparer
exits when the app is gone (``--parent``), so a killed server leaves no orphan at work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.projection import METHODS
from ..models import samples

LOCK = ".prepare.lock"
STATUS = ".prepare.json"
LOG = ".prepare.log"
EXPECTED_S = {
    "record": 8.0,
    "record_docs": 4.0,
    "pca": 1.0,
    "umap": 15.0,
    "umap_first": 60.0,
    "gradients": 8.0,
    "catalogue": 25.0,
}
"""Seconds each kind of step takes on an idle 2-core CPU (UMAP's first call in a process compiles for a minute)."""


@dataclass
class Step:
    """One unit of work: ``kind`` (record | projections | gradients | catalogue) for ``sample``; ``seconds`` (wall)
    and ``cpu_s`` once done."""

    kind: str
    sample: str
    expected_s: float
    done: bool = False
    seconds: float | None = None
    error: str | None = None
    cpu_s: float | None = None  # this process's CPU seconds for the step: what a busy machine does not inflate

    @property
    def label(self) -> str:
        what = {
            "record": "recording",
            "projections": "PCA and UMAP maps of",
            "gradients": "gradient curves of",
            "catalogue": "the unit catalogue of",
        }
        return f"{what[self.kind]} {self.sample}"


@dataclass
class Status:
    """What ``ROOT/.prepare.json`` says: the plan's steps, whether the preparer finished, and when it started."""

    steps: list[Step] = field(default_factory=list)
    finished: bool = False
    started: float = 0.0
    pid: int = 0

    @property
    def done(self) -> int:
        return sum(s.done for s in self.steps)

    @property
    def errors(self) -> list[str]:
        return [f"{s.label}: {s.error}" for s in self.steps if s.error]

    def current(self) -> Step | None:
        """The first step not done (the one at work while a preparer runs)."""
        return next((s for s in self.steps if not s.done), None)

    def seconds_left(self) -> float:
        """Estimated seconds until every step is done: the expected seconds of the steps left, scaled by how much
        faster or slower than expected the finished ones were (bounded, so one odd step cannot swing it far)."""
        finished = [s for s in self.steps if s.done and s.seconds is not None and not s.error]
        left = sum(s.expected_s for s in self.steps if not s.done)
        expected = sum(s.expected_s for s in finished)
        speed = min(5.0, max(0.3, sum(s.seconds for s in finished) / expected)) if expected else 1.0
        return left * speed

    def to_json(self) -> dict:
        return {
            "steps": [vars(s) for s in self.steps],
            "finished": self.finished,
            "started": self.started,
            "pid": self.pid,
        }

    @classmethod
    def read(cls, root: Path) -> Status | None:
        """The status of the last preparation of ``root``, or None when none began (or the file is unreadable)."""
        try:
            d = json.loads((root / STATUS).read_text(encoding="utf-8"))
            return cls([Step(**s) for s in d["steps"]], bool(d["finished"]), float(d["started"]), int(d["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, root: Path) -> None:
        tmp = root / f".{STATUS}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        os.replace(tmp, root / STATUS)


# --- what a root needs ------------------------------------------------------------------------------------------


def available(samples_dir: Path | None = None) -> list[samples.Sample]:
    """The samples whose files are all in ``samples_dir`` (default: :data:`samples.SAMPLES_DIR`, read at each call),
    code_lstm (the teaching model) first."""
    samples_dir = samples_dir or samples.SAMPLES_DIR
    return [s for s in samples.SAMPLES if all((samples_dir / f).is_file() for f in s.files())]


def _recorded(root: Path, name: str) -> bool:
    return (root / name / "manifest.json").is_file()


def _has_runs(root: Path) -> bool:
    from .data import find_runs  # the dashboard's own notion of a run under a root

    return bool(find_runs(root))


def needed(root: Path, samples_dir: Path | None = None) -> bool:
    """Whether ``root`` wants a preparer: there are samples to record, and the root is empty, or a preparation
    began and did not finish, or holds some samples but lacks others that no finished preparation tried. A
    user's own runs root (runs, none of them samples) is left alone."""
    present = available(samples_dir)
    if not present:
        return False
    status = Status.read(root)
    if status is not None and not status.finished:
        return True
    tried = {s.sample for s in status.steps} if status else set()
    recorded = [s for s in present if _recorded(root, s.name)]
    if not recorded:
        return status is None and not _has_runs(root)
    return any(not _recorded(root, s.name) and s.name not in tried for s in present)


def plan(root: Path, samples_dir: Path | None = None) -> list[Step]:
    """The steps of a preparation of ``root``, in order (see the module docstring): a recording for each sample
    the root lacks, and every other step for every sample, even when its output exists (it then finishes at
    once), since looking costs as much as the step's first moment."""
    present = available(samples_dir)
    steps = [
        Step("record", s.name, EXPECTED_S["record_docs" if s.docs else "record"])
        for s in present
        if not _recorded(root, s.name)
    ]
    for i, s in enumerate(present):
        steps.append(Step("projections", s.name, EXPECTED_S["pca"] + EXPECTED_S["umap_first" if i == 0 else "umap"]))
    steps += [Step("gradients", s.name, EXPECTED_S["gradients"]) for s in present if not s.docs]
    steps += [Step("catalogue", s.name, EXPECTED_S["catalogue"]) for s in present]
    return steps


# --- the preparer (the subprocess) ------------------------------------------------------------------------------


def _locked(root: Path):
    """An open file of ``ROOT/.prepare.lock`` holding its exclusive lock, or None when another process holds it."""
    f = open(root / LOCK, "a+")  # noqa: SIM115 - held open for the process's life: that is the lock
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def running(root: Path) -> bool:
    """Whether a preparer holds ``root``'s lock now, or one this process started is still starting up."""
    if any(where == root and child.poll() is None for where, child in _children):
        return True
    if not root.is_dir():
        return False
    f = _locked(root)
    if f is None:
        return True
    f.close()  # closing drops the lock taken to look
    return False


def _do(step: Step, root: Path, samples_dir: Path, chars: int, methods: Sequence[str]) -> None:
    from ..store import open_run

    sample = next(s for s in samples.SAMPLES if s.name == step.sample)
    out = root / sample.name
    if step.kind != "record" and not _recorded(root, sample.name):
        return  # its recording failed, and that step says so: nothing to add to it
    if step.kind == "record":
        if not _recorded(root, sample.name):
            samples.record_sample(sample, out, chars=chars, progress=False, samples_dir=samples_dir, projections=())
    elif step.kind == "projections":
        from ..analysis.projection import MIN_TOKENS, precompute

        run = open_run(out)
        precompute(run, [m for m in methods if run.n_tokens >= MIN_TOKENS[m]])
    elif step.kind == "gradients":
        from ..analysis import gradient_cache
        from ..models.loading import load_model

        run, ckpt = open_run(out), samples_dir / sample.checkpoint
        K, n = gradient_cache.DEFAULT_K, gradient_cache.DEFAULT_TARGETS
        if run.n_tokens > K + 1 and gradient_cache.stored(run, ckpt, K, n) is None:
            gradient_cache.compute(run, load_model(ckpt).module, ckpt, K, n)
    elif step.kind == "catalogue":
        from ..analysis.units import catalogue

        catalogue(open_run(out))  # stored under the run's cache/cards/


def prepare(
    root: Path,
    samples_dir: Path | None = None,
    chars: int = 20_000,
    methods: Sequence[str] = METHODS,
    nice: bool = False,
) -> Status | None:
    """Work through :func:`plan` for ``root``, holding its lock; None when another preparer holds it. ``chars``:
    how much of each corpus is recorded; ``methods``: the projections precomputed; ``nice``: lower this
    process's priority after the first step (the one the app waits for), so the pages' own work goes first.

    A step that fails is recorded with its error and the others go on (a broken UMAP must not cost the
    gradient curves); the app shows the errors."""
    samples_dir = samples_dir or samples.SAMPLES_DIR
    root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 2.0  # the app peeks at the lock to see whether one runs: wait that peek out
    while (lock := _locked(root)) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)
    try:
        status = Status(plan(root, samples_dir), started=time.time(), pid=os.getpid())
        status.write(root)
        for step in status.steps:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                _do(step, root, samples_dir, chars, methods)
            except Exception as e:  # one line for the sidebar; the traceback is this process's log
                import traceback

                traceback.print_exc()
                step.error = " ".join(str(e).split())[:300] or type(e).__name__
            step.done, step.seconds = True, round(time.perf_counter() - t0, 2)
            step.cpu_s = round(time.process_time() - c0, 2)
            status.write(root)
            if nice and step is status.steps[0] and hasattr(os, "nice"):
                os.nice(5)
        status.finished = True
        status.write(root)
        return status
    finally:
        lock.close()


def _exit_with(parent: int) -> None:
    """Exit this process as soon as ``parent`` is gone (it becomes someone else's child then)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lstmviz.dashboard.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--samples-dir", type=Path, default=None)
    p.add_argument("--chars", type=int, default=20_000)
    p.add_argument("--projections", default=",".join(METHODS), help="methods to precompute, comma-separated")
    p.add_argument("--parent", type=int, default=None, help="exit when this process (the app) is gone")
    args = p.parse_args(argv)
    if args.parent is not None:
        _exit_with(args.parent)
    import torch

    # One thread: the app and its users' sessions share the cores, and torch's spinning worker threads on a
    # busy machine cost far more than they gain on these small batches.
    torch.set_num_threads(1)
    prepare(args.root, args.samples_dir, args.chars, [m for m in args.projections.split(",") if m], nice=True)
    return 0


# --- the app's side ----------------------------------------------------------------------------------------------

_SPAWN_LOCK = threading.Lock()  # sessions are threads of one process: one of them starts the preparer
_children: list[tuple[Path, subprocess.Popen]] = []  # the preparers this process started, by runs root


def ensure(
    root: Path, samples_dir: Path | None = None, chars: int = 20_000, methods: Sequence[str] = METHODS
) -> Status | None:
    """Start a preparer for ``root`` when it needs one and none is at work (with :func:`prepare`'s options);
    returns the root's status."""
    samples_dir = samples_dir or samples.SAMPLES_DIR
    with _SPAWN_LOCK:
        _children[:] = [(where, c) for where, c in _children if c.poll() is None]  # reap the finished ones
        if needed(root, samples_dir) and not running(root):
            root.mkdir(parents=True, exist_ok=True)
            package = str(Path(__file__).resolve().parents[2])  # the lstmviz this app runs, for the subprocess
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))}
            argv = [sys.executable, "-m", "lstmviz.dashboard.prepare", str(root), "--samples-dir", str(samples_dir)]
            argv += ["--chars", str(chars), "--projections", ",".join(methods), "--parent", str(os.getpid())]
            with open(root / LOG, "ab") as log:
                child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            _children.append((root, child))
    return Status.read(root)


def wait_for_first(root: Path, on_progress, timeout: float = 120.0) -> bool:
    """Block until ``root`` holds a run or no preparer is at work (or ``timeout``); ``on_progress(fraction,
    message)`` is called as it goes. True when a run is there."""
    t0 = time.monotonic()
    first = next(iter(available()), None)
    expected = EXPECTED_S["record"]
    while time.monotonic() - t0 < timeout:
        if _has_runs(root):
            return True
        if not running(root):
            return _has_runs(root)
        elapsed = time.monotonic() - t0
        name = first.name if first else "the first sample"
        on_progress(min(0.95, elapsed / expected / 1.5), f"Recording {name}… {elapsed:.0f} s")
        time.sleep(0.25)
    return _has_runs(root)


if __name__ == "__main__":
    sys.exit(main())

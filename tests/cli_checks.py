"""Assertions shared by the CLI's bad-input suites: exit status, one line on stderr, no traceback, and not one
file written or deleted."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lstmviz.cli import main


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: ("dir",) or ("file", sha1 of its bytes)."""
    tree: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir() and not p.is_symlink():
            tree[rel] = ("dir",)
        else:
            tree[rel] = ("file", hashlib.sha1(p.read_bytes()).hexdigest())
    return tree


def refused(argv: list, root: Path, capsys, *, rc: int = 2) -> str:
    """Run the CLI on ``argv``; assert exit ``rc``, exactly one stderr line, no traceback, and an unchanged tree
    under ``root``. Returns the stderr line."""
    capsys.readouterr()
    before = snapshot(root)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert code == rc, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("lstmviz") and "error:" in lines[0]
    assert snapshot(root) == before, "the command wrote or deleted files"
    return lines[0]

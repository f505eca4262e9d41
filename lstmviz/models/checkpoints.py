"""Reading a checkpoint file safely: :func:`read_checkpoint` loads it weights-only, and unpickles code only when
the user trusts the file; :func:`pickled_globals` reads which classes a pickle names from its opcodes, without
running it, so that a refusal can say what the file would have run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .calling import first_line


def read_checkpoint(path: Path, trust_pickle: bool) -> tuple[Any, bool]:
    """``(object, was_pickled_code)``: weights-only first; a full unpickle only when trusted."""
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty, not a checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4": irrelevant, we refuse it anyway
            return torch.load(path, map_location="cpu", weights_only=True), False
    except Exception as e:  # a weights-only load runs no code; any other failure means "not a checkpoint"
        refused = e
    # torch words "a pickle naming a class it does not allow" and "bytes that are no pickle at all" alike, so
    # read the pickle's opcodes (which runs nothing) to tell whether code would be run, and never suggest the
    # unsafe flag for a file that is not a pickle
    named = pickled_globals(path)
    if not named:
        why = first_line(refused)
        if why.startswith("Weights only load failed"):  # torch's words for both cases, told apart here
            why = (
                "it is a pickle of plain data"
                if named is not None
                else "it is neither a torch zip archive nor a pickle"
            )
        raise UserError(f"{path} is not a PyTorch checkpoint: {why}") from None
    if not trust_pickle:
        raise UserError(
            f"{path} is a pickled Python object (it names {named[0]}; e.g. torch.save(model)); loading it would "
            f"run arbitrary code from the file. Pass trust_pickle=True only if you "
            f"trust its source, or save a state_dict and use model= with weights=",
            arguments=("trust_pickle=True", "model=", "weights="),
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False), True
    except (AttributeError, ModuleNotFoundError) as e:
        raise UserError(
            f"{path} needs code that is not importable ({first_line(e)}): add its directory with code=",
            arguments=("code=",),
        ) from None


_SAFE_PREFIXES = ("torch.", "collections.", "builtins.", "__builtin__.", "_codecs.", "numpy.")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def pickled_globals(path: Path) -> list[str] | None:
    """The classes and functions (``module.qualname``) that the pickle in ``path`` names, read from its opcodes
    without unpickling, those outside torch, numpy and the builtins first. None when ``path`` is no pickle (nor
    a torch zip archive holding one). A legacy (non-zip) torch file is several pickles in a row; each counts
    only when it parses to its STOP, so random bytes that happen to start like a pickle name nothing."""
    import io
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = next((n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
                stream = io.BytesIO(z.read(pkl) if pkl else b"")
        else:
            stream = io.BytesIO(path.read_bytes())
    except (OSError, zipfile.BadZipFile):
        return None
    found: list[str] = []
    complete = 0
    for _ in range(5):  # legacy torch files: magic number, protocol, sys info, the object, storage keys
        if stream.tell() == len(stream.getbuffer()):
            break
        strings: list[str] = []
        memo: dict[int, str] = {}
        named: list[str] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in _STRING_OPS:
                    strings.append(str(arg))
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and strings:
                    memo[arg] = strings[-1]
                elif op.name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif op.name in ("GET", "BINGET", "LONG_BINGET") and arg in memo:
                    strings.append(memo[arg])
                elif op.name in ("GLOBAL", "INST"):
                    named.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    named.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:  # the first byte that is no opcode, or a truncated pickle: this one does not count
            break
        found += named
        complete += 1
    return sorted(found, key=lambda g: g.startswith(_SAFE_PREFIXES)) if complete else None

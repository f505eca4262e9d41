"""Load a model to record: a native checkpoint, a user's class plus a state_dict, or (trusted) a pickled module.

:func:`load_model` returns a :class:`LoadedModel`: the module, its tokenizer, how to call it, and a description
for the run manifest. Three sources are understood:

1. a native checkpoint from ``lstmviz train``: ``{"format": "lstmviz", "config", "model", "tokenizer", …}``;
2. ``model="package.module:factory"`` (importable, with ``code`` prepended to ``sys.path``) plus ``weights``, a
   state_dict file;
3. a whole pickled module (``torch.save(model)``), only with ``trust_pickle=True``, because unpickling runs
   whatever code the file names.

Files are always read with ``torch.load(weights_only=True)`` first, which cannot run code.

Calling conventions: ``model(ids)``, ``model(ids, hidden)`` (with ``init_hidden(batch)``, the PyTorch
word-language-model example) or ``model(ids, lengths)`` (a classifier that packs its batch), with ids
``[batch, time]`` or ``[time, batch]``. They are found by probing the model on a tiny input of a real symbol
(never the padding id) and watching what its first recorded module (an nn.LSTM/GRU/RNN, a step cell, or a cell
calling ``lstmviz.tap``) computes; when that cannot tell, the error names the option to pass
(``convention=`` / ``--convention``, ``layout=`` / ``--layout``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, UserError
from .charrnn import CharRNN, CharRNNConfig
from .tokenizers import PAD_NAMES, Tokenizer, is_special

CONVENTIONS = ("ids", "ids_hidden", "ids_lengths")
LAYOUTS = ("batch", "seq")
_PROBE_B, _PROBE_T = 2, 3  # distinct, so the time axis the recurrent module sees tells the layout


@dataclass
class CallConvention:
    """How to call a model on batch-first ids; usable as the recorder's ``call=``.

    ``convention``: ``"ids"`` calls ``model(x)``; ``"ids_lengths"`` calls ``model(x, lengths)`` (a classifier
    that packs its batch); ``"ids_hidden"`` calls ``model(x, hidden)`` where hidden is
    None when the model accepts it (the recorder then carries state across chunks) and else the state the model
    returned on the previous call, starting from ``model.init_hidden(batch)`` after :meth:`reset` (which the
    recorder calls at the start of every independent stream). ``layout``: ``"batch"`` passes ``x = ids [B, T]``,
    ``"seq"`` passes ``x = ids.T [T, B]``. The output (or the first element of an ``(output, hidden)`` tuple) is
    returned as ``[B, T, V]``, unflattening ``[T·B, V]`` or ``[B·T, V]`` outputs.
    """

    convention: str = "ids"
    layout: str = "batch"
    hidden_none: bool = True
    state: Any = field(default=None, repr=False)

    @property
    def takes_lengths(self) -> bool:
        """True for ``model(x, lengths)``: the recorder then passes each row's valid length."""
        return self.convention == "ids_lengths"

    def reset(self) -> None:
        """Forget the carried hidden state: the next call starts from ``init_hidden``."""
        self.state = None

    def __call__(self, model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> Any:
        """ids: int64 ``[B, T]`` (right-padded rows of ``lengths [B]`` valid steps, default all ``T``) → the
        model's output, as ``[B, T, V]`` when it is a per-step tensor. ``"ids_lengths"`` passes ``lengths`` as an
        int64 CPU tensor, as ``pack_padded_sequence`` wants it; the other conventions ignore it."""
        B, T = ids.shape
        x = ids if self.layout == "batch" else ids.t()  # (B, T) or (T, B)
        if self.convention == "ids":
            out = model(x)
        elif self.convention == "ids_lengths":
            lens = torch.full((B,), T, dtype=torch.long) if lengths is None else torch.as_tensor(lengths)
            out = model(x, lens.to("cpu", torch.long))
        elif self.hidden_none:
            out = model(x, None)
        else:
            out = model(x, self.state if self.state is not None else model.init_hidden(B))
            if isinstance(out, tuple | list) and len(out) > 1:
                self.state = _detached(out[1])
        if isinstance(out, tuple | list):
            out = out[0]
        if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
            return out
        if out.dim() == 2 and out.shape[0] == B * T:
            out = out.view(B, T, -1) if self.layout == "batch" else out.view(T, B, -1)  # unflatten
        if out.dim() == 3 and self.layout == "seq":
            out = out.transpose(0, 1)  # (T, B, V) -> (B, T, V)
        return out


def _detached(state: Any) -> Any:
    """A returned hidden state (tensor or nested tuple of tensors) cut from the graph, as repackage_hidden does."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(_detached(s) for s in state)


@dataclass
class LoadedModel:
    """A model ready to record: ``module`` (eval mode), ``tokenizer`` (or None), ``call`` (for the recorder),
    ``vocab_size`` (rows of its input embedding, or None), ``description`` (for the run manifest), ``pad_id``
    (the id that right-pads a batch of documents: the embedding's ``padding_idx`` or the tokenizer's pad
    symbol, else 0)."""

    module: nn.Module
    tokenizer: Tokenizer | None
    call: CallConvention
    vocab_size: int | None = None
    description: dict = field(default_factory=dict)
    pad_id: int = 0

    def check_ids(self, ids: np.ndarray | torch.Tensor) -> None:
        """Fail, before any work, on ids the model's embedding cannot look up."""
        ids = np.asarray(ids)
        if not ids.size:
            raise UserError("there are no tokens to record")
        if ids.min() < 0:
            raise UserError(f"token id {int(ids.min())} is negative")
        if self.vocab_size is not None and ids.max() >= self.vocab_size:
            raise UserError(
                f"token id {int(ids.max())} is beyond the model's embedding of {self.vocab_size} "
                f"rows: the tokenizer does not match this model"
            )


def load_model(
    checkpoint: str | os.PathLike | None = None,
    *,
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    code: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    tokenizer: Tokenizer | str | os.PathLike | None = None,
    convention: str | None = None,
    layout: str | None = None,
) -> LoadedModel:
    """Load a model to record (see the module docstring for the sources and conventions).

    ``tokenizer``: a :class:`Tokenizer` or a vocabulary file; it overrides the checkpoint's. ``convention``
    (``"ids"`` | ``"ids_hidden"`` | ``"ids_lengths"``) and ``layout`` (``"batch"`` | ``"seq"``) skip the probe.
    Raises :class:`~lstmviz.errors.UserError` with a one-line message for every bad input.
    """
    if convention is not None and convention not in CONVENTIONS:
        raise UserError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    if layout is not None and layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    code_dir = _import_path(code) if code is not None else None
    if model is not None:
        if checkpoint is not None and weights is not None:
            raise UserError("give the state_dict once: as --weights (with --model), not also as a checkpoint")
        weights = weights or checkpoint
        (module, state), tok = _from_factory(model, weights), None
        desc = {"source": "factory", "factory": model, "weights": _absolute(weights)}
    elif weights is not None:
        raise UserError("--weights needs --model package.module:factory to build the module it fills")
    elif checkpoint is None:
        raise UserError("nothing to load: give a checkpoint, or --model package.module:factory with --weights")
    else:
        module, desc, tok = _from_checkpoint(Path(checkpoint), trust_pickle)
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    elif tokenizer is not None:
        tok = Tokenizer.from_vocab_file(tokenizer)
    module.eval()
    vocab_size = _embedding_rows(module)
    if tok is not None and vocab_size is not None and len(tok) > vocab_size:
        raise UserError(
            f"the tokenizer has {len(tok)} symbols but the model's embedding has only {vocab_size} "
            f"rows: they do not belong together"
        )
    padding = _padding_ids(module, tok)
    call, recurrent = _probe(module, convention, layout, _probe_id(vocab_size, padding, tok))
    if model is not None:
        _load_state(module, state, weights)
    desc.update(
        {
            "class": f"{type(module).__module__}.{type(module).__qualname__}",
            "params": sum(p.numel() for p in module.parameters()),
            "recurrent_modules": recurrent,
            "convention": call.convention,
            "layout": call.layout,
            "vocab_size": vocab_size,
            "tokenizer": None if tok is None else {"kind": tok.kind, "size": len(tok), "unk": tok.unk},
            "rebuild": {
                "checkpoint": None if model is not None else _absolute(checkpoint),
                "model": model,
                "weights": None if model is None else _absolute(weights),
                "code": code_dir,
                "tokenizer": None if tokenizer is None or isinstance(tokenizer, Tokenizer) else _absolute(tokenizer),
                "convention": call.convention,
                "layout": call.layout,
                "pickled": desc["source"] == "pickle",
            },
        }
    )
    return LoadedModel(module, tok, call, vocab_size, desc, padding[0] if padding else 0)


def rebuild(source: dict, *, tokenizer: Tokenizer | None = None) -> LoadedModel:
    """The model a run was recorded with, from its manifest's ``model_source`` (its ``rebuild`` entry), without
    ever unpickling: a pickled module is refused, a native checkpoint or a factory plus weights is loaded again.

    ``source["rebuild"]`` holds :func:`load_model`'s arguments with absolute paths: ``checkpoint``, ``model``
    (``package.module:factory``), ``weights``, ``code`` (the directory put on the import path), ``tokenizer``
    (a vocabulary file), ``convention``, ``layout``, and ``pickled``. ``tokenizer`` here (e.g. the manifest's
    own ``tokenizer`` entry, read with :meth:`Tokenizer.from_json`) overrides the file. The caller decides which
    paths it lets a user reach; this function only refuses what cannot be rebuilt safely.
    """
    spec = source.get("rebuild") if isinstance(source, dict) else None
    if not isinstance(spec, dict):
        raise UserError("this run's manifest does not say how to rebuild its model (no model_source.rebuild)")
    if spec.get("pickled"):
        raise UserError(
            "this run's model is a pickled module: rebuilding it would unpickle, which runs code from the file; "
            "save a state_dict and record with a factory (--model with --weights) to use it here"
        )
    return load_model(
        spec.get("checkpoint"),
        model=spec.get("model"),
        weights=spec.get("weights"),
        code=spec.get("code"),
        tokenizer=tokenizer if tokenizer is not None else spec.get("tokenizer"),
        convention=spec.get("convention"),
        layout=spec.get("layout"),
    )


def _absolute(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _import_path(code: str | os.PathLike) -> str:
    """Put the directory ``code`` first on ``sys.path`` (for a factory or a pickle's classes); its absolute path."""
    code = Path(code).expanduser()
    if not code.is_dir():
        raise UserError(f"--code {code} is not a directory")
    resolved = str(code.resolve())
    if resolved not in sys.path:
        sys.path.insert(0, resolved)
    return resolved


# --- sources ------------------------------------------------------------------------------------------------


def _torch_load(path: Path, trust_pickle: bool) -> tuple[Any, bool]:
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
    named = _pickled_globals(path)
    if not named:
        why = _first_line(refused)
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
            f"run arbitrary code from the file. Pass --trust-pickle (trust_pickle=True) only if you "
            f"trust its source, or save a state_dict and use --model with --weights"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False), True
    except (AttributeError, ModuleNotFoundError) as e:
        raise UserError(
            f"{path} needs code that is not importable ({_first_line(e)}): add its directory with --code DIR"
        ) from None


_SAFE_PREFIXES = ("torch.", "collections.", "builtins.", "__builtin__.", "_codecs.", "numpy.")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _pickled_globals(path: Path) -> list[str] | None:
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


def _first_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _from_checkpoint(path: Path, trust_pickle: bool) -> tuple[nn.Module, dict, Tokenizer | None]:
    obj, pickled = _torch_load(path, trust_pickle)
    if isinstance(obj, nn.Module):
        return obj, {"source": "pickle", "checkpoint": _absolute(path)}, None
    if pickled:
        raise UserError(f"{path} holds a {type(obj).__name__}, not an nn.Module")
    if isinstance(obj, dict) and obj.get("format") == "lstmviz":
        return _native(path, obj)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(
            f"{path} holds a bare state_dict: pass --model package.module:factory to build the "
            f"module it fills (and --weights {path})"
        )
    raise UserError(
        f"{path} is not an lstmviz checkpoint (no format: 'lstmviz' entry); for your own model "
        f"pass --model package.module:factory --weights FILE"
    )


def _native(path: Path, ckpt: dict) -> tuple[nn.Module, dict, Tokenizer | None]:
    """Rebuild a :class:`CharRNN` from a native checkpoint."""
    for key in ("config", "model"):
        if key not in ckpt:
            raise UserError(f"{path} is a damaged lstmviz checkpoint: it has no {key!r} entry")
    try:
        config = CharRNNConfig(**ckpt["config"])
    except TypeError as e:
        raise UserError(f"{path} has an unreadable model config: {e}") from None
    module = CharRNN(config)
    _load_state(module, ckpt["model"], path)
    tok = Tokenizer.from_json(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    desc = {
        "source": "native",
        "checkpoint": _absolute(path),
        "config": config.to_json(),
        "metrics": ckpt.get("metrics", {}),
        "training": ckpt.get("training", {}),
    }
    return module, desc, tok


def _load_state(module: nn.Module, state: Any, path: Path | str) -> None:
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    elif isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state_dict")
    own, given = module.state_dict(), state
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    wrong = [
        f"{k} is {list(given[k].shape)} in the file, {list(v.shape)} in the model"
        for k, v in own.items()
        if k in given and isinstance(given[k], torch.Tensor) and given[k].shape != v.shape
    ]
    problems = (
        ([f"missing {', '.join(missing[:3])}"] if missing else [])
        + ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
        + ([f"size mismatch: {wrong[0]}"] if wrong else [])
    )
    if problems:
        raise UserError(f"the weights in {path} do not fit {type(module).__name__}: {'; '.join(problems)}")
    module.load_state_dict(state)


def _from_factory(spec: str, weights: str | os.PathLike | None) -> tuple[nn.Module, Any]:
    """Build ``package.module:factory`` (a class or a function of no arguments) and read ``weights`` (not yet
    loaded into it: the probe first tells whether the module has anything to record)."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise UserError(f"--model must look like package.module:factory, got {spec!r}")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"cannot import {mod_name!r} for --model ({e}); add its directory with --code DIR") from None
    except Exception as e:  # the user's module raised while it was imported
        raise ModelError.wrap(e) from e
    factory: Callable | None = getattr(mod, attr, None)
    if factory is None or not callable(factory):
        raise UserError(f"{mod_name} has no callable {attr!r} for --model")
    try:
        inspect.signature(factory).bind()
    except TypeError as e:  # told apart from a TypeError raised inside the factory, which is the model's
        raise UserError(f"--model {spec}: the factory must be callable without arguments ({e})") from None
    except ValueError:
        pass  # no signature to read (a builtin): call it and see
    try:
        module = factory()
    except Exception as e:
        raise ModelError.wrap(e) from e
    if not isinstance(module, nn.Module):
        raise UserError(f"--model {spec} returned a {type(module).__name__}, not an nn.Module")
    if weights is None:
        raise UserError(f"--model {spec} needs --weights FILE (a state_dict saved with torch.save)")
    state, _ = _torch_load(Path(weights), trust_pickle=False)
    return module, state


# --- conventions ----------------------------------------------------------------------------------------------


def _embedding_rows(module: nn.Module) -> int | None:
    emb = next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)
    return None if emb is None else emb.num_embeddings


def _padding_ids(module: nn.Module, tok: Tokenizer | None) -> list[int]:
    """The ids that stand for padding: every embedding's ``padding_idx``, then the tokenizer's pad symbol."""
    found = [m.padding_idx for m in module.modules() if isinstance(m, nn.Embedding) and m.padding_idx is not None]
    if tok is not None:
        found += [tok.index[s] for s in PAD_NAMES if s in tok.index]
    return list(dict.fromkeys(int(i) for i in found))


def _probe_id(vocab_size: int | None, padding: list[int], tok: Tokenizer | None) -> int:
    """An id to probe with that is a real symbol: not padding (a model that packs by ``ids != pad`` would see
    empty sequences) and, when the tokenizer says, no special symbol such as ``<unk>``."""
    n = vocab_size if vocab_size is not None else (len(tok) if tok is not None else 2 + len(padding))
    if tok is not None:
        plain = [i for i in range(min(n, len(tok))) if i not in padding and not is_special(tok.vocab[i])]
        if plain:
            return plain[0]
    return next((i for i in range(n) if i not in padding), 0)


def _second_argument(module: nn.Module) -> str | None:
    """The name of ``forward``'s second positional parameter when it is required (a hidden state or lengths)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        return positional[1].name
    return None


def _guessed_conventions(module: nn.Module) -> list[str]:
    """The conventions to probe, most likely first: a second argument named like ``lengths`` is tried as lengths
    first, any other as a hidden state first; both are tried, and the probe tells."""
    second = _second_argument(module)
    if second is None:
        return ["ids"]
    return ["ids_lengths", "ids_hidden"] if "len" in second.lower() else ["ids_hidden", "ids_lengths"]


def _check_signature(module: nn.Module, convention: str, given: bool) -> None:
    """A UserError when ``module.forward`` cannot take the arguments of ``convention`` at all (told apart from a
    TypeError raised inside forward, which is the model's)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return  # nothing to read: the probe will tell
    call = {"ids": "model(ids)", "ids_hidden": "model(ids, hidden)", "ids_lengths": "model(ids, lengths)"}[convention]
    try:
        signature.bind(*([None] if convention == "ids" else [None, None]))
    except TypeError as e:
        fix = (
            f"--convention {convention} does not fit it"
            if given
            else "lstmviz calls model(ids), (ids, hidden) or (ids, lengths)"
        )
        raise UserError(f"{type(module).__name__}.forward{signature} cannot be called as {call} ({e}): {fix}") from None


def _probe(
    module: nn.Module, convention: str | None, layout: str | None, probe_id: int
) -> tuple[CallConvention, list[str]]:
    """Find the call convention by calling the model on a ``[2, 3]`` (or ``[3, 2]``) probe of ``probe_id`` under a
    :class:`~lstmviz.recorder.Recorder`, and checking that the first thing it records (a sequence module, a step
    cell stepped 3 times, or a tapped cell) is ``[2, 3, units]``. Returns the convention and the paths recorded."""
    from ..recorder import Recorder

    user_convention = convention
    conventions = [convention] if convention is not None else _guessed_conventions(module)
    _check_signature(module, conventions[0], user_convention is not None)
    has_init = callable(getattr(module, "init_hidden", None))
    candidates = [
        CallConvention(conv, lay, none)
        for conv in conventions
        for lay in ([layout] if layout else LAYOUTS)
        for none in ([True, False] if conv == "ids_hidden" and has_init else [True])
    ]
    errors: list[Exception] = []
    recorded: list[str] = []
    ids = torch.full((_PROBE_B, _PROBE_T), probe_id, dtype=torch.long)
    with Recorder(module) as rec:
        for cand in candidates:
            cache = rec.new_cache()
            try:
                with torch.no_grad():
                    out = cand(module, ids)
                rec.flush()
            except Exception as e:  # any failure rules this candidate out
                errors.append(e)
                continue
            cand.reset()
            recorded = [m.path for m in rec.recorded()]
            first = next((cache[a.name] for a in rec.activations() if a.name in cache), None)
            if isinstance(first, list):  # calls that differ in batch size (a beam): the first call tells
                first = first[0]
            fits_output = (
                not isinstance(out, torch.Tensor) or out.dim() != 3 or tuple(out.shape[:2]) == (_PROBE_B, _PROBE_T)
            )
            if isinstance(first, torch.Tensor) and tuple(first.shape[:2]) == (_PROBE_B, _PROBE_T) and fits_output:
                return cand, recorded
            if layout is not None and first is not None:
                return cand, recorded  # the user said so, and the call runs
    if len(errors) == len(candidates):
        # forward's signature fits (checked above) and every layout and hidden state raised: no option can
        # help, so it is the model's own error; show the one most calls raised
        keys = [(type(e), str(e)) for e in errors]
        raised = errors[keys.index(max(keys, key=keys.count))]
        raise ModelError.wrap(raised) from raised
    if not recorded:
        raise UserError(
            f"{type(module).__name__} has no nn.LSTM, nn.GRU or nn.RNN module, no nn.LSTMCell, nn.GRUCell or "
            f"nn.RNNCell, and its forward called no lstmviz.tap: lstmviz records only those"
        )
    hint = " or ".join(
        opt
        for opt, given in (("--layout batch|seq", layout), ("--convention ids|ids_hidden|ids_lengths", user_convention))
        if not given
    )
    why = f" (tried: {'; '.join(_first_line(e) for e in errors[:2])})" if errors else ""
    raise UserError(
        f"cannot tell how to call {type(module).__name__} on token ids{': pass ' + hint if hint else ''}{why}"
    )

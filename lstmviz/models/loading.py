"""Load a model to record: a native checkpoint, a user's class plus a state_dict, or (trusted) a pickled module.

:func:`load_model` returns a :class:`LoadedModel`: the module, its tokenizer, how to call it, and a description
for the run manifest. Three sources are understood:

1. a native checkpoint from ``lstmviz train``: ``{"format": "lstmviz", "config", "model", "tokenizer", …}``;
2. ``model="package.module:factory"`` (importable, with ``code`` prepended to ``sys.path``) plus ``weights``, a
   state_dict file;
3. a whole pickled module (``torch.save(model)``), only with ``trust_pickle=True``, because unpickling runs
   whatever code the file names.

Files are always read with ``torch.load(weights_only=True)`` first, which cannot run code.

How to call the model (``model(ids)``, ``model(ids, hidden)`` or ``model(ids, lengths)``, ids ``[batch, time]``
or ``[time, batch]``) is found by :func:`lstmviz.models.calling.probe`, which also tells whether the model has
anything to record (an nn.LSTM/GRU/RNN, a step cell, or a cell calling ``lstmviz.tap``). :func:`rebuild` loads
the model a run was recorded with again, from its manifest's ``model_source``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, UserError
from .calling import CONVENTIONS, LAYOUTS, CallConvention, padding_ids, probe, probe_id
from .charrnn import CharRNN, CharRNNConfig
from .checkpoints import read_checkpoint
from .tokenizers import Tokenizer

__all__ = ["CallConvention", "LoadedModel", "load_model", "rebuild"]


@dataclass
class LoadedModel:
    """A model ready to record: ``module`` (eval mode), ``tokenizer`` (or None), ``call`` (for the recorder),
    ``vocab_size`` (rows of its input embedding, or None), ``description`` (how it was loaded: the run manifest's
    ``model_source``), ``pad_id`` (the id that right-pads a batch of documents: the embedding's ``padding_idx``
    or the tokenizer's pad symbol, else 0)."""

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
            raise UserError(
                "give the state_dict once: as weights= (with model=), not also as a checkpoint",
                arguments=("weights=", "model="),
            )
        weights = weights or checkpoint
        (module, state), tok = _from_factory(model, weights), None
        desc = {"source": "factory", "factory": model, "weights": _absolute(weights)}
    elif weights is not None:
        raise UserError(
            'weights= needs model="package.module:factory" to build the module it fills',
            arguments=("weights=", 'model="package.module:factory"'),
        )
    elif checkpoint is None:
        raise UserError(
            'nothing to load: give a checkpoint, or model="package.module:factory" with weights=',
            arguments=('model="package.module:factory"', "weights="),
        )
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
    padding = padding_ids(module, tok)
    call, _ = probe(module, convention, layout, probe_id(vocab_size, padding, tok))
    if model is not None:  # after the probe, which tells first whether the module has anything to record
        _load_state(module, state, weights)
    # the model's class, parameter count and recurrent modules are the recorder's manifest field "model"
    desc.update(
        {
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
            "save a state_dict and record with a factory (model= with weights=) to use it here",
            arguments=("model=", "weights="),
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
        raise UserError(f'code="{code}" is not a directory', arguments=(f'code="{code}"',))
    resolved = str(code.resolve())
    if resolved not in sys.path:
        sys.path.insert(0, resolved)
    return resolved


# --- sources ------------------------------------------------------------------------------------------------


def _from_checkpoint(path: Path, trust_pickle: bool) -> tuple[nn.Module, dict, Tokenizer | None]:
    obj, pickled = read_checkpoint(path, trust_pickle)
    if isinstance(obj, nn.Module):
        return obj, {"source": "pickle", "checkpoint": _absolute(path)}, None
    if pickled:
        raise UserError(f"{path} holds a {type(obj).__name__}, not an nn.Module")
    if isinstance(obj, dict) and obj.get("format") == "lstmviz":
        return _native(path, obj)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(
            f'{path} holds a bare state_dict: pass model="package.module:factory" to build the '
            f'module it fills (and weights="{path}")',
            arguments=('model="package.module:factory"', f'weights="{path}"'),
        )
    raise UserError(
        f"{path} is not an lstmviz checkpoint (no format: 'lstmviz' entry); for your own model "
        f'pass model="package.module:factory" and weights="FILE"',
        arguments=('model="package.module:factory"', 'weights="FILE"'),
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
        raise UserError(f"model= must look like package.module:factory, got {spec!r}", arguments=("model=",))
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(
            f"cannot import {mod_name!r} for model= ({e}); add its directory with code=", arguments=("model=", "code=")
        ) from None
    except Exception as e:  # the user's module raised while it was imported
        raise ModelError.wrap(e) from e
    factory: Callable | None = getattr(mod, attr, None)
    if factory is None or not callable(factory):
        raise UserError(f"{mod_name} has no callable {attr!r} for model=", arguments=("model=",))
    try:
        inspect.signature(factory).bind()
    except TypeError as e:  # told apart from a TypeError raised inside the factory, which is the model's
        raise UserError(
            f'model="{spec}": the factory must be callable without arguments ({e})', arguments=(f'model="{spec}"',)
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): call it and see
    try:
        module = factory()
    except Exception as e:
        raise ModelError.wrap(e) from e
    if not isinstance(module, nn.Module):
        raise UserError(
            f'model="{spec}" returned a {type(module).__name__}, not an nn.Module', arguments=(f'model="{spec}"',)
        )
    if weights is None:
        raise UserError(
            f'model="{spec}" needs weights="FILE" (a state_dict saved with torch.save)',
            arguments=(f'model="{spec}"', 'weights="FILE"'),
        )
    state, _ = read_checkpoint(Path(weights), trust_pickle=False)
    return module, state


def _embedding_rows(module: nn.Module) -> int | None:
    emb = next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)
    return None if emb is None else emb.num_embeddings

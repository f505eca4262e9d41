"""Independent documents: read a ``--docs`` file, record each document alone, keep its fields and the model's
verdict on it.

A documents file is JSONL (one ``{"text": …, "label": …, "id": …}`` object per line) or plain text with one
document per line (:func:`read_docs`), or Python records (:func:`from_records`); the line end is never part
of a document, and blank lines are no documents. Each document is recorded from a zero state, on its own
(``record_corpus(mode="sequences")``: right-padding is invisible to the sequence modules), so its states equal
the model's on that document alone.

What the run gets, besides the activations (docs/FORMAT.md, "Documents"):

* ``doc_<field>`` token columns: every JSONL field but ``text``, given to each token of its document, plus
  ``doc_line`` (the 1-based line of the file). Being token columns, the dashboard shows and colors by them like
  any annotation track; :func:`doc_table` reads them back as one row per document.
* when the model returns one vector per document (``[B, C]``, a classifier): ``pred`` (the argmax class),
  ``pred_p`` (its probability) and ``p0`` … ``p{C-1}`` (every class's, for up to :data:`MAX_CLASSES` classes);
  for one output per document (``[B]`` or ``[B, 1]``, a logit) ``score``, ``p1`` = sigmoid(score) and ``pred``
  = score > 0. ``correct`` (``pred == doc_label``) when the documents have integer labels. Outputs that are
  probabilities already (rows ≥ 0 summing to 1) or log-probabilities are read as such, others as logits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import UserError

if TYPE_CHECKING:
    from .models.loading import LoadedModel
    from .store import Run

MAX_CLASSES = 32
"""Classes whose probabilities each get a ``p{k}`` column; more classes keep only ``pred`` and ``pred_p``."""
_OUTPUT_COLUMNS = ("pred", "pred_p", "score", "correct")


@dataclass
class Documents:
    """``texts[d]`` is document d's text; ``fields`` has one row per document: ``line`` (1-based, in the
    file) and every other field of its JSONL object."""

    texts: list[str]
    fields: pd.DataFrame
    source: str = "lines"  # "jsonl" | "lines"

    def __len__(self) -> int:
        return len(self.texts)


def read_docs(path: str | os.PathLike) -> Documents:
    """Read a documents file: JSONL when its first non-blank line is a JSON object, else one document per line.

    Raises :class:`UserError` for a missing or empty file, bad UTF-8, a JSONL line that is no object or lacks a
    string ``text``, or a field named like a column the run already has.
    """
    from .models.tokenizers import read_text, text_lines

    p = Path(path)
    lines = text_lines(read_text(p))
    first = next((s for s in lines if s.strip()), "")
    if first.lstrip().startswith("{"):
        return _jsonl(p, lines)
    return lines_documents("\n".join(lines))


def lines_documents(text: str) -> Documents:
    """One document per non-blank line of ``text``, without its line end."""
    from .models.tokenizers import text_lines

    kept = [(n, line) for n, line in enumerate(text_lines(text), 1) if line.strip()]
    if not kept:
        raise UserError("there are no documents: every line is blank")
    return Documents([line for _, line in kept], pd.DataFrame({"line": [n for n, _ in kept]}), "lines")


def _jsonl(path: Path, lines: list[str]) -> Documents:
    records: list[tuple[int, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {n} is not JSON ({e.msg}): a JSONL file has one object per line") from None
    if not records:
        raise UserError(f"{path} holds no documents")
    return _from_records(records, f"{path} line ", "JSON ")


def from_records(records: Sequence[str | Mapping[str, Any]]) -> Documents:
    """Documents from Python: each record a text, or a mapping with a string ``"text"`` and other fields
    (``{"text": "great film", "label": 1}``), as one JSONL line would be. ``line`` is the record's 1-based
    position."""
    if isinstance(records, str) or not len(records):
        raise UserError("from_records() takes a list of texts or of {'text': …} mappings, and at least one")
    as_dicts = [(n, {"text": r} if isinstance(r, str) else dict(r)) for n, r in enumerate(records, 1)]
    return _from_records(as_dicts, "record ", "")


def _from_records(records: list[tuple[int, Any]], where: str, what: str) -> Documents:
    """``(line, object)`` pairs → Documents; ``where`` + line names a bad one in an error."""
    texts: list[str] = []
    rows: list[dict] = []
    for n, obj in records:
        if not isinstance(obj, dict):
            raise UserError(f"{where}{n} is a {what}{type(obj).__name__}, not an object with a 'text' field")
        obj = dict(obj)
        text = obj.pop("text", None)
        if not isinstance(text, str):
            raise UserError(f"{where}{n} has no string 'text' field (its fields: {', '.join(obj) or 'none'})")
        if not text.strip():
            raise UserError(f"{where}{n}: the document's text is empty")
        if "line" in obj:
            raise UserError(f"{where}{n}: the field 'line' is lstmviz's own (the document's line number): rename it")
        texts.append(text)
        rows.append({"line": n, **obj})
    return Documents(texts, pd.DataFrame([{k: _scalar(v) for k, v in r.items()} for r in rows]), "jsonl")


def _scalar(value: Any) -> Any:
    """A JSON value as a table cell: lists and objects as their JSON text."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def _column(values: pd.Series) -> pd.Series:
    """One field over the documents as a column parquet can hold: mixed types become strings, nulls kept."""
    present = values.dropna()
    kinds = {type(v) for v in present}
    if kinds <= {bool}:
        return values.astype("boolean")
    if kinds <= {int}:
        return values.astype("Int64")
    if kinds <= {int, float}:
        return values.astype("float64")
    return values.map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v)).astype("string")


def encode(loaded: LoadedModel, docs: Documents) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Every document's ids, joined: (ids ``[N]``, document id per token ``[N]``, display strings ``[N]``, the
    documents kept ``[D']``: those with at least one token). A document that encodes to no token is left out."""
    tok = loaded.tokenizer
    if tok is None:
        raise UserError("this model has no tokenizer: give one (a vocabulary file: a JSON list, or one token a line)")
    pieces = [tok.encode(t) for t in docs.texts]
    kept = np.array([i for i, p in enumerate(pieces) if len(p)], np.int64)
    if not len(kept):
        raise UserError("no document has a token the tokenizer reads")
    ids = np.concatenate([pieces[i] for i in kept])
    loaded.check_ids(ids)
    doc_of = np.repeat(np.arange(len(kept)), [len(pieces[i]) for i in kept])
    return ids, doc_of, tok.display(ids), kept


def record_docs(
    loaded: LoadedModel,
    docs: Documents,
    out: str | os.PathLike,
    *,
    manifest: Mapping | None = None,
    **options,
) -> Path:
    """Record each of ``docs`` independently into the run ``out``, with its fields and the model's output on it
    (see the module docstring). ``options`` go to :func:`lstmviz.record_corpus` (streams, device, names,
    strategy, overwrite, progress). Returns the run directory."""
    from .corpus import record_corpus

    ids, doc_of, display, kept = encode(loaded, docs)
    fields = docs.fields.iloc[kept].reset_index(drop=True)
    extra = pd.DataFrame(
        {f"doc_{name}": _column(fields[name]).iloc[doc_of].reset_index(drop=True) for name in fields.columns}
    )
    labels = _integer_labels(fields)
    doc_start = np.r_[0, np.flatnonzero(np.diff(doc_of)) + 1]  # (D',) first token of each document

    def outputs(out: Any, starts: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        which = np.searchsorted(doc_start, starts)  # (B,) the documents of this batch
        return output_columns(out, len(starts), None if labels is None else labels[which])

    meta = {
        "model_source": loaded.description,
        "tokenizer": loaded.tokenizer.to_json(),
        **(manifest or {}),
    }
    meta.setdefault("corpus", {})
    meta["corpus"] = {**meta["corpus"], "documents": len(kept), "format": docs.source, "fields": list(fields.columns)}
    options.pop("mode", None)
    options.pop("docs", None)
    return record_corpus(
        loaded.module,
        ids,
        out,
        display=display,
        docs=doc_of,
        mode="sequences",
        call=loaded.call,
        tokens_extra=extra,
        manifest=meta,
        pad_id=loaded.pad_id,
        row_columns=outputs,
        **options,
    )


def _integer_labels(fields: pd.DataFrame) -> np.ndarray | None:
    """The documents' ``label`` field as int64 ``[D]`` when every document has an integer one, else None."""
    if "label" not in fields or not all(isinstance(v, int) and not isinstance(v, bool) for v in fields["label"]):
        return None
    return fields["label"].to_numpy(np.int64)


def output_columns(output: Any, rows: int, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Token columns of a model's per-document output, one value per batch row (see the module docstring).

    ``output``: the model's return value (or the first element of a tuple); used when it is a float tensor
    ``[rows, C]`` (or ``[rows, 1, C]``), ``[rows, 1]`` or ``[rows]``, else no columns. ``labels`` ``[rows]``:
    true classes, for ``correct``.
    """
    import torch

    if isinstance(output, tuple | list) and output:
        output = output[0]
    if not (isinstance(output, torch.Tensor) and output.is_floating_point()):
        return {}
    if output.dim() == 3 and output.shape[1] == 1:
        output = output[:, 0]  # a batch of one-token documents: [B, C] reads as a flattened [B·1, C]
    if output.dim() not in (1, 2):
        return {}
    if output.shape[0] != rows:
        return {}
    x = output.detach().float().cpu()
    if x.dim() == 1 or x.shape[1] == 1:
        score = x.reshape(rows)
        cols = {
            "score": score.numpy(),
            "p1": torch.sigmoid(score).numpy(),
            "pred": (score > 0).numpy().astype(np.int64),
        }
    else:
        p = _probabilities(x)
        top = p.max(dim=1)
        cols = {"pred": top.indices.numpy().astype(np.int64), "pred_p": top.values.numpy()}
        if x.shape[1] <= MAX_CLASSES:
            cols.update({f"p{k}": p[:, k].numpy() for k in range(x.shape[1])})
    if labels is not None:
        cols["correct"] = cols["pred"] == labels
    return cols


def _probabilities(x: Any) -> Any:
    """Rows of ``x [B, C]`` as probabilities: kept when they are already, exp'd when log-probabilities, else
    softmax'd logits."""
    import torch

    ones = torch.ones(x.shape[0])
    if (x >= 0).all() and torch.allclose(x.sum(1), ones, atol=1e-4):
        return x
    if (x <= 0).all() and torch.allclose(x.exp().sum(1), ones, atol=1e-4):
        return x.exp()
    return torch.softmax(x, dim=1)


def doc_table(run: Run) -> pd.DataFrame:
    """One row per document of a run: ``doc``, ``tokens``, ``text`` (its tokens joined), and its ``doc_*`` and
    output columns (``pred``, ``p0`` …), read from tokens.parquet."""
    tokens = run.tokens
    per_doc = [c for c in tokens.columns if c.startswith("doc_") or c in _OUTPUT_COLUMNS or _is_class_column(c)]
    grouped = tokens.groupby("doc", sort=True)
    table = grouped[per_doc].first() if per_doc else pd.DataFrame(index=grouped.size().index)
    joiner = "" if (run.manifest.get("tokenizer") or {}).get("kind") == "char" else " "
    table.insert(0, "text", grouped["token"].agg(joiner.join))
    table.insert(0, "tokens", grouped.size())
    return table.reset_index()


def _is_class_column(name: str) -> bool:
    return len(name) > 1 and name[0] == "p" and name[1:].isdigit()


def drop_line_ends(
    text: str, ids: np.ndarray, display: Sequence[str], extra: pd.DataFrame | None
) -> tuple[np.ndarray, list[str], pd.DataFrame | None, np.ndarray]:
    """For ``--mode sequences`` over a char text: each line one document, its line end (``\\n``, ``\\r\\n``) not
    part of it. ``ids``/``display``/``extra`` are one row per character of ``text``; returns them without the
    line-end rows, and the document (line) id of each kept row."""
    chars = np.frombuffer(text.encode("utf-32-le"), np.uint32)[: len(ids)]
    newline = chars == ord("\n")
    line_end = newline | ((chars == ord("\r")) & np.r_[newline[1:], False])
    line = np.concatenate([[0], np.cumsum(newline[:-1])])  # (N,) the line of each character
    rows = np.flatnonzero(~line_end)
    if not len(rows):
        raise UserError("the text has only line ends: there is no document to record")
    docs = np.unique(line[rows], return_inverse=True)[1]  # blank lines hold no document: numbered 0, 1, … anyway
    kept_extra = None if extra is None else extra.iloc[rows].reset_index(drop=True)
    return ids[rows], [display[i] for i in rows], kept_extra, docs

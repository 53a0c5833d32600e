"""A callable-class scorer for Ray Data's ``map_batches`` (docs/scale-out.md).

::

    import ray
    from rerank_integrations.ray_data import RerankScorer

    ds = ray.data.read_parquet("candidates/")  # one row per query: query, documents, ...
    ds = ds.map_batches(
        RerankScorer,
        fn_constructor_kwargs={"config": reranker.to_config()},
        batch_size=16,
        compute=ray.data.ActorPoolStrategy(size=4),
        num_gpus=1,  # one actor per GPU; on CPU: num_cpus=...
    )

Each actor builds ONE reranker from the config and reranks its batches' rows: one row is one
query and its candidates. Columns read (a batch is a dict of equal-length columns, Ray Data's
default ``"numpy"`` format or plain lists):

- ``query`` (str) and ``documents`` (a list of str): required;
- ``instruction`` (str or null) and ``metadata`` (a list of str, one per document, or null):
  optional, as :meth:`Reranker.rerank <rerank_integrations.base.Reranker.rerank>` takes them;
- ``query_id`` (str): optional, names the query in warnings (default: its position).

Every input column is returned unchanged (none is dropped or reordered) plus ``scores``: per
row, the model's raw score of each document in the row's document order, by the rule of
``run`` files (:func:`~rerank_integrations.ir.bulk.result_scores`). The rows of a batch are
reranked like ``rerank-integrations run`` reranks queries: up to ``concurrency`` at once, each
in its own isolated engine scope (deterministic: a row's scores do not depend on the other
rows of its batch, so on the batch size or on which actor ran it).

No Ray import here: the class is a plain callable, usable with any engine that calls one per
worker. The config is data unless ``trusted=True`` (:meth:`Reranker.from_config
<rerank_integrations.base.Reranker.from_config>`): pass ``trusted=True`` for a config your own
code built with ``to_config()``. The key variable (``api_key_env``) is read on the worker:
set it on every node (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.ir.bulk import arerank_jobs
from rerank_integrations.ir.jobs import QueryJob
from rerank_integrations.validation import bool_value, int_value, optional_str_sequence

logger = logging.getLogger(__name__)

__all__ = ["SCORES_COLUMN", "RerankScorer", "job_row", "row_jobs"]

SCORES_COLUMN = "scores"
"""The column :class:`RerankScorer` adds: one list of scores per row."""

_REQUIRED = ("query", "documents")


def job_row(job: QueryJob) -> dict[str, Any]:
    """The row of one :class:`~rerank_integrations.ir.jobs.QueryJob` (``run``'s Ray engine)."""
    return {
        "query_id": job.query_id,
        "query": job.query,
        "documents": list(job.documents),
        "instruction": job.instruction,
        "metadata": None if job.metadata is None else list(job.metadata),
    }


def _column(batch: Mapping[str, Any], name: str, rows: int) -> list[Any]:
    values = list(batch[name])
    if len(values) != rows:
        raise RerankInputError(f"batch[{name!r}]", f"has {len(values)} rows, 'query' has {rows}")
    return values


def _null(value: Any) -> bool:
    """Missing: ``None``, or the NaN that a column of nulls becomes in a numpy batch."""
    return value is None or (isinstance(value, numbers.Real) and math.isnan(value))


def _texts(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise RerankTypeError(field, f"must be a list of str, got {type(value).__name__}")
    return tuple(value)


def row_jobs(batch: Mapping[str, Any]) -> list[QueryJob]:
    """One job per row of ``batch`` (see the module docstring for the columns); a job's
    ``doc_ids`` are the documents' positions. Raises a typed error naming the column and row."""
    if not isinstance(batch, Mapping):
        raise RerankTypeError(
            "batch", f"must be a dict of columns (batch_format='numpy'), got {type(batch).__name__}"
        )
    for name in _REQUIRED:
        if name not in batch:
            raise RerankInputError("batch", f"has no {name!r} column (columns: {sorted(batch)})")
    rows = len(batch["query"])
    absent = [None] * rows  # an optional column that is not there: null in every row
    queries, all_documents, instructions, all_metadata, query_ids = (
        _column(batch, name, rows) if name in batch else absent
        for name in ("query", "documents", "instruction", "metadata", "query_id")
    )
    jobs = []
    for i, (query, docs, instruction, metadata, query_id) in enumerate(
        zip(queries, all_documents, instructions, all_metadata, query_ids, strict=True)
    ):
        documents = _texts(docs, f"batch['documents'][{i}]")
        jobs.append(
            QueryJob(
                query_id=str(i) if _null(query_id) else str(query_id),
                query=query,
                doc_ids=tuple(str(j) for j in range(len(documents))),
                documents=documents,
                metadata=None if _null(metadata) else _texts(metadata, f"batch['metadata'][{i}]"),
                instruction=None if _null(instruction) else instruction,
            )
        )
    return jobs


class RerankScorer:
    """Ray Data callable class: ONE reranker per actor, built from ``config``; each call
    reranks a batch of rows and returns them with a ``scores`` column (module docstring).

    ``concurrency``: rows of a batch in flight at once on the actor's reranker (as
    ``run --concurrency``). ``trusted``: see :meth:`Reranker.from_config`. ``columns``: the
    input columns to return with ``scores`` (default: all of them); fewer columns is less to
    move, and no separate projection step that needs its own CPU.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        trusted: bool = False,
        concurrency: int = 16,
        columns: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(config, Mapping):
            raise RerankTypeError("config", f"must be a dict, got {type(config).__name__}")
        self._concurrency = int_value("concurrency", concurrency, minimum=1)
        self._columns = optional_str_sequence("columns", columns)
        self._reranker = Reranker.from_config(dict(config), trusted=bool_value("trusted", trusted))

    @property
    def reranker(self) -> Reranker:
        """The actor's reranker."""
        return self._reranker

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        jobs = row_jobs(batch)
        missing = [name for name in self._columns or () if name not in batch]
        if missing:
            raise RerankInputError("columns", f"{missing} are not columns of the batch")
        scores: list[list[float] | None] = [None] * len(jobs)
        position = {id(job): i for i, job in enumerate(jobs)}

        def on_result(job: QueryJob, by_doc: dict[str, float]) -> None:
            scores[position[id(job)]] = [by_doc[doc_id] for doc_id in job.doc_ids]

        asyncio.run(
            arerank_jobs(self._reranker, jobs, concurrency=self._concurrency, on_result=on_result)
        )
        kept = batch if self._columns is None else {name: batch[name] for name in self._columns}
        return {**kept, SCORES_COLUMN: _ragged(scores)}

    def close(self) -> None:
        """Release the reranker (idempotent)."""
        self._reranker.close()


def _ragged(rows: Sequence[list[float] | None]) -> Any:
    """Lists of different lengths as one column: a numpy object array of float64 arrays (what
    Ray Data stores as a list column), or plain lists without numpy."""
    try:
        import numpy as np
    except ImportError:  # not under Ray (which brings numpy): plain lists
        return [list(r or ()) for r in rows]
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = np.asarray(row or (), dtype=np.float64)
    return out

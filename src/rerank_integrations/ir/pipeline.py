"""The steps behind ``run`` and ``eval``: load the data, pick the queries, get the first-stage
candidates, build the jobs, rerank one model into a run file.

Thin I/O around the pure pieces (:mod:`.formats`, :mod:`.first_stage`, :mod:`.jobs`,
:mod:`.bulk`); everything it cannot use is logged as a warning with counts.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError
from rerank_integrations.ir.bulk import BulkSummary, plan_output, rerank_to_file, score_to_file
from rerank_integrations.ir.first_stage import BM25Settings, bm25_run, top_k
from rerank_integrations.ir.formats import (
    Document,
    Qrels,
    Query,
    Run,
    beir_paths,
    parse_json,
    read_corpus,
    read_qrels,
    read_queries,
)
from rerank_integrations.ir.jobs import QueryJob, build_jobs
from rerank_integrations.ir.progress import ProgressBar
from rerank_integrations.validation import optional_int

if TYPE_CHECKING:
    from rerank_integrations.ir.ray_engine import RayOptions

logger = logging.getLogger(__name__)

__all__ = [
    "Dataset",
    "candidates_for",
    "first_stage_meta",
    "load_config",
    "load_dataset",
    "make_jobs",
    "public_settings",
    "rerank_model",
    "select_queries",
    "tag_for",
]


@dataclass(slots=True)
class Dataset:
    """The texts (and, when given, the judgements) a run or an evaluation works on."""

    queries: dict[str, Query]
    corpus: dict[str, Document]
    qrels: Qrels | None


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def load_dataset(
    *,
    data: str | None = None,
    split: str = "test",
    corpus: str | None = None,
    queries: str | None = None,
    qrels: str | None = None,
    keep_docs: set[str] | None = None,
) -> Dataset:
    """Read a BEIR folder (``data``) with per-file overrides; ``keep_docs`` limits the corpus
    held in memory to those ids (enough when the candidates come from a run file)."""
    corpus_path, queries_path, qrels_path = _path(corpus), _path(queries), _path(qrels)
    if data is not None:
        paths = beir_paths(data, split)
        corpus_path = corpus_path or paths.corpus
        queries_path = queries_path or paths.queries
        if qrels_path is None and paths.qrels.is_file():
            qrels_path = paths.qrels
    if corpus_path is None or queries_path is None:
        raise RerankInputError(
            "data", "the texts are needed: give a BEIR folder (--data) or --corpus and --queries"
        )
    return Dataset(
        queries=read_queries(queries_path),
        corpus=read_corpus(corpus_path, keep=keep_docs),
        qrels=read_qrels(qrels_path) if qrels_path is not None else None,
    )


def select_queries(
    dataset: Dataset, *, candidates: Run | None = None, max_queries: int | None = None
) -> list[str]:
    """The queries to rerank: the candidate run's (in its order), else the judged ones (in
    the queries file's order), else all; the first ``max_queries`` of them when given."""
    optional_int("max_queries", max_queries, minimum=1)
    if candidates is not None:
        chosen = [q for q in candidates if q in dataset.queries]
        unknown = [q for q in candidates if q not in dataset.queries]
        if unknown:
            logger.warning(
                "%d candidate query ids are not in the queries file and are skipped (e.g. %s)",
                len(unknown),
                ", ".join(repr(q) for q in unknown[:5]),
            )
        if not chosen:
            raise RerankInputError("candidates", "no candidate query id is in the queries file")
    elif dataset.qrels is not None:
        unknown = [q for q in dataset.qrels if q not in dataset.queries]
        if unknown:
            logger.warning(
                "%d qrels query ids are not in the queries file (e.g. %s)",
                len(unknown),
                ", ".join(repr(q) for q in unknown[:5]),
            )
        chosen = [q for q in dataset.queries if q in dataset.qrels]
        if not chosen:
            raise RerankInputError("qrels", "no qrels query id is in the queries file")
    else:
        chosen = list(dataset.queries)
    return chosen[:max_queries] if max_queries is not None else chosen


def candidates_for(
    dataset: Dataset,
    query_ids: Sequence[str],
    *,
    candidates: Run | None,
    k: int,
    bm25: BM25Settings | None = None,
) -> Run:
    """The first stage: the top ``k`` of the given run, or BM25 (``bm25``, default
    :class:`~.first_stage.BM25Settings`) over the corpus."""
    if candidates is not None:
        wanted = set(query_ids)
        return top_k({q: s for q, s in candidates.items() if q in wanted}, k)
    return bm25_run(dataset.corpus, [dataset.queries[q] for q in query_ids], k, bm25)


def first_stage_meta(
    *, k: int, candidates: str | None = None, bm25: BM25Settings | None = None
) -> dict[str, Any]:
    """What a run's meta.json records of its first stage: the given run's path and depth, or
    the BM25 settings (analyzer, k1, b) and depth."""
    if candidates is not None:
        return {"method": "run", "path": candidates, "k": k}
    return {**(bm25 or BM25Settings()).to_json(), "k": k}


def make_jobs(
    dataset: Dataset,
    query_ids: Sequence[str],
    first_stage: Run,
    *,
    instruction: str | None = None,
    instruction_field: str | None = None,
    metadata_fields: Sequence[str] = (),
) -> list[QueryJob]:
    """:func:`~.jobs.build_jobs`, logging its report as warnings."""
    jobs, report = build_jobs(
        dataset.queries,
        dataset.corpus,
        first_stage,
        query_ids=query_ids,
        instruction=instruction,
        instruction_field=instruction_field,
        metadata_fields=metadata_fields,
    )
    for line in report.warnings():
        logger.warning("%s", line)
    if not jobs:
        raise RerankInputError("candidates", "no query has candidates to rerank")
    return jobs


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A reranker config (``to_config()`` output) from a JSON file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RerankInputError(str(p), f"cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RerankInputError(str(p), f"not UTF-8 text (byte {exc.start})") from None
    config = parse_json(text, str(p), whole_file=True)  # hostile nesting/digits: exit 2 too
    if not isinstance(config, dict) or not isinstance(config.get("backend"), str):
        raise RerankInputError(str(p), "must be a JSON object with a 'backend' key")
    return config


_SECRET_NAMES = ("api_key", "token", "secret", "password", "authorization")


def public_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without secrets (``api_key``, ``*_secret``, ...), for files and reports;
    ``api_key_env`` (the NAME of a variable) stays."""
    return {
        k: v
        for k, v in config.items()
        if not any(k.lower() == n or k.lower().endswith("_" + n) for n in _SECRET_NAMES)
    }


def tag_for(name: str) -> str:
    """A TREC tag from a model name: its last path part, whitespace replaced."""
    last = name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "reranker"
    return re.sub(r"\s+", "_", last)


def rerank_model(
    config: Mapping[str, Any],
    jobs: Sequence[QueryJob],
    output: str | os.PathLike[str],
    *,
    tag: str,
    concurrency: int,
    resume: bool,
    progress: Callable[[int, int], ProgressBar] | None,
    trusted: bool = False,
    first_stage: Mapping[str, Any] | None = None,
    ray: RayOptions | None = None,
) -> BulkSummary:
    """Rerank ``jobs`` into ``output`` with the reranker ``config`` describes (built as data
    unless ``trusted``: see :func:`rerank_integrations.trust.check_untrusted_settings`).
    ``first_stage`` (:func:`first_stage_meta`) is recorded in the output's meta.json as
    ``"first_stage"``; the candidates themselves are in its ``inputs`` digest already.

    In this process by default; with ``ray``, on Ray Data actors that each build the reranker
    from ``config`` (:mod:`.ray_engine`; the file, sidecar and summary are the same bytes).
    The output is checked for resuming BEFORE the reranker is built (a mismatch fails
    without loading a model), and nothing is built when every query is already done.
    """
    plan = plan_output(output, jobs, tag=tag, settings=public_settings(config), resume=resume)
    if first_stage is not None:
        plan.meta["first_stage"] = json.loads(json.dumps(dict(first_stage)))
    if not plan.todo:
        return score_to_file(None, jobs, plan, progress=progress)
    if ray is not None:
        from rerank_integrations.ir.ray_engine import on_ray

        engine = on_ray(config, ray, concurrency=concurrency, trusted=trusted)
        return score_to_file(engine, jobs, plan, progress=progress)
    with Reranker.from_config(dict(config), trusted=trusted) as reranker:
        return rerank_to_file(
            reranker, jobs, plan, tag=tag, concurrency=concurrency, progress=progress
        )

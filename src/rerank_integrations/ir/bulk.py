"""Rerank many queries concurrently into a TREC run file that an interrupted run resumes.

**Concurrency.** :func:`arerank_jobs` keeps up to ``concurrency`` queries in flight as
``arerank`` calls on ONE reranker (one query's tokenization overlaps another's model work);
the remote backend sends each query's sub-requests under its own ``max_concurrency`` limit.

**Determinism.** Each query's call runs in an isolated
:func:`~rerank_integrations.backends.local.engine.call_scope` labelled with its query id: the
local engine batches a query's documents only among themselves (never with another query's),
so its scores are a function of its own inputs and the same command writes the byte-identical
file at any concurrency, machine load or resume (docs/evaluation.md "Determinism"). The cost:
a query's last batch may be ragged (docs/benchmarks.md); ``deterministic=False`` lets the
engine merge the pending queries into shared batches instead. Warnings of the call
(truncation) name the query id.

**Resume.** Next to the run, ``<output>.meta.json`` records the tag, the reranker settings
and a digest of every job's inputs (:func:`jobs_digest`); a run resumes only when all three
match, so a changed model, instruction or candidate list never mixes into an old file.
:func:`rerank_to_file` appends each finished query to the output as one block
(one write, flushed). On start it reads what an earlier run left there and keeps every
COMPLETE block (its documents are exactly the job's candidates, ranks 1..n, same tag); a
partial block (a run killed mid-write) is dropped and redone. When all queries are done the
file is rewritten in query order, each block in :func:`~.formats.ranked` order, so the final
file of an interrupted-then-resumed run is byte-identical to an uninterrupted one.

**Crash safety.** Every rewrite (dropping a partial block at the start, the final sorted
file) and the sidecar are written to a new temporary file and renamed into place
(:mod:`.outputs`): the output is always the previous file, the resumable in-progress file
(complete blocks, maybe a cut last one) or the complete run, never a half-written rewrite.
The output is rewritten BEFORE its sidecar, so a crash between the two never leaves old
blocks under a new sidecar (with ``resume=False`` the old blocks are gone first).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError
from rerank_integrations.ir.formats import RunLine, format_run_block, parse_run_line, write_run
from rerank_integrations.ir.jobs import QueryJob
from rerank_integrations.ir.outputs import write_text
from rerank_integrations.ir.progress import ProgressBar
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import int_value

logger = logging.getLogger(__name__)

__all__ = [
    "BulkSummary",
    "ResumePlan",
    "OutputPlan",
    "arerank_jobs",
    "jobs_digest",
    "meta_path",
    "plan_output",
    "plan_resume",
    "read_blocks",
    "ScoreJobs",
    "in_process",
    "rerank_to_file",
    "result_scores",
    "score_to_file",
]

OnResult = Callable[[QueryJob, dict[str, float]], None]


def result_scores(job: QueryJob, results: Sequence[RerankResult]) -> dict[str, float]:
    """``doc id -> score`` from a rerank call's results (best first).

    The score is the model's ``raw_score``. A fail-open placeholder (a remote
    ``on_error="passthrough"`` result, raw score ``-inf``) gets a finite score below every
    real one that keeps its place in the reranker's order.
    """
    finite = [r.raw_score for r in results if math.isfinite(r.raw_score)]
    floor = min(finite, default=0.0)
    scores: dict[str, float] = {}
    below = 0
    for r in results:
        if math.isfinite(r.raw_score):
            scores[job.doc_ids[r.index]] = r.raw_score
        else:
            below += 1
            scores[job.doc_ids[r.index]] = floor - below
    return scores


async def arerank_jobs(
    reranker: Reranker,
    jobs: Iterable[QueryJob],
    *,
    concurrency: int,
    on_result: OnResult,
    deterministic: bool = True,
) -> None:
    """Rerank every job, at most ``concurrency`` at once, each in a call scope labelled with
    its query id; ``on_result`` runs in the event loop as each one finishes (in completion
    order). The first error cancels the rest and is raised as itself.

    ``deterministic`` (default) isolates each query's call in the local engine: its documents
    are batched only among themselves, so its scores do not depend on the other queries in
    flight. ``False`` lets the engine merge concurrent queries into shared batches (faster
    where one query does not fill the device; the last digits of the scores then depend on
    timing)."""
    int_value("concurrency", concurrency, minimum=1)
    # lazy: the scope is a contextvar of the local engine (no torch); a remote reranker
    # ignores it
    from rerank_integrations.backends.local.engine import call_scope

    slots = asyncio.Semaphore(concurrency)

    async def one(job: QueryJob) -> None:
        try:
            with call_scope(label=job.query_id, isolated=deterministic):  # this task only
                results = await reranker.arerank(
                    job.query, job.documents, instruction=job.instruction, metadata=job.metadata
                )
            on_result(job, result_scores(job, results))
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                await slots.acquire()
                group.create_task(one(job))
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None


# --------------------------------------------------------------------------------- resume


def jobs_digest(jobs: Iterable[QueryJob]) -> str:
    """SHA-256 of everything a run's output depends on besides the reranker: per job, the
    query id and text, candidate ids, document texts, metadata and instruction."""
    digest = hashlib.sha256()
    for job in jobs:
        fields = [
            job.query_id,
            job.query,
            job.doc_ids,
            job.documents,
            job.metadata,
            job.instruction,
        ]
        digest.update(json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        digest.update(b"\n")
    return digest.hexdigest()


def meta_path(output: str | os.PathLike[str]) -> Path:
    """The sidecar that records what ``output`` was made from: ``<output>.meta.json``."""
    path = Path(output)
    return path.with_name(path.name + ".meta.json")


def _check_meta(path: Path, meta: Mapping[str, Any]) -> None:
    sidecar = meta_path(path)
    hint = "choose another --output, or --overwrite to start over"
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RerankInputError(
            str(path), f"exists but has no {sidecar.name}: not a run this command wrote ({hint})"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8, digits
        raise RerankInputError(str(sidecar), f"unreadable ({exc}); {hint}") from None
    changed = [key for key in meta if not isinstance(stored, dict) or stored.get(key) != meta[key]]
    if changed:
        what = {
            "tag": "the tag",
            "settings": "the reranker settings",
            "inputs": "the queries, candidates, instruction or metadata",
        }
        raise RerankInputError(
            str(path),
            f"was made with other settings ({', '.join(what[k] for k in changed)} differ); {hint}",
        )


def read_blocks(path: Path) -> dict[str, list[RunLine]]:
    """The lines of an existing output file grouped by query, for :func:`plan_resume`.

    A last line cut short (no newline, or unparsable) is a partial write and is ignored; a
    malformed line anywhere else means the file is not a run this command wrote.
    """
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline, else the cut-off last line
    if tail.strip():
        logger.info("%s: ignoring a cut-off last line", path)
    blocks: dict[str, list[RunLine]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = parse_run_line(f"{path}:{number}", line)
        blocks.setdefault(row.query_id, []).append(row)
    return blocks


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What an existing output holds: complete queries kept, partial ones to redo."""

    kept: dict[str, dict[str, float]]
    todo: list[QueryJob]
    partial: list[str]


def plan_resume(
    blocks: Mapping[str, Sequence[RunLine]], jobs: Sequence[QueryJob], tag: str, *, where: str
) -> ResumePlan:
    """Split ``jobs`` into those ``blocks`` already hold completely and those still to do.

    Raises :class:`RerankInputError` when the file belongs to another run: a query that is
    not one of the jobs, or another tag.
    """
    by_id = {job.query_id: job for job in jobs}
    for qid, rows in blocks.items():
        if qid not in by_id:
            raise RerankInputError(
                where,
                f"holds query {qid!r}, which this run does not rerank: it is the output "
                "of another run (choose another --output, or --overwrite)",
            )
        tags = {row.tag for row in rows}
        if tags != {tag}:
            raise RerankInputError(
                where,
                f"was written with tag {sorted(tags)[0]!r}, this run's tag is {tag!r} "
                "(choose another --output, or --overwrite)",
            )
    kept: dict[str, dict[str, float]] = {}
    partial: list[str] = []
    for qid, rows in blocks.items():
        job = by_id[qid]
        complete = sorted(row.rank for row in rows) == list(range(1, len(job.doc_ids) + 1)) and {
            row.doc_id for row in rows
        } == set(job.doc_ids)
        if complete:
            kept[qid] = {row.doc_id: row.score for row in rows}
        else:
            partial.append(qid)
    todo = [job for job in jobs if job.query_id not in kept]
    return ResumePlan(kept, todo, partial)


# --------------------------------------------------------------------------------- the file


@dataclass(frozen=True, slots=True)
class BulkSummary:
    """What :func:`rerank_to_file` did."""

    queries: int
    reranked: int
    kept: int
    partial_redone: int
    documents: int
    seconds: float


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """An output file checked for resuming: its sidecar content and what is left to do."""

    path: Path
    tag: str
    meta: dict[str, Any]
    resume: ResumePlan

    @property
    def todo(self) -> list[QueryJob]:
        return self.resume.todo


def plan_output(
    output: str | os.PathLike[str],
    jobs: Sequence[QueryJob],
    *,
    tag: str,
    settings: Mapping[str, Any] | None = None,
    resume: bool = True,
) -> OutputPlan:
    """Check ``output`` against this run (sidecar, blocks) before any model is loaded.

    ``settings`` (JSON-serialisable, e.g. the reranker's config) is recorded in the sidecar
    and must match to resume; ``resume=False`` starts over.
    """
    path = Path(output)
    meta = {
        "tag": tag,
        "settings": json.loads(json.dumps(settings or {})),
        "inputs": jobs_digest(jobs),
    }
    plan = ResumePlan({}, list(jobs), [])
    if resume and path.exists():
        _check_meta(path, meta)
        plan = plan_resume(read_blocks(path), jobs, tag, where=str(path))
        if plan.kept or plan.partial:
            logger.info(
                "%s: resuming: %d complete queries kept, %d partial redone",
                path,
                len(plan.kept),
                len(plan.partial),
            )
    return OutputPlan(path, tag, meta, plan)


ScoreJobs = Callable[[Sequence[QueryJob], OnResult], None]
"""An engine: scores every job, calling ``on_result(job, scores)`` in the caller's thread as each
one finishes (any order), and raises the first error. :func:`in_process` or
:func:`rerank_integrations.ir.ray_engine.on_ray`."""


def in_process(
    reranker: Reranker, *, concurrency: int = 16, deterministic: bool = True
) -> ScoreJobs:
    """The in-process engine: :func:`arerank_jobs` on ``reranker`` in a fresh event loop."""
    int_value("concurrency", concurrency, minimum=1)

    def score(todo: Sequence[QueryJob], on_result: OnResult) -> None:
        asyncio.run(
            arerank_jobs(
                reranker,
                todo,
                concurrency=concurrency,
                on_result=on_result,
                deterministic=deterministic,
            )
        )

    return score


def rerank_to_file(
    reranker: Reranker | None,
    jobs: Sequence[QueryJob],
    output: str | os.PathLike[str] | OutputPlan,
    *,
    tag: str,
    concurrency: int = 16,
    resume: bool = True,
    progress: Callable[[int, int], ProgressBar] | None = None,
    settings: Mapping[str, Any] | None = None,
    deterministic: bool = True,
) -> BulkSummary:
    """Rerank ``jobs`` into the TREC run ``output`` (see the module docstring).

    ``output`` is a path (checked here with :func:`plan_output`, given ``settings`` and
    ``resume``) or an :class:`OutputPlan` made before; ``reranker`` may be ``None`` only when
    that plan has nothing left to do. ``progress(total, done_before)`` builds the bar.
    ``deterministic``: see :func:`arerank_jobs`.
    """
    int_value("concurrency", concurrency, minimum=1)
    out_plan = (
        output
        if isinstance(output, OutputPlan)
        else plan_output(output, jobs, tag=tag, settings=settings, resume=resume)
    )
    engine = None
    if reranker is not None:
        engine = in_process(reranker, concurrency=concurrency, deterministic=deterministic)
    return score_to_file(engine, jobs, out_plan, progress=progress)


def score_to_file(
    engine: ScoreJobs | None,
    jobs: Sequence[QueryJob],
    plan: OutputPlan,
    *,
    progress: Callable[[int, int], ProgressBar] | None = None,
) -> BulkSummary:
    """Score what ``plan`` has left to do with ``engine`` into its run file (see the module
    docstring); ``engine`` may be ``None`` only when nothing is left. Every engine writes the
    same bytes: the blocks as they finish, then the file in query order.

    Raises :class:`RuntimeError` when the engine returns without a result for every job
    (never a silently shorter run)."""
    path, tag, resume = plan.path, plan.tag, plan.resume
    if resume.todo and engine is None:
        raise ValueError("an engine is needed: the output plan has queries left to do")
    # the output first (drops partial blocks; creates the file), then the sidecar: a crash
    # in between leaves the kept blocks (or none) under the old sidecar, never old blocks
    # under a new one. Both are replaced atomically.
    write_run(path, resume.kept, tag)
    write_text(meta_path(path), json.dumps(plan.meta, indent=1) + "\n")
    finished: dict[str, dict[str, float]] = dict(resume.kept)
    bar = progress(len(jobs), len(resume.kept)) if progress else None
    start = time.perf_counter()
    documents = 0
    try:
        with path.open("a", encoding="utf-8") as out:

            def on_result(job: QueryJob, scores: dict[str, float]) -> None:
                nonlocal documents
                if job.query_id in finished:  # an engine that re-delivers: written once
                    logger.debug("%s: a second result for query %r ignored", path, job.query_id)
                    return
                out.write(format_run_block(job.query_id, scores, tag))
                out.flush()
                finished[job.query_id] = scores
                documents += len(job.doc_ids)
                if bar is not None:
                    bar.update(docs=len(job.doc_ids))

            if resume.todo and engine is not None:
                engine(resume.todo, on_result)
    finally:
        if bar is not None:
            bar.close()
    missing = [job.query_id for job in resume.todo if job.query_id not in finished]
    if missing:
        raise RuntimeError(
            f"{path}: the engine returned no result for {len(missing)} queries "
            f"(e.g. {', '.join(repr(q) for q in missing[:5])}); run the command again to resume"
        )
    write_run(path, finished, tag, order=[job.query_id for job in jobs])
    return BulkSummary(
        len(jobs),
        len(resume.todo),
        len(resume.kept),
        len(resume.partial),
        documents,
        time.perf_counter() - start,
    )

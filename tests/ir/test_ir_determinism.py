"""Deterministic bulk runs: the same ``rerank-integrations run`` writes the byte-identical file
at any ``--concurrency`` and after an interrupted run is resumed (docs/evaluation.md
"Determinism"), because the bulk runner's calls are isolated in the local engine: a query's
documents are batched only among themselves. Also: bulk truncation warnings name the query.

Data: a small real subset of CISI (tests/ir/data/cisi_small, see its README), whose documents
of very different lengths make merged batches pad differently from one query's batches."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rerank_integrations.backends.local.engine import (
    EncodedInput,
    EngineSettings,
    LocalEngine,
    call_scope,
    current_call_scope,
)
from rerank_integrations.cli import main
from rerank_integrations.ir import bulk
from rerank_integrations.ir.jobs import QueryJob

CISI = Path(__file__).parent / "data" / "cisi_small"


def _run(model: Path, out: Path, concurrency: int, *extra: str) -> int:
    argv = f"run --data {CISI} --model {model} -o {out} --first-stage-k 20 -q"
    return main([*argv.split(), "--concurrency", str(concurrency), *extra])


@pytest.mark.parametrize("model", ["xlmr", "ctxl"])  # ctxl: causal, prefix shared by queries
def test_same_bytes_at_any_concurrency_and_after_a_resume(
    model: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = request.getfixturevalue(f"tiny_{model}_dir")
    one, many, resumed = tmp_path / "c1.trec", tmp_path / "c16.trec", tmp_path / "resumed.trec"
    assert _run(model_dir, one, 1) == 0
    assert _run(model_dir, many, 16) == 0
    assert many.read_bytes() == one.read_bytes()
    assert len(one.read_bytes().splitlines()) == 10 * 20

    # a run killed after 4 queries were written, then resumed (other queries in flight)
    real_block = bulk.format_run_block
    written: list[str] = []

    def dying_block(query_id: str, scores: Any, tag: str) -> str:
        if len(written) == 4:
            raise OSError("no space left on device")  # as a crash mid-run: exit 1
        written.append(query_id)
        return real_block(query_id, scores, tag)

    monkeypatch.setattr(bulk, "format_run_block", dying_block)
    assert _run(model_dir, resumed, 16) == 1
    monkeypatch.setattr(bulk, "format_run_block", real_block)
    assert len(resumed.read_bytes().splitlines()) == 4 * 20  # the 4 complete queries
    assert _run(model_dir, resumed, 7) == 0
    assert resumed.read_bytes() == one.read_bytes()


# ----------------------------------------------------------------------------- the engine


class _ShapeRunner:
    """A runner whose scores depend on the batch (like float rounding on padded shapes):
    each row is ``sum(ids) + 1000 * batch size``. Records the batches it ran."""

    supports_prefix = False

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[tuple[int, ...]]] = []

    def run(self, items: Sequence[EncodedInput], prefix: Any = None) -> list[tuple[float, ...]]:
        self.started.set()
        self.gate.wait(10)
        self.batches.append([x.input_ids for x in items])
        return [(float(sum(x.input_ids) + 1000 * len(items)),) for x in items]

    def prepare_prefix(self, prefix_ids: Sequence[int]) -> Any:
        raise NotImplementedError

    def is_oom(self, exc: BaseException) -> bool:
        return False

    def clear_cache(self) -> None:
        pass

    def release(self) -> None:
        pass


def test_isolated_calls_are_never_merged_and_shared_ones_still_are() -> None:
    runner = _ShapeRunner()
    engine = LocalEngine(runner, EngineSettings(token_budget=10_000, max_batch_size=64))
    alone = [EncodedInput((i,)) for i in (1, 2, 3)]
    expected = [(float(i + 3000),) for i in (1, 2, 3)]  # one batch of its own 3 inputs
    blocker = engine.submit([EncodedInput((9,))])
    assert runner.started.wait(5)  # the worker is busy: everything below queues up
    with call_scope(label="q1", isolated=True):
        isolated = [engine.submit(alone) for _ in range(3)]
    shared = [engine.submit([EncodedInput((7,))]) for _ in range(2)]
    runner.gate.set()
    assert blocker.result(5) == [(1009.0,)]
    assert [f.result(5) for f in isolated] == [expected] * 3
    assert [f.result(5) for f in shared] == [[(2007.0,)]] * 2  # merged: a batch of 2
    assert runner.batches[1:] == [[(7,), (7,)], *[[(1,), (2,), (3,)]] * 3]
    engine.close()


async def test_call_scope_follows_tasks_and_threads_only_where_set() -> None:
    assert current_call_scope().label is None and not current_call_scope().isolated
    seen: dict[str, tuple[str | None, bool]] = {}

    async def task(label: str) -> None:
        with call_scope(label=label, isolated=True):
            await asyncio.sleep(0.01)
            scope = await asyncio.to_thread(current_call_scope)
            seen[label] = (scope.label, scope.isolated)

    await asyncio.gather(task("a"), task("b"))
    assert seen == {"a": ("a", True), "b": ("b", True)}
    assert current_call_scope().label is None


def test_bulk_truncation_warning_names_the_query_once(
    tiny_ctxl_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from rerank_integrations import LocalReranker

    long_doc = "The quick brown fox jumps over the lazy dog. " * 60
    jobs = [
        QueryJob(f"q{i}", f"query {i}", ("a", "b", "c"), (long_doc, "short", long_doc))
        for i in range(3)
    ]
    jobs.append(QueryJob("q-short", "query", ("a",), ("short",)))
    with (
        LocalReranker(str(tiny_ctxl_dir), max_length=96) as r,
        caplog.at_level(logging.WARNING, logger="rerank_integrations"),
    ):
        asyncio.run(bulk.arerank_jobs(r, jobs, concurrency=4, on_result=lambda j, s: None))
    messages = sorted(rec.getMessage() for rec in caplog.records if "truncated" in rec.message)
    assert len(messages) == 3  # one per truncated query, not one per document
    for i, message in enumerate(messages):
        assert message.startswith(f"query 'q{i}': 2 of 3 documents were truncated"), message

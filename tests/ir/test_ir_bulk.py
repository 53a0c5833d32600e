"""Jobs (texts, metadata, instruction, unknown ids counted), bounded concurrency, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rerank_integrations import Reranker, RerankInputError, RerankResult
from rerank_integrations._testing import FakeReranker
from rerank_integrations.ir.bulk import (
    arerank_jobs,
    meta_path,
    plan_output,
    rerank_to_file,
    result_scores,
)
from rerank_integrations.ir.formats import Document, Query, read_run
from rerank_integrations.ir.jobs import QueryJob, build_jobs
from rerank_integrations.validation import RerankRequest

CORPUS = {
    "a": Document("a", "Alpha", "first text", {"date": "2024-01-01", "metadata": {"src": "x"}}),
    "b": Document("b", "", "second text", {"date": "2023-05-05"}),
    "c": Document("c", "Gamma", "third text", {}),
}
QUERIES = {
    "q1": Query("q1", "query one", {"instruction": "prefer recent"}),
    "q2": Query("q2", "query two", {}),
    "q3": Query("q3", "query three", {"metadata": {"instruction": "nested"}}),
}


def test_jobs_texts_metadata_and_instruction_field() -> None:
    candidates = {
        "q1": {"a": 0.5, "b": 0.9, "zz": 1.0},
        "q2": {"c": 1.0},
        "q3": {"a": 1.0},
        "q7": {"a": 1.0},
    }
    jobs, report = build_jobs(
        QUERIES,
        CORPUS,
        candidates,
        instruction_field="instruction",
        metadata_fields=["date", "src"],
    )
    assert [j.query_id for j in jobs] == ["q1", "q2", "q3"]
    q1 = jobs[0]
    assert q1.doc_ids == ("b", "a")  # candidates best first; 'zz' is not in the corpus
    assert q1.documents == ("second text", "Alpha first text")  # BEIR: title + " " + text
    assert q1.metadata == ("date: 2023-05-05", "date: 2024-01-01\nsrc: x")
    assert q1.instruction == "prefer recent"
    assert jobs[1].instruction is None and jobs[2].instruction == "nested"
    assert report.unknown_doc_ids == 1 and report.unknown_doc_examples == ["zz"]
    assert report.unknown_query_ids == ["q7"]
    assert report.queries_without_instruction == ["q2"]
    assert report.documents_without_metadata == 1  # c has neither field
    lines = report.warnings()
    assert any("1 candidates name doc ids that are not in the corpus" in w for w in lines)
    assert any("1 candidate query ids are not in the queries file" in w for w in lines)


def test_title_as_metadata_leaves_the_text_alone_and_fixed_instruction() -> None:
    jobs, report = build_jobs(
        QUERIES,
        CORPUS,
        {"q1": {"a": 1.0}, "q2": {"zz": 1.0}},
        instruction="be brief",
        metadata_fields=["title"],
    )
    assert jobs[0].documents == ("first text",) and jobs[0].metadata == ("title: Alpha",)
    assert jobs[0].instruction == "be brief"
    assert report.queries_without_candidates == ["q2"]
    with pytest.raises(RerankInputError, match="not both"):
        build_jobs(QUERIES, CORPUS, {}, instruction="x", instruction_field="instruction")


def test_result_scores_keep_fail_open_placeholders_last_in_order() -> None:
    job = QueryJob("q", "query", ("a", "b", "c"), ("x", "y", "z"))
    results = [
        RerankResult(1, 0.9, 2.0),
        RerankResult(2, 0.0, float("-inf")),
        RerankResult(0, 0.0, float("-inf")),
    ]
    assert result_scores(job, results) == {"b": 2.0, "c": 1.0, "a": 0.0}


class _Tracking(Reranker):
    """Counts calls and the most calls in flight at once; optionally fails on a query."""

    def __init__(
        self, *, fail_on: str | None = None, interrupt_after: int | None = None, delay: float = 0.01
    ) -> None:
        self.inner = FakeReranker({"x1": 1.0, "x2": 2.0, "x3": 3.0})
        self.calls: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.fail_on = fail_on
        self.interrupt_after = interrupt_after
        self.delay = delay

    @property
    def model_name(self) -> str:
        return "tracking"

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        return self.inner._score(request)

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        self.calls.append(request.query)
        if self.interrupt_after is not None and len(self.calls) > self.interrupt_after:
            raise KeyboardInterrupt
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay * (1 + len(self.calls) % 3))
            if request.query == self.fail_on:
                raise RerankInputError("query", "boom")
            return self.inner._score(request)
        finally:
            self.in_flight -= 1

    def to_config(self) -> dict[str, Any]:
        return {"backend": "tracking"}


def _jobs(n: int = 10) -> list[QueryJob]:
    return [
        QueryJob(f"q{i}", f"query {i}", ("d1", "d2", "d3"), ("x1", "x2", "x3")) for i in range(n)
    ]


def test_concurrency_is_bounded_and_used() -> None:
    reranker = _Tracking()
    done: list[str] = []
    asyncio.run(
        arerank_jobs(
            reranker, _jobs(12), concurrency=4, on_result=lambda job, _: done.append(job.query_id)
        )
    )
    assert sorted(done) == sorted(f"q{i}" for i in range(12))
    assert reranker.peak == 4


def test_first_error_is_raised_as_itself() -> None:
    with pytest.raises(RerankInputError, match="boom"):
        asyncio.run(
            arerank_jobs(
                _Tracking(fail_on="query 3"), _jobs(), concurrency=3, on_result=lambda *_: None
            )
        )


def test_output_is_complete_and_sorted_whatever_the_completion_order(tmp_path: Path) -> None:
    out = tmp_path / "run.trec"
    summary = rerank_to_file(_Tracking(), _jobs(), out, tag="t", concurrency=5)
    assert summary.queries == summary.reranked == 10 and summary.documents == 30
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [line.split()[0] for line in lines] == [f"q{i}" for i in range(10) for _ in range(3)]
    assert all(
        line.split()[2:4] == [f"d{3 - i % 3}", str(i % 3 + 1)] for i, line in enumerate(lines)
    )


def test_interrupted_run_resumes_to_the_identical_file(tmp_path: Path) -> None:
    whole = tmp_path / "whole.trec"
    rerank_to_file(_Tracking(), _jobs(), whole, tag="t", concurrency=3)
    out = tmp_path / "run.trec"
    with pytest.raises(KeyboardInterrupt):
        rerank_to_file(_Tracking(interrupt_after=4), _jobs(), out, tag="t", concurrency=2)
    saved = read_run(out)
    assert 0 < len(saved) <= 4 and all(len(s) == 3 for s in saved.values())
    second = _Tracking()
    summary = rerank_to_file(second, _jobs(), out, tag="t", concurrency=3)
    assert summary.kept == len(saved) and summary.reranked == 10 - len(saved)
    assert sorted(second.calls) == sorted(f"query {i}" for i in range(10) if f"q{i}" not in saved)
    assert out.read_bytes() == whole.read_bytes()


def test_partial_last_query_and_cut_line_are_redone(tmp_path: Path) -> None:
    whole = tmp_path / "whole.trec"
    rerank_to_file(_Tracking(), _jobs(), whole, tag="t")
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / "run.trec"
    meta_path(out).write_bytes(meta_path(whole).read_bytes())
    # q0..q2 complete, then q3 with one of its three lines and half of the next
    out.write_text("".join(lines[:10]) + lines[10][:9], encoding="utf-8")
    plan = plan_output(out, _jobs(), tag="t", settings={})
    assert sorted(plan.resume.kept) == ["q0", "q1", "q2"] and plan.resume.partial == ["q3"]
    reranker = _Tracking()
    rerank_to_file(reranker, _jobs(), plan, tag="t")
    assert len(reranker.calls) == 7
    assert out.read_bytes() == whole.read_bytes()


def test_a_file_from_other_settings_is_never_mixed_in(tmp_path: Path) -> None:
    out = tmp_path / "run.trec"
    rerank_to_file(_Tracking(), _jobs(), out, tag="t", settings={"model": "m1"})
    with pytest.raises(RerankInputError, match="reranker settings"):
        plan_output(out, _jobs(), tag="t", settings={"model": "m2"})
    with pytest.raises(RerankInputError, match="the tag"):
        plan_output(out, _jobs(), tag="t2", settings={"model": "m1"})
    with pytest.raises(RerankInputError, match="the queries, candidates"):
        plan_output(out, _jobs(9), tag="t", settings={"model": "m1"})
    assert plan_output(out, _jobs(9), tag="t", resume=False).todo == _jobs(9)
    foreign = tmp_path / "foreign.trec"
    foreign.write_text("q0 Q0 d1 1 1.0 t\n", encoding="utf-8")
    with pytest.raises(RerankInputError, match="not a run this command wrote"):
        plan_output(foreign, _jobs(), tag="t")


def test_secrets_never_reach_the_sidecar() -> None:
    from rerank_integrations.ir.pipeline import public_settings

    config = {
        "backend": "remote",
        "model": "m",
        "api_key": "sk-secret",
        "api_key_env": "KEY",
        "client_secret": "x",
        "max_tokens_per_request": 512,
    }
    assert public_settings(config) == {
        "backend": "remote",
        "model": "m",
        "api_key_env": "KEY",
        "max_tokens_per_request": 512,
    }

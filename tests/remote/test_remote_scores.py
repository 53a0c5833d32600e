"""Relevance from raw scores (``scores.relevance_scores``): the raw score clipped to 0-1, kept
strictly monotone in raw within a call, so ordering by relevance is ordering by raw even
when a server returns logits (docs/core.md: "within one call both are monotone")."""

from __future__ import annotations

import asyncio
import math

import pytest
from helpers.hostile_server import Act, HostileServer
from hypothesis import given
from hypothesis import strategies as st

from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.backends.remote.scores import out_of_range, relevance_scores
from rerank_integrations.ranking import sort_results


@pytest.mark.parametrize(
    ("raw", "relevance"),
    [
        ([0.2, 0.9, 0.5], [0.2, 0.9, 0.5]),  # in range: unchanged
        ([5.0, 6.0, 7.0], [1 - 2**-52, 1 - 2**-53, 1.0]),
        ([-5.0, -6.0, -7.0], [2 * 5e-324, 5e-324, 0.0]),
        ([1.7, 0.2, -0.5], [1.0, 0.2, 0.0]),  # a lone clipped score: the bound itself
        ([3.0, 3.0, 0.4], [1.0, 1.0, 0.4]),  # equal raw, equal relevance
        ([], []),
        ([42.0], [1.0]),
    ],
)
def test_relevance_scores(raw: list[float], relevance: list[float]) -> None:
    assert relevance_scores(raw) == relevance


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(st.one_of(finite, st.floats(-3, 3), st.sampled_from([0.0, 1.0, 5.0, -5.0]))))
def test_relevance_is_monotone_in_raw_and_in_range(raw: list[float]) -> None:
    relevance = relevance_scores(raw)
    assert len(relevance) == len(raw)
    assert all(0.0 <= r <= 1.0 and not math.isnan(r) for r in relevance)
    for i in range(len(raw)):
        for j in range(len(raw)):
            if raw[i] < raw[j]:
                assert relevance[i] < relevance[j]
            elif raw[i] == raw[j]:
                assert relevance[i] == relevance[j]
        if not out_of_range(raw[i]) and 0.0 <= raw[i] <= 1.0:
            assert abs(relevance[i] - raw[i]) <= 1e-12  # in range: (almost) unchanged


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_logits_from_a_server_come_back_in_raw_order(mode: str) -> None:
    """The reported case: raw 5, 6, 7 used to come back tied at 1.0 in index order."""
    with HostileServer() as server:
        server.default = Act.scores([5.0, 6.0, 7.0, -3.0, 0.5])
        reranker = RemoteReranker("m", base_url=server.url())
        docs = ["a", "b", "c", "d", "e"]
        if mode == "sync":
            results = reranker.rerank("q", docs)
        else:
            results = asyncio.run(reranker.arerank("q", docs))
    assert [r.index for r in results] == [2, 1, 0, 4, 3]
    assert [r.raw_score for r in results] == [7.0, 6.0, 5.0, 0.5, -3.0]
    assert results == sort_results(results)
    relevance = [r.relevance_score for r in results]
    assert relevance == sorted(relevance, reverse=True) and len(set(relevance)) == 5
    assert relevance[3] == 0.5  # an in-range score is untouched


def test_order_holds_across_sub_requests() -> None:
    with HostileServer() as server:
        server.script.extend([Act.scores([9.0, 2.0]), Act.scores([4.0, 0.3])])
        reranker = RemoteReranker(
            "m", base_url=server.url(), max_documents_per_request=2, max_concurrency=1
        )
        results = reranker.rerank("q", ["a", "b", "c", "d"])
    assert [r.index for r in results] == [0, 2, 1, 3]

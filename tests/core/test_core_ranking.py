"""Ordering / top_n / threshold rules, property-based."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_integrations import (
    RerankInputError,
    RerankResult,
    RerankTypeError,
    select_results,
    sort_results,
)
from rerank_integrations._testing import FakeReranker
from rerank_integrations.validation import validate_score_threshold

# few distinct scores so that ties are common
scores = st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0]), max_size=30)
top_ns = st.one_of(st.none(), st.integers(min_value=1, max_value=40))


def _check_sorted_prefix(results: list[RerankResult], n_docs: int, top_n: int | None) -> None:
    indices = [r.index for r in results]
    # a permutation-prefix of the input indices: unique, in range
    assert len(set(indices)) == len(indices)
    assert all(0 <= i < n_docs for i in indices)
    expected_len = n_docs if top_n is None else min(top_n, n_docs)
    assert len(results) == expected_len
    for a, b in itertools.pairwise(results):
        assert a.relevance_score > b.relevance_score or (
            a.relevance_score == b.relevance_score and a.index < b.index
        )


@given(scores, top_ns)
def test_rerank_output_is_sorted_permutation_prefix(raw: list[float], top_n: int | None) -> None:
    docs = [f"doc{i}" for i in range(len(raw))]
    reranker = FakeReranker(dict(zip(docs, raw, strict=True)))
    results = reranker.rerank("q", docs, top_n=top_n)
    _check_sorted_prefix(results, len(docs), top_n)
    # the prefix is the best: every dropped document scores no higher than the last kept one
    kept = {r.index for r in results}
    if results:
        floor = results[-1]
        for i, s in enumerate(raw):
            if i not in kept:
                assert s < floor.relevance_score or (
                    s == floor.relevance_score and i > floor.index
                )
    # scores are the backend's, attached to the right index
    for r in results:
        assert r.raw_score == raw[r.index]


@given(scores, top_ns)
async def test_arerank_equals_rerank(raw: list[float], top_n: int | None) -> None:
    docs = [f"doc{i}" for i in range(len(raw))]
    reranker = FakeReranker(dict(zip(docs, raw, strict=True)))
    assert await reranker.arerank("q", docs, top_n=top_n) == reranker.rerank("q", docs, top_n=top_n)


@given(
    st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), max_size=25),
    top_ns,
    st.one_of(st.none(), st.floats(min_value=0, max_value=1, allow_nan=False)),
)
def test_select_results_threshold_then_top_n(
    rel: list[float], top_n: int | None, threshold: float | None
) -> None:
    results = [RerankResult(i, s, s * 10) for i, s in enumerate(rel)]
    shuffled = list(reversed(results))
    selected = select_results(shuffled, top_n=top_n, score_threshold=threshold)
    passing = [r for r in results if threshold is None or r.relevance_score >= threshold]
    expected_len = len(passing) if top_n is None else min(top_n, len(passing))
    assert len(selected) == expected_len
    assert all(threshold is None or r.relevance_score >= threshold for r in selected)
    assert selected == sort_results(passing)[:expected_len]
    assert shuffled == list(reversed(results)), "input must not be mutated"


def test_ties_keep_input_order() -> None:
    results = [RerankResult(3, 0.5, 1.0), RerankResult(1, 0.5, 2.0), RerankResult(2, 0.7, 0.0)]
    assert [r.index for r in sort_results(results)] == [2, 1, 3]


def test_top_n_larger_than_list_returns_all() -> None:
    reranker = FakeReranker({"a": 0.1, "b": 0.2})
    assert [r.index for r in reranker.rerank("q", ["a", "b"], top_n=10)] == [1, 0]


def test_threshold_zero_is_a_real_value() -> None:
    results = [RerankResult(0, 0.0, -3.0), RerankResult(1, 0.4, 0.0)]
    assert len(select_results(results, score_threshold=0)) == 2
    assert len(select_results(results, score_threshold=0.0)) == 2
    assert [r.index for r in select_results(results, score_threshold=0.1)] == [1]


@pytest.mark.parametrize(
    ("bad", "exc"),
    [(math.nan, RerankInputError), (math.inf, RerankInputError), ("0.5", RerankTypeError),
     (True, RerankTypeError), ([0.1], RerankTypeError)],
)
def test_bad_threshold(bad: object, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        validate_score_threshold(bad)
    assert type(info.value) is exc
    assert info.value.field == "score_threshold"  # type: ignore[attr-defined]


def test_result_is_frozen() -> None:
    r = RerankResult(0, 0.5, 1.0)
    with pytest.raises(AttributeError):
        r.index = 3  # type: ignore[misc]

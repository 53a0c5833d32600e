"""Retry decision, backoff delay, Retry-After parsing, "too long" detection, fail-open."""

from __future__ import annotations

import email.utils
import math

import pytest

from rerank_integrations.backends.remote.limits import StatedLimit, is_too_long, parse_stated_limit
from rerank_integrations.backends.remote.retry import (
    PASSTHROUGH_RAW_SCORE,
    PASSTHROUGH_RELEVANCE,
    RetryPolicy,
    backoff_delay,
    is_passthrough,
    is_retryable_status,
    parse_retry_after,
    passthrough_results,
    request_id,
    should_retry,
)
from rerank_integrations.ranking import select_results
from rerank_integrations.results import RerankResult


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (529, True),
    ],
)
def test_retryable_status_table(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry
    assert should_retry(0, 2, status=status) is retry


@pytest.mark.parametrize(
    ("attempt", "max_retries", "kwargs", "retry"),
    [
        (0, 2, {"transport_error": True}, True),
        (1, 2, {"transport_error": True}, True),
        (2, 2, {"transport_error": True}, False),
        (2, 2, {"status": 503}, False),
        (0, 0, {"status": 503}, False),
        (0, 0, {"transport_error": True}, False),
        (0, 2, {}, False),  # a malformed answer: no status, no transport error
    ],
)
def test_should_retry_table(
    attempt: int, max_retries: int, kwargs: dict[str, object], retry: bool
) -> None:
    assert should_retry(attempt, max_retries, **kwargs) is retry  # type: ignore[arg-type]


P = RetryPolicy()


@pytest.mark.parametrize(
    ("attempt", "rng", "retry_after", "expected"),
    [
        (0, 0.0, None, 0.5),
        (1, 0.0, None, 1.0),
        (2, 0.0, None, 2.0),
        (3, 0.0, None, 4.0),
        (4, 0.0, None, 8.0),
        (5, 0.0, None, 8.0),  # capped
        (10, 0.0, None, 8.0),
        (0, 0.5, None, 0.5 * 0.875),  # jitter reduces by up to 25 %
        (4, 0.999, None, 8.0 * (1 - 0.25 * 0.999)),
        (0, 0.5, 3.0, 3.0),  # the server's Retry-After wins, no jitter
        (3, 0.5, 0.0, 0.0),
        (0, 0.5, 600.0, 60.0),  # capped at max_retry_after
    ],
)
def test_backoff_delay_table(
    attempt: int, rng: float, retry_after: float | None, expected: float
) -> None:
    delay = backoff_delay(attempt, P, retry_after=retry_after, random=lambda: rng)
    assert delay == pytest.approx(expected)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms wins
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": email.utils.formatdate(NOW + 7, usegmt=True)}, 7.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "next tuesday"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    got = parse_retry_after(headers, NOW)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("status", "message", "too_long"),
    [
        (413, "Payload Too Large", True),
        (413, "", True),
        (422, "request too long: 9000 tokens exceeds the maximum of 8000", True),
        (422, "too many documents: 150 > 100", True),
        (422, "batch size 64 > maximum allowed batch size 32", True),
        (422, "at most 100 documents are allowed per request, got 2000", True),
        (422, "List should have at most 2048 items after validation, not 3000", True),
        (422, "field required; value is not a valid list", False),
        (422, "metadata must be the same length as documents", False),
        (400, "request too long", False),
        (500, "too long", False),
    ],
)
def test_is_too_long_table(status: int, message: str, too_long: bool) -> None:
    assert is_too_long(status, message) is too_long


def D(value: int) -> StatedLimit:
    return StatedLimit("documents", value)


def T(value: int) -> StatedLimit:
    return StatedLimit("tokens", value)


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        # TEI (and gateways that copy its wording)
        ("batch size 2000 > maximum allowed batch size 32", D(32)),
        ("input batch size 100 > maximum allowed batch size 64", D(64)),
        # vLLM / Infinity / generic
        ("too many documents: 2000 > 100", D(100)),
        ("at most 100 documents are allowed per request, got 2000", D(100)),
        ("you may send a maximum of 100 documents", D(100)),
        ("request has 2000 documents; max_client_batch_size is 100", D(100)),
        ("max_client_batch_size=100", D(100)),
        ("Too many documents; the limit is 100", D(100)),
        ("too many documents, max is 1,000", D(1000)),
        ("the number of documents (3000) exceeds the maximum (1000)", D(1_000)),
        ("List should have at most 2048 items (pydantic), not 3000", D(2048)),
        ("2000 texts sent; 100 is the maximum", D(100)),
        # Contextual-style / hosted token limits per request
        ("request too long: 412000 tokens exceeds the maximum of 400000", T(400_000)),
        ("request too long: 412,000 tokens exceeds the maximum of 400,000 tokens", T(400_000)),
        (
            "The max allowed tokens per submitted batch is 100000. Your batch has 145736 tokens.",
            T(100_000),
        ),
        # a limit on ONE document / sequence: splitting cannot help
        ("document too long: 9000 tokens exceeds the maximum of 8000", None),
        ("query + instruction + document exceeds the per document limit of 8000 tokens", None),
        (
            "This model's maximum context length is 8192 tokens. However, you requested 20673 "
            "tokens in the input for embedding generation. Please reduce the length of the input.",
            None,
        ),
        # no number, or no number tied to a limit word, or no unit
        ("too many documents", None),
        ("Payload Too Large", None),
        ("request too long", None),
        ("exceeds the limit, you sent 2000 documents", None),
        ("documents exceed the limit (request 2000 of model v2)", None),
        ("limit is 100", None),
        ("100 > 2000 documents", None),  # nonsense comparison: trust nothing
        ("field required; value is not a valid list", None),
        ("", None),
        ("at most 0 documents", None),
    ],
)
def test_parse_stated_limit_table(message: str, limit: StatedLimit | None) -> None:
    assert parse_stated_limit(message) == limit


def test_request_id() -> None:
    assert request_id({"x-request-id": "abc"}) == "abc"
    assert request_id({"request-id": "r1"}) == "r1"
    assert request_id({}) is None


def test_passthrough_placeholders() -> None:
    results = passthrough_results(4)
    assert [r.index for r in results] == [0, 1, 2, 3]
    for r in results:
        assert r.relevance_score == PASSTHROUGH_RELEVANCE == 0.0
        assert r.raw_score == PASSTHROUGH_RAW_SCORE == -math.inf
        assert not math.isnan(r.relevance_score) and not math.isnan(r.raw_score)
        assert 0.0 <= r.relevance_score <= 1.0
        assert is_passthrough(r)
    assert not is_passthrough(RerankResult(0, 0.0, 0.0))
    # Sorting keeps the original order; any positive threshold drops every placeholder.
    assert [r.index for r in select_results(results)] == [0, 1, 2, 3]
    assert select_results(results, score_threshold=1e-9) == []
    assert [r.index for r in select_results(results, top_n=2)] == [0, 1]

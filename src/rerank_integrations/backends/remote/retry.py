"""Pure decisions of the remote backend about failures: retry or not, how long to wait, the
server's request id, and the fail-open placeholder results. (What a "too long" answer means
and which limit it states is :mod:`~rerank_integrations.backends.remote.limits`.)

Nothing here does I/O; the sync and async loops of
:mod:`~rerank_integrations.backends.remote.transport` both call these functions.

Retry rules (those of the official API SDKs):

- retried: HTTP 408, 409, 429 and every status >= 500; timeouts; connection errors
  (refused, reset, dropped before an answer);
- never retried: any other 4xx, and a malformed 2xx answer (RemoteResponseError);
- wait before retry ``k`` (0-based): the server's ``retry-after-ms`` / ``Retry-After``
  (seconds or an HTTP date) when present, capped at ``max_retry_after`` (60 s); otherwise
  ``min(initial_delay * 2**k, max_delay)`` (0.5 s doubling, capped at 8 s) reduced by a random
  jitter of up to ``jitter`` (25 %).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rerank_integrations.results import RerankResult

__all__ = [
    "PASSTHROUGH_RAW_SCORE",
    "PASSTHROUGH_RELEVANCE",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "backoff_delay",
    "is_passthrough",
    "is_retryable_status",
    "parse_retry_after",
    "passthrough_results",
    "request_id",
    "should_retry",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""4xx statuses that are retried (every status >= 500 is retried too)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry settings; the defaults follow the official API SDKs."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: float = 0.25


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and >= 500 are retried; every other status is final."""
    return status in RETRYABLE_STATUSES or status >= 500


def should_retry(
    attempt: int, max_retries: int, *, status: int | None = None, transport_error: bool = False
) -> bool:
    """Whether attempt ``attempt`` (0-based) that failed should be followed by another.

    ``status`` is the HTTP status of an error answer; ``transport_error`` marks a timeout or a
    connection error (no answer at all). Anything else (e.g. a malformed answer) is final.
    """
    if attempt >= max_retries:
        return False
    if transport_error:
        return True
    return status is not None and is_retryable_status(status)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The wait the server asks for, in seconds, or ``None`` when it asks for none (or garbage).

    ``retry-after-ms`` (milliseconds) wins over ``Retry-After``, which is either a number of
    seconds or an HTTP date (compared with ``now``, a Unix time). Never negative. ``headers``
    must be case-insensitive (as httpx's are) or use lower-case names.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms):
            return max(0.0, ms / 1000.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        return max(0.0, when.timestamp() - now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    random: Callable[[], float],
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    The server's ``retry_after`` wins, capped at ``policy.max_retry_after``. Otherwise the
    exponential backoff ``min(initial * 2**attempt, max_delay)`` times
    ``1 - jitter * random()`` (``random`` returns a float in ``[0, 1)``).
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), policy.max_retry_after)
    base = min(policy.initial_delay * (2.0**attempt), policy.max_delay)
    return base * (1.0 - policy.jitter * random())


_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "cf-ray")


def request_id(headers: Mapping[str, str]) -> str | None:
    """The server's request id, if it sent one (case-insensitive ``headers``)."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


# --------------------------------------------------------------------------- fail-open

PASSTHROUGH_RELEVANCE = 0.0
"""``relevance_score`` of every placeholder result: the bottom of the documented 0-1 range,
so a positive ``score_threshold`` drops them while ``rerank()`` without one returns them all."""

PASSTHROUGH_RAW_SCORE = -math.inf
"""``raw_score`` of every placeholder result. A real answer can never carry it: the response
parsers reject non-finite scores, so ``raw_score == -inf`` identifies a placeholder."""


def passthrough_results(n_documents: int) -> list[RerankResult]:
    """One placeholder per document, in the original order (equal scores keep input order)."""
    return [
        RerankResult(i, PASSTHROUGH_RELEVANCE, PASSTHROUGH_RAW_SCORE) for i in range(n_documents)
    ]


def is_passthrough(result: RerankResult) -> bool:
    """Whether ``result`` is a fail-open placeholder rather than a real score."""
    return result.raw_score == PASSTHROUGH_RAW_SCORE

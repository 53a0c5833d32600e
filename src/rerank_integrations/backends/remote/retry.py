"""Pure decisions of the remote backend about failures: retry or not, how long to wait,
which errors mean "too long, split and try again" (and which limit the server stated), and
the fail-open placeholder results.

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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from rerank_integrations.backends.remote.document_limits import is_document_too_long
from rerank_integrations.backends.remote.redaction import Redactor
from rerank_integrations.results import RerankResult

__all__ = [
    "PASSTHROUGH_RAW_SCORE",
    "PASSTHROUGH_RELEVANCE",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "StatedLimit",
    "backoff_delay",
    "is_passthrough",
    "is_retryable_status",
    "is_too_long",
    "parse_retry_after",
    "parse_stated_limit",
    "passthrough_results",
    "redact",
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


_TOO_LONG = re.compile(
    r"too (long|many|large|big)|exceed|maximum|max[_ ]|limit|context length|batch size|tokens|"
    r"at most [\d,]+ (documents?|items?|texts?|inputs?|passages?)",
    re.IGNORECASE,
)


def is_too_long(status: int, message: str) -> bool:
    """Whether an error answer means "this request is too big": split it and try again.

    413 always; 422 only when the server's message speaks of a size (too long / too many /
    exceeds / maximum / limit / tokens / batch size / "at most N documents|items", the
    wording of pydantic's list-length check), so that a 422 for a bad field is not retried in
    ever smaller pieces. A 400 or 422 that states a limit on one document (vLLM's "maximum
    context length is N tokens", pydantic's "String should have at most N characters":
    :mod:`~rerank_integrations.backends.remote.document_limits`) is "too long" too.
    """
    if status == 413 or is_document_too_long(status, message):
        return True
    return status == 422 and _TOO_LONG.search(message) is not None


# --------------------------------------------------------------------------- stated limits


@dataclass(frozen=True, slots=True)
class StatedLimit:
    """A per-request limit the server stated in a "too many / too long" answer."""

    kind: Literal["documents", "tokens"]
    value: int


_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)"
# Words allowed between a limit word and its number ("maximum allowed batch size 32",
# "maximum of 100 documents", "max_client_batch_size=100", "limit is 100"). A whitelist, so
# that "exceeds the limit, you sent 2000" never reads 2000 as the limit.
_FILLER = (
    r"(?:[\s:=(]|\b(?:of|is|are|was|the|a|allowed|permitted|supported|batch|client|size|"
    r"number|documents?|docs?|texts?|inputs?|items?|passages?|tokens?|per(?:\s+request)?|limit|"
    r"maximum|max|to|set|at|most|up|no|more|than|configured|currently|submitted|in)\b)*"
)
_LIMIT_WORD = (
    r"\b(?:maximum|max(?:_\w+)?|limit|at\s+most|up\s+to|no\s+more\s+than|"
    r"(?:is|are)\s+allowed|allowed)"
)
# "2000 > 100", "9000 tokens exceeds the maximum of 8000", "batch size 2000 > maximum
# allowed batch size 32": the number after the comparison is the limit.
_COMPARISON = re.compile(
    _NUMBER
    + r"\s*(?:[a-z]+\s+){0,2}?(?:>|exceeds?|exceeding|is\s+(?:greater|more|larger)\s+than)"
    + _FILLER
    + _NUMBER
    + r"(?!\d)",
    re.IGNORECASE,
)
_LIMIT_THEN_NUMBER = re.compile(_LIMIT_WORD + _FILLER + _NUMBER + r"(?!\d)", re.IGNORECASE)
_NUMBER_IS_LIMIT = re.compile(
    _NUMBER + r"\s+(?:\w+\s+)?(?:is|are)\s+the\s+(?:maximum|max|limit)\b", re.IGNORECASE
)
_TOKEN_WORD = re.compile(r"\btokens?\b", re.IGNORECASE)
_COUNT_WORD = re.compile(
    r"\b(?:documents?|docs?|texts?|inputs?|items?|passages?|batch|too\s+many)\b|batch_size",
    re.IGNORECASE,
)
# A limit on ONE document / sequence: splitting a request into smaller ones cannot help.
_PER_SEQUENCE = re.compile(
    r"context\s+(?:length|window)|max_model_len|sequence\s+length|max_length|"
    r"\b(?:per|each|any|single|one)\s+(?:document|input|text|pair|sequence)\b|"
    r"\b(?:document|input|text|sequence|pair)\s+(?:is\s+)?too\s+long",
    re.IGNORECASE,
)


def _to_int(text: str) -> int:
    return int(text.replace(",", ""))


def parse_stated_limit(message: str) -> StatedLimit | None:
    """The per-request document or token limit a "too many / too long" message states.

    Conservative: only a number tied to a limit word counts — after a comparison
    (``"too many documents: 2000 > 100"``, ``"9000 tokens exceeds the maximum of 8000"``,
    TEI's ``"batch size 2000 > maximum allowed batch size 32"``), after a limit word
    (``"at most 100 documents"``, ``"maximum of 100"``, ``"max_client_batch_size 100"``,
    ``"limit is 100"``) or before one (``"100 is the maximum"``). The kind is ``"tokens"``
    when the message speaks of tokens, ``"documents"`` when it speaks of documents / texts /
    inputs / a batch / "too many"; otherwise ``None``. A token limit on one document or
    sequence (``"maximum context length is 8192 tokens"``, ``"document too long"``) is not a
    per-request limit — splitting cannot help — and gives ``None``, as does any message
    without such a number.
    """
    limit: int | None = None
    span = ""
    match = _COMPARISON.search(message)
    if match is not None:
        sent, stated = _to_int(match.group(1)), _to_int(match.group(2))
        if stated >= sent:  # "100 > 2000" makes no sense: trust no number in it
            return None
        limit, span = stated, match.group(0)
    if limit is None:
        for pattern in (_LIMIT_THEN_NUMBER, _NUMBER_IS_LIMIT):
            match = pattern.search(message)
            if match is not None:
                limit, span = _to_int(match.group(1)), match.group(0)
                break
    if limit is None or limit < 1:
        return None
    # The unit: first from the words around the number, then from the whole message.
    after = message[match.end() : match.end() + 12] if match is not None else ""
    for text in (span + after, message):
        if _TOKEN_WORD.search(text):
            if _PER_SEQUENCE.search(message):
                return None
            return StatedLimit("tokens", limit)
        if _COUNT_WORD.search(text):
            return StatedLimit("documents", limit)
    return None


_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "cf-ray")


def request_id(headers: Mapping[str, str]) -> str | None:
    """The server's request id, if it sent one (case-insensitive ``headers``)."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (and every 8+ character piece of it) replaced by ``***``: the
    rule of :class:`~rerank_integrations.backends.remote.redaction.Redactor`."""
    return Redactor((secret,))(text)


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

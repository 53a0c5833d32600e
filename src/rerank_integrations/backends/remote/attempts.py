"""What the outcome of one attempt means, shared by the sync and async loops of
:mod:`~rerank_integrations.backends.remote.transport`: results, wait and retry, give up, or
"too long, split". Every error built here is redacted of the endpoint's secrets and names
the endpoint by its display URL. No I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rerank_integrations.backends.remote.budgets import retry_fits
from rerank_integrations.backends.remote.document_limits import is_document_too_long
from rerank_integrations.backends.remote.formats import (
    WireFormat,
    WireRequest,
    decode_json,
    error_message,
)
from rerank_integrations.backends.remote.lifecycle import CLOSED, DEADLINE, CallToken
from rerank_integrations.backends.remote.redaction import Redactor
from rerank_integrations.backends.remote.retry import (
    RetryPolicy,
    backoff_delay,
    is_too_long,
    parse_retry_after,
    request_id,
    should_retry,
)
from rerank_integrations.errors import (
    RemoteConnectionError,
    RemoteError,
    RemoteResponseError,
    RemoteResponseTooLargeError,
    RemoteStatusError,
    RemoteTimeoutError,
    RerankerClosedError,
)

__all__ = ["Abandoned", "Attempts", "Context", "Scores", "Step", "TooLong", "stop_error"]

logger = logging.getLogger(__name__)

Scores = list[tuple[int, float]]

Step = Scores | float | Exception
"""What to do after an attempt: return the scores, sleep that many seconds and retry, or
raise the exception."""


class TooLong(Exception):
    """Internal: the server said a multi-document sub-request is too big; split it."""

    def __init__(self, error: RemoteStatusError) -> None:
        super().__init__(str(error))
        self.error = error


class Abandoned(RemoteError):
    """Internal: a sub-request stopped because its call already ended (never surfaces)."""


@dataclass(frozen=True, slots=True)
class Context:
    """What the decisions need to know about the endpoint and policy."""

    format: WireFormat
    display_url: str
    redactor: Redactor
    policy: RetryPolicy
    timeout: float
    connect_timeout: float
    max_response_bytes: int
    random: Callable[[], float]
    now: Callable[[], float]
    httpx: Any


def stop_error(context: Context, token: CallToken) -> RemoteError:
    """The error a cancelled call (or sub-request) ends with, by the token's reason."""
    if token.reason == CLOSED:
        return RerankerClosedError(
            f"the reranker was closed while the call to {context.display_url} was in flight"
        )
    if token.reason == DEADLINE:
        return RemoteTimeoutError(
            f"the call to {context.display_url} did not finish within its deadline of "
            f"{token.deadline:g} s"
        )
    return Abandoned("the call already ended")


def scrub(error: RemoteError, redactor: Redactor) -> RemoteError:
    """``error`` with its message (and a status error's request id) redacted."""
    if not redactor.active:
        return error
    if isinstance(error, RemoteStatusError):
        rid = redactor(error.request_id) if error.request_id else None
        return RemoteStatusError(error.status, redactor(error.message), rid)
    if isinstance(error, RemoteResponseTooLargeError):
        return RemoteResponseTooLargeError(redactor(str(error)), limit=error.limit)
    return type(error)(redactor(str(error)))


class Attempts:
    """The attempts of one sub-request: every decision of the retry loop, none of its I/O."""

    __slots__ = ("_context", "attempt", "last_error", "request")

    def __init__(self, context: Context, request: WireRequest) -> None:
        self._context = context
        self.request = request
        self.attempt = 0
        self.last_error: RemoteError | None = None

    def answered(self, status: int, headers: Mapping[str, str], text: str) -> Step:
        """An HTTP answer. A malformed 2xx answer is a RemoteResponseError (never retried)."""
        c = self._context
        if 200 <= status < 300:
            try:
                return c.format.parse_response(decode_json(text, c.redactor), self.request)
            except RemoteResponseError as exc:
                return scrub(exc, c.redactor)
        message = error_message(text, c.redactor)
        rid = request_id(headers)
        error = RemoteStatusError(status, message, c.redactor(rid) if rid else None)
        if is_too_long(status, message) and (
            len(self.request.documents) > 1 or is_document_too_long(status, message)
        ):
            return TooLong(error)
        return self._next(error, status, parse_retry_after(headers, c.now()))

    def too_large(self, declared: int | None) -> Step:
        """The answer is over ``max_response_bytes`` (declared so, or read past it): final."""
        c = self._context
        how = (
            f"declares {declared} bytes"
            if declared is not None
            else "was still going when reading stopped"
        )
        return RemoteResponseTooLargeError(
            f"the answer of {c.display_url} {how}, over max_response_bytes={c.max_response_bytes}",
            limit=c.max_response_bytes,
        )

    def failed(self, exc: Exception) -> Step:
        """No answer: a timeout or connection error (retried) or another transport error."""
        c = self._context
        httpx = c.httpx
        detail = c.redactor(f"{type(exc).__name__}: {exc}")
        error: RemoteError
        if isinstance(exc, httpx.TimeoutException):
            error = RemoteTimeoutError(
                f"request to {c.display_url} timed out ({detail}; timeout {c.timeout:g} s, "
                f"connect {c.connect_timeout:g} s)"
            )
        else:
            error = RemoteConnectionError(f"connection to {c.display_url} failed ({detail})")
        retryable = httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        if not isinstance(exc, retryable):
            return error
        return self._next(error, None, None)

    def timed_out(self, budget: float) -> Step:
        """The attempt used up its budget (the whole answer, not one read): retried."""
        c = self._context
        error = RemoteTimeoutError(
            f"request to {c.display_url} timed out (no complete answer within {budget:g} s; "
            f"timeout {c.timeout:g} s per attempt)"
        )
        return self._next(error, None, None)

    def wait_fits(self, delay: float, token: CallToken) -> RemoteError | None:
        """``None`` when a retry wait of ``delay`` leaves time before the call's deadline;
        otherwise the error to give up with (the last one), saying so."""
        if retry_fits(delay, token.remaining()):
            return None
        logger.info(
            "rerank request to %s: a retry in %.2f s would pass the call's deadline of %g s; "
            "giving up",
            self._context.display_url,
            delay,
            token.deadline,
        )
        assert self.last_error is not None
        return self.last_error

    def _next(self, error: RemoteError, status: int | None, retry_after: float | None) -> Step:
        c = self._context
        policy = c.policy
        self.last_error = error
        if not should_retry(
            self.attempt, policy.max_retries, status=status, transport_error=status is None
        ):
            return error
        delay = backoff_delay(self.attempt, policy, retry_after=retry_after, random=c.random)
        self.attempt += 1
        logger.info(
            "rerank request to %s failed (%s); retry %d of %d in %.2f s",
            c.display_url,
            error,
            self.attempt,
            policy.max_retries,
            delay,
        )
        return delay

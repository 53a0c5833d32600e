"""What the outcome of one attempt means, shared by the sync and async loops: results, wait
and retry, give up, or "too long, split". Every error built here is redacted of the
endpoint's secrets and names the endpoint by its display URL. No I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rerank_integrations.backends.remote.budgets import retry_fits
from rerank_integrations.backends.remote.call import Call
from rerank_integrations.backends.remote.formats import WireRequest, decode_json, error_message
from rerank_integrations.backends.remote.limits import is_document_too_long, is_too_long
from rerank_integrations.backends.remote.redaction import Redactor
from rerank_integrations.backends.remote.retry import (
    backoff_delay,
    parse_retry_after,
    request_id,
    should_retry,
)
from rerank_integrations.backends.remote.settings import Settings
from rerank_integrations.errors import (
    RemoteConnectionError,
    RemoteError,
    RemoteResponseError,
    RemoteResponseTooLargeError,
    RemoteStatusError,
    RemoteTimeoutError,
)

__all__ = ["Attempts", "Context", "Scores", "Step", "TooLong", "not_found_hint"]

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


@dataclass(frozen=True, slots=True)
class Context:
    """What every attempt's decisions read: the settings (built once), their redactor, the
    clock and jitter source, and the httpx module (for its exception classes)."""

    settings: Settings
    redactor: Redactor
    random: Callable[[], float]
    now: Callable[[], float]
    httpx: Any

    @property
    def url(self) -> str:
        """The endpoint, as messages show it (never credentials)."""
        return self.settings.endpoint.display_url


class Attempts:
    """The attempts of one sub-request: every decision of the retry loop, none of its I/O."""

    __slots__ = ("_context", "attempt", "last_error", "request")

    def __init__(self, context: Context, request: WireRequest) -> None:
        self._context = context
        self.request = request
        self.attempt = 0
        self.last_error: RemoteError | None = None

    def answered(
        self, status: int, headers: Mapping[str, str], body: bytes, encoding: str | None
    ) -> Step:
        """An HTTP answer. A malformed 2xx answer is a RemoteResponseError (never retried); an
        error status is that status's error, whatever its body holds."""
        c = self._context
        text = body.decode(encoding or "utf-8", errors="replace")
        if 200 <= status < 300:
            try:
                payload = decode_json(text, c.redactor)
                return c.settings.endpoint.format.parse_response(payload, self.request)
            except RemoteResponseError as exc:
                return exc  # parsers quote no server text; decode_json redacts its own
        return self._status(status, headers, error_message(text, c.redactor))

    def unreadable(
        self, status: int, headers: Mapping[str, str], error: RemoteResponseError
    ) -> Step:
        """An answer whose body cannot be decoded (corrupt or unasked-for encoding): a
        malformed answer for a 2xx; for an error status, that status's error (retried so)."""
        if 200 <= status < 300:
            return error  # says nothing the server sent
        return self._status(status, headers, f"(unreadable error body: {error})")

    def _status(self, status: int, headers: Mapping[str, str], message: str) -> Step:
        c = self._context
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
            f"the answer of {c.url} {how}, over max_response_bytes={c.settings.max_response_bytes}",
            limit=c.settings.max_response_bytes,
        )

    def failed(self, exc: Exception) -> Step:
        """No answer: a timeout or connection error (retried) or another transport error."""
        c = self._context
        httpx = c.httpx
        detail = c.redactor(f"{type(exc).__name__}: {exc}")
        error: RemoteError
        if isinstance(exc, httpx.TimeoutException):
            error = RemoteTimeoutError(
                f"request to {c.url} timed out ({detail}; timeout {c.settings.timeout:g} s, "
                f"connect {c.settings.connect_timeout:g} s)"
            )
        else:
            error = RemoteConnectionError(f"connection to {c.url} failed ({detail})")
        retryable = httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        if not isinstance(exc, retryable):
            return error
        return self._next(error, None, None)

    def timed_out(self, budget: float) -> Step:
        """The attempt used up its budget (the whole answer, not one read): retried."""
        c = self._context
        error = RemoteTimeoutError(
            f"request to {c.url} timed out (no complete answer within {budget:g} s; "
            f"timeout {c.settings.timeout:g} s per attempt)"
        )
        return self._next(error, None, None)

    def wait_fits(self, delay: float, call: Call) -> RemoteError | None:
        """``None`` when a retry wait of ``delay`` leaves time before the call's deadline;
        otherwise the error to give up with (the last one), saying so."""
        if retry_fits(delay, call.remaining()):
            return None
        logger.info(
            "rerank request to %s: a retry in %.2f s would pass the call's deadline of %g s; "
            "giving up",
            self._context.url,
            delay,
            call.deadline,
        )
        assert self.last_error is not None
        return self.last_error

    def _next(self, error: RemoteError, status: int | None, retry_after: float | None) -> Step:
        c = self._context
        policy = c.settings.policy
        self.last_error = error
        if not should_retry(
            self.attempt, policy.max_retries, status=status, transport_error=status is None
        ):
            return error
        delay = backoff_delay(self.attempt, policy, retry_after=retry_after, random=c.random)
        self.attempt += 1
        logger.info(
            "rerank request to %s failed (%s); retry %d of %d in %.2f s",
            c.url,
            error,
            self.attempt,
            policy.max_retries,
            delay,
        )
        return delay


def not_found_hint(status: int, url: str) -> str | None:
    """A hint for a 404 on a rerank URL whose API root ends in ``/v1``: Infinity (and other
    servers) serve ``/rerank`` at the server root, so the bare ``Not Found`` says nothing."""
    if status != 404:
        return None
    path = url.split("?", 1)[0].rstrip("/")
    if not path.endswith("/v1/rerank"):
        return None
    root = path[: -len("/v1/rerank")]
    return (
        f"no rerank endpoint at {path}; Infinity serves /rerank at the server root: use "
        f"base_url={root!r} (api_format='infinity')"
    )

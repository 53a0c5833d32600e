"""Sync sending: every sub-request of a call runs on the transport's thread pool, and the
caller waits for them, for ``close()`` and for the call's deadline, whichever comes first.

So the caller is released at the deadline or at ``close()`` whatever a server does, queued
sub-requests are cancelled, and the ones in flight are aborted (their socket is shut down,
:mod:`~rerank_integrations.backends.remote.netguard`); their outcome is discarded. Each
attempt streams its answer and stops at ``max_response_bytes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

from rerank_integrations.backends.remote.attempts import (
    Attempts,
    Context,
    Scores,
    Step,
    TooLong,
    stop_error,
)
from rerank_integrations.backends.remote.budgets import attempt_budget, declared_length, over_cap
from rerank_integrations.backends.remote.formats import WireRequest
from rerank_integrations.backends.remote.lifecycle import DEADLINE, CallToken
from rerank_integrations.backends.remote.netguard import AttemptGuard
from rerank_integrations.errors import RemoteError, RerankerClosedError

if TYPE_CHECKING:
    from rerank_integrations.backends.remote.transport import Answers, Splitter, Transport

__all__ = ["closed_client_error", "deadline_passed", "run", "send"]


def deadline_passed(context: Context, token: CallToken) -> RemoteError:
    """The call's deadline has passed: mark the token (first reason wins) and say so."""
    token.cancel(DEADLINE)
    return stop_error(context, token)


def closed_client_error(context: Context, token: CallToken) -> RemoteError:
    """httpx refused to send on a closed client: ``close()`` (or its owner) closed it."""
    if token.cancelled:
        return stop_error(context, token)
    return RerankerClosedError(
        f"the HTTP client for {context.display_url} was closed while the call was in flight"
    )


def run(transport: Transport, requests: Sequence[WireRequest], split: Splitter) -> Answers:
    token = transport.begin()
    try:
        return _run(transport, token, requests, split)
    finally:
        transport.end(token)


def _run(
    transport: Transport, token: CallToken, requests: Sequence[WireRequest], split: Splitter
) -> Answers:
    context = transport.context
    pool = transport.pool()
    answers: Answers = []
    pending: dict[Future[Scores], WireRequest] = {}

    def submit(request: WireRequest) -> None:
        try:
            future = pool.submit(send, transport, request, token)
        except RuntimeError:  # the pool was shut down by close() since we took it
            if not token.cancelled:
                raise
            raise stop_error(context, token) from None
        pending[future] = request

    try:
        for request in requests:
            submit(request)
        while pending:
            waiting: list[Future[Any]] = [*pending, token.future]
            done, _ = wait(
                waiting, timeout=max(0.0, token.remaining()), return_when=FIRST_COMPLETED
            )
            if token.cancelled:
                raise stop_error(context, token)
            if not done:
                raise deadline_passed(context, token)
            for future in done:
                request = pending.pop(future)
                try:
                    answers.append((request, future.result()))
                except TooLong as exc:
                    for part in split(request, exc.error):
                        submit(part)
    finally:
        for future in pending:
            future.cancel()
    return answers


def send(transport: Transport, request: WireRequest, token: CallToken) -> Scores:
    """One sub-request with retries, on a worker thread; raises :class:`TooLong` to ask for a
    split. Stops as soon as the call is cancelled."""
    context = transport.context
    attempts = Attempts(context, request)
    content = transport.body(request)
    while True:
        if token.cancelled:
            raise stop_error(context, token)
        budget = attempt_budget(transport.timeout, token.remaining())
        if budget <= 0:
            raise deadline_passed(context, token)
        step = _attempt(transport, content, budget, token, attempts)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, list):
            return step
        give_up = attempts.wait_fits(step, token)
        if give_up is not None:
            raise give_up
        if not transport.sleep(step, token):
            raise stop_error(context, token)


def _attempt(
    transport: Transport, content: bytes, budget: float, token: CallToken, attempts: Attempts
) -> Step:
    """One HTTP exchange under an :class:`AttemptGuard` that ``close()``/the deadline abort."""
    client = transport.sync_client()
    guard = AttemptGuard(transport.clock() + budget, transport.clock)
    unsubscribe = token.on_cancel(guard.abort)
    try:
        with guard.active():
            step = _exchange(transport, client, content, budget, guard, token, attempts)
    except RuntimeError:
        if not client.is_closed:
            raise
        step = closed_client_error(transport.context, token)
    finally:
        unsubscribe()
    return step


def _exchange(
    transport: Transport,
    client: Any,
    content: bytes,
    budget: float,
    guard: AttemptGuard,
    token: CallToken,
    attempts: Attempts,
) -> Step:
    httpx = transport.httpx
    cap = transport.max_response_bytes
    request = client.build_request(
        "POST",
        transport.url,
        content=content,
        headers=transport.headers,
        timeout=transport.timeouts(budget),
    )
    try:
        response = client.send(request, stream=True, **transport.send_options)
    except httpx.TransportError as exc:
        return _failed(transport, exc, budget, guard, token, attempts)
    try:
        declared = declared_length(response.headers)
        if declared is not None and over_cap(declared, cap):
            return attempts.too_large(declared)
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if over_cap(len(body), cap):
                return attempts.too_large(None)
            if guard.left() <= 0:  # a caller's own client: no guarded reads, check here
                return attempts.timed_out(budget)
        text = body.decode(response.encoding or "utf-8", errors="replace")
    except httpx.TransportError as exc:
        return _failed(transport, exc, budget, guard, token, attempts)
    finally:
        guard.release()
        response.close()
    return attempts.answered(response.status_code, response.headers, text)


def _failed(
    transport: Transport,
    exc: Exception,
    budget: float,
    guard: AttemptGuard,
    token: CallToken,
    attempts: Attempts,
) -> Step:
    if token.cancelled:  # aborted by close() or the deadline: say that, not "connection reset"
        return stop_error(transport.context, token)
    if guard.left() <= 0 and not isinstance(exc, transport.httpx.TimeoutException):
        return attempts.timed_out(budget)
    return attempts.failed(exc)

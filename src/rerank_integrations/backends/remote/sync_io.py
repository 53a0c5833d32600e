"""Sync sending: a call's sub-requests run on the shared thread pool while the caller waits for
them, for ``close()`` and for the call's deadline, whichever comes first. The twin of
:mod:`~rerank_integrations.backends.remote.async_io`: every decision is shared (``outcomes``,
``budgets``, ``reading``); only the sending differs. Each attempt runs under an
:class:`~rerank_integrations.backends.remote.netguard.AttemptGuard` its call owns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from rerank_integrations.backends.remote.budgets import attempt_budget, declared_length, over_cap
from rerank_integrations.backends.remote.call import Call
from rerank_integrations.backends.remote.clients import Clients
from rerank_integrations.backends.remote.formats import WireRequest
from rerank_integrations.backends.remote.netguard import AttemptGuard
from rerank_integrations.backends.remote.outcomes import Attempts, Scores, Step, TooLong
from rerank_integrations.backends.remote.reading import BodyReader
from rerank_integrations.errors import RemoteResponseError, RerankerClosedError

__all__ = ["Answers", "Splitter", "run"]

Answers = list[tuple[WireRequest, Scores]]
"""Each sent sub-request with its ``[(local index, score), ...]``."""

Splitter = Callable[[WireRequest, Any], Sequence[WireRequest]]
"""``(sub-request, its "too long" RemoteStatusError) -> the parts to send instead``."""


def run(clients: Clients, body: Callable[[WireRequest], bytes], requests: Sequence[WireRequest],
        split: Splitter) -> Answers:  # fmt: skip
    """Send every sub-request of one call (at most ``max_concurrency`` at once), splitting
    "too long" ones; bounded by the call's deadline and ``close()``."""
    call = clients.begin()
    pending: dict[Future[Scores], WireRequest] = {}
    answers: Answers = []
    try:
        pool = clients.pool()

        def submit(request: WireRequest) -> None:
            try:
                pending[pool.submit(send, clients, body(request), request, call)] = request
                call.sub_requests += 1
            except RuntimeError:  # the pool was shut down by close() since we took it
                raise (
                    call.stop_error()
                    if call.cancelled
                    else RerankerClosedError("this RemoteReranker is closed")
                ) from None

        for request in requests:
            submit(request)
        while pending:
            waiting: list[Future[Any]] = [*pending, call.future]
            done, _ = wait(
                waiting,
                timeout=max(0.0, call.remaining()),
                return_when=FIRST_COMPLETED,
            )
            if call.cancelled:
                raise call.stop_error()
            if not done:
                raise call.expire()
            for future in done:
                request = pending.pop(future)  # type: ignore[call-overload]
                try:
                    answers.append((request, future.result()))
                except TooLong as exc:
                    call.splits += 1
                    for part in split(request, exc.error):
                        submit(part)
    finally:
        clients.end(call)  # aborts what is still running, on this call's own attempts only
        for future in pending:
            future.cancel()
    return answers


def send(clients: Clients, content: bytes, request: WireRequest, call: Call) -> Scores:
    """One sub-request with retries, on a worker thread; raises :class:`TooLong` to ask for a
    split. Stops as soon as the call is cancelled."""
    attempts = Attempts(clients.context, request)
    while True:
        if call.cancelled:
            raise call.stop_error()
        budget = attempt_budget(clients.settings.timeout, call.remaining())
        if budget <= 0:
            raise call.expire()
        step = _attempt(clients, content, budget, call, attempts)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, list):
            return step
        give_up = attempts.wait_fits(step, call)
        if give_up is not None:
            raise give_up
        if not clients.sleep(step, call):
            raise call.stop_error()
        call.count_retry()


def _attempt(clients: Clients, content: bytes, budget: float, call: Call,
             attempts: Attempts) -> Step:  # fmt: skip
    """One HTTP exchange under a guard the call owns (cancelling the call aborts it)."""
    client = clients.sync_client()
    guard = AttemptGuard(clients.clock() + budget, clients.clock)
    disown = call.own(guard.abort)
    try:
        with guard.active():
            return _exchange(clients, client, content, budget, guard, call, attempts)
    except RuntimeError:  # httpx refuses to send on a closed client
        if not client.is_closed:
            raise
        return (
            call.stop_error()
            if call.cancelled
            else RerankerClosedError("the HTTP client was closed while the call was in flight")
        )
    finally:
        disown()


def _exchange(clients: Clients, client: Any, content: bytes, budget: float, guard: AttemptGuard,
              call: Call, attempts: Attempts) -> Step:  # fmt: skip
    httpx = clients.httpx
    cap = clients.settings.max_response_bytes
    request = client.build_request(
        "POST", clients.settings.endpoint.url, content=content, headers=clients.headers,
        timeout=clients.timeouts(budget),
    )  # fmt: skip
    try:
        response = client.send(request, stream=True)
    except httpx.TransportError as exc:
        return _failed(clients, exc, budget, guard, call, attempts)
    try:
        declared = declared_length(response.headers)
        if declared is not None and over_cap(declared, cap):
            return attempts.too_large(declared)
        reader = BodyReader(response.headers, cap)
        for chunk in response.iter_raw():
            if not reader.feed(chunk):
                return attempts.too_large(None)
            if guard.left() <= 0:  # a caller's own client: no guarded reads, check here
                return attempts.timed_out(budget)
        data = reader.finish()
        if data is None:
            return attempts.too_large(None)
    except RemoteResponseError as exc:
        return attempts.unreadable(response.status_code, response.headers, exc)
    except httpx.TransportError as exc:
        return _failed(clients, exc, budget, guard, call, attempts)
    finally:
        response.close()
    return attempts.answered(response.status_code, response.headers, data, response.encoding)


def _failed(clients: Clients, exc: Exception, budget: float, guard: AttemptGuard, call: Call,
            attempts: Attempts) -> Step:  # fmt: skip
    if call.cancelled:  # aborted by close() or the deadline: say that, not "connection reset"
        return call.stop_error()
    if guard.left() <= 0 and not isinstance(exc, clients.httpx.TimeoutException):
        return attempts.timed_out(budget)
    return attempts.failed(exc)

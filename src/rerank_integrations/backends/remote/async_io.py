"""Async sending: a call's sub-requests are tasks on the caller's event loop, under the loop's
semaphore (held only while a request is in flight), each attempt under ``asyncio.timeout``.
The twin of :mod:`~rerank_integrations.backends.remote.sync_io`: every decision is shared;
only the sending differs. The call cancels the tasks it made, and only those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from rerank_integrations.backends.remote.budgets import attempt_budget, declared_length, over_cap
from rerank_integrations.backends.remote.call import Call
from rerank_integrations.backends.remote.clients import Clients, LoopState
from rerank_integrations.backends.remote.formats import WireRequest
from rerank_integrations.backends.remote.outcomes import Attempts, Scores, Step, TooLong
from rerank_integrations.backends.remote.reading import BodyReader
from rerank_integrations.backends.remote.sync_io import Answers, Splitter
from rerank_integrations.errors import RemoteResponseError, RerankerClosedError

__all__ = ["run"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run(clients: Clients, body: Callable[[WireRequest], bytes],
              requests: Sequence[WireRequest], split: Splitter) -> Answers:  # fmt: skip
    """:func:`~rerank_integrations.backends.remote.sync_io.run` for an event loop."""
    state = await clients.loop_state()
    loop = asyncio.get_running_loop()
    call = clients.begin()
    woke: asyncio.Future[None] = loop.create_future()

    # close() may run in another thread: wake this loop thread-safely
    def wake() -> None:
        loop.call_soon_threadsafe(_resolve, woke)

    disown = call.own(wake)
    pending: dict[asyncio.Task[Scores], WireRequest] = {}
    answers: Answers = []

    def submit(request: WireRequest) -> None:
        task = loop.create_task(send(clients, state, body(request), request, call))
        pending[task] = request
        call.sub_requests += 1

    try:
        for request in requests:
            submit(request)
        while pending:
            waiting: list[asyncio.Future[Any]] = [*pending, woke]
            done, _ = await asyncio.wait(
                waiting, timeout=max(0.0, call.remaining()),
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            if call.cancelled:
                raise call.stop_error()
            if not done:
                raise call.expire()
            for task in done:
                if task is woke:
                    continue
                request = pending.pop(task)  # type: ignore[call-overload]
                try:
                    answers.append((request, task.result()))
                except TooLong as exc:
                    call.splits += 1
                    for part in split(request, exc.error):
                        submit(part)
    finally:
        disown()
        clients.end(call)
        woke.cancel()
        for task in pending:
            task.cancel()
        if pending:  # wait for them, and retrieve their outcomes (never "never retrieved")
            await asyncio.gather(*pending, return_exceptions=True)
    return answers


async def send(clients: Clients, state: LoopState, content: bytes, request: WireRequest,
               call: Call) -> Scores:  # fmt: skip
    """One sub-request with retries; raises :class:`TooLong` to ask for a split."""
    attempts = Attempts(clients.context, request)
    while True:
        if call.cancelled:
            raise call.stop_error()
        async with state.semaphore:
            budget = attempt_budget(clients.settings.timeout, call.remaining())
            if budget <= 0:
                raise call.expire()
            step = await _attempt(clients, state.client, content, budget, call, attempts)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, list):
            return step
        give_up = attempts.wait_fits(step, call)
        if give_up is not None:
            raise give_up
        await clients.async_sleep(step)
        call.count_retry()


async def _attempt(clients: Clients, client: Any, content: bytes, budget: float, call: Call,
                   attempts: Attempts) -> Step:  # fmt: skip
    httpx = clients.httpx
    cap = clients.settings.max_response_bytes
    try:
        request = client.build_request(
            "POST", clients.settings.endpoint.url, content=content, headers=clients.headers,
            timeout=clients.timeouts(budget),
        )  # fmt: skip
        async with asyncio.timeout(budget):
            response = await client.send(request, stream=True)
            try:
                declared = declared_length(response.headers)
                if declared is not None and over_cap(declared, cap):
                    return attempts.too_large(declared)
                reader = BodyReader(response.headers, cap)
                async for chunk in response.aiter_raw():
                    if not reader.feed(chunk):
                        return attempts.too_large(None)
                data = reader.finish()
                if data is None:
                    return attempts.too_large(None)
            except RemoteResponseError as exc:
                return attempts.unreadable(response.status_code, response.headers, exc)
            finally:
                await response.aclose()
    except TimeoutError:
        return attempts.timed_out(budget)
    except httpx.TransportError as exc:
        return call.stop_error() if call.cancelled else attempts.failed(exc)
    except RuntimeError:  # httpx refuses to send on a closed client
        if not client.is_closed:
            raise
        return (
            call.stop_error()
            if call.cancelled
            else RerankerClosedError("the HTTP client was closed while the call was in flight")
        )
    return attempts.answered(response.status_code, response.headers, data, response.encoding)

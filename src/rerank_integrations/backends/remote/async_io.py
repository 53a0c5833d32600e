"""Async sending: every sub-request of a call is a task on the caller's event loop, under the
loop's semaphore (held only while a request is in flight, not while waiting to retry); the
call waits for them, for ``close()`` and for its deadline, whichever comes first, then
cancels what is left. Each attempt runs under ``asyncio.timeout`` (the whole exchange, not
one read) and streams its answer up to ``max_response_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rerank_integrations.backends.remote.attempts import (
    Attempts,
    Scores,
    Step,
    TooLong,
    stop_error,
)
from rerank_integrations.backends.remote.budgets import attempt_budget, declared_length, over_cap
from rerank_integrations.backends.remote.formats import WireRequest
from rerank_integrations.backends.remote.lifecycle import CallToken
from rerank_integrations.backends.remote.sync_io import closed_client_error, deadline_passed

if TYPE_CHECKING:
    from rerank_integrations.backends.remote.transport import (
        Answers,
        LoopState,
        Splitter,
        Transport,
    )

__all__ = ["run", "send"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run(transport: Transport, requests: Sequence[WireRequest], split: Splitter) -> Answers:
    state = await transport.loop_state()
    loop = asyncio.get_running_loop()
    token = transport.begin()
    woke: asyncio.Future[None] = loop.create_future()

    def wake() -> None:  # from any thread: close() may be called elsewhere
        loop.call_soon_threadsafe(_resolve, woke)

    unsubscribe = token.on_cancel(wake)
    context = transport.context
    answers: Answers = []
    pending: dict[asyncio.Task[Scores], WireRequest] = {}

    def submit(request: WireRequest) -> None:
        pending[loop.create_task(send(transport, state, request, token))] = request

    try:
        for request in requests:
            submit(request)
        while pending:
            waiting: list[asyncio.Future[Any]] = [*pending, woke]
            done, _ = await asyncio.wait(
                waiting, timeout=max(0.0, token.remaining()), return_when=asyncio.FIRST_COMPLETED
            )
            if token.cancelled:
                raise stop_error(context, token)
            if not done:
                raise deadline_passed(context, token)
            for task in done:
                if task is woke:
                    continue
                request = pending.pop(task)  # type: ignore[call-overload]
                try:
                    answers.append((request, task.result()))
                except TooLong as exc:
                    for part in split(request, exc.error):
                        submit(part)
    finally:
        unsubscribe()
        transport.end(token)
        woke.cancel()
        for task in pending:
            task.cancel()
        if pending:  # wait for them, and retrieve their outcomes (never "never retrieved")
            await asyncio.gather(*pending, return_exceptions=True)
    return answers


async def send(
    transport: Transport, state: LoopState, request: WireRequest, token: CallToken
) -> Scores:
    """One sub-request with retries; raises :class:`TooLong` to ask for a split."""
    context = transport.context
    attempts = Attempts(context, request)
    content = transport.body(request)
    while True:
        if token.cancelled:
            raise stop_error(context, token)
        async with state.semaphore:
            budget = attempt_budget(transport.timeout, token.remaining())
            if budget <= 0:
                raise deadline_passed(context, token)
            step = await _attempt(transport, state.client, content, budget, token, attempts)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, list):
            return step
        give_up = attempts.wait_fits(step, token)
        if give_up is not None:
            raise give_up
        await transport.async_sleep(step)


async def _attempt(
    transport: Transport,
    client: Any,
    content: bytes,
    budget: float,
    token: CallToken,
    attempts: Attempts,
) -> Step:
    httpx = transport.httpx
    cap = transport.max_response_bytes
    try:
        request = client.build_request(
            "POST",
            transport.url,
            content=content,
            headers=transport.headers,
            timeout=transport.timeouts(budget),
        )
        async with asyncio.timeout(budget):
            response = await client.send(request, stream=True, **transport.send_options)
            try:
                declared = declared_length(response.headers)
                if declared is not None and over_cap(declared, cap):
                    return attempts.too_large(declared)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if over_cap(len(body), cap):
                        return attempts.too_large(None)
                text = body.decode(response.encoding or "utf-8", errors="replace")
            finally:
                await response.aclose()
    except TimeoutError:
        return attempts.timed_out(budget)
    except httpx.TransportError as exc:
        if token.cancelled:
            return stop_error(transport.context, token)
        return attempts.failed(exc)
    except RuntimeError:
        if not client.is_closed:
            raise
        return closed_client_error(transport.context, token)
    return attempts.answered(response.status_code, response.headers, text)

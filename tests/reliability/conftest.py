"""Fixtures of the reliability tier: a misbehaving loopback server per test
(``helpers.hostile_server``), and ``build(**kwargs)``: a RemoteReranker pointed at it. Every
scenario runs under ``helpers.bounded.bounded`` (or a subprocess timeout), so a regression
fails instead of hanging the run. Time bounds allow ``SLACK`` seconds for a loaded 2-core
machine (see each test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.hostile_server import HostileServer

from rerank_integrations.backends.remote import RemoteReranker

Build = Callable[..., RemoteReranker]


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def build(hostile: HostileServer) -> Iterator[Build]:
    made: list[RemoteReranker] = []

    def make(**kwargs: Any) -> RemoteReranker:
        kwargs.setdefault("base_url", hostile.url())
        reranker = RemoteReranker(kwargs.pop("model", "m"), **kwargs)
        made.append(reranker)
        return reranker

    yield make
    for reranker in made:
        reranker.close()

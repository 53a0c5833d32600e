"""The benchmark entry points configure logging for a command-line run (levels of the
``rerank_integrations``/``transformers``/... loggers, root handlers). The smoke tests call them
in-process (some from module-scoped fixtures), so every module here gives the logging state
back as it found it: a later test that reads this package's warnings (caplog) must not find
them silenced."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

_NAMES = ("", "benchmarks", "transformers", "sentence_transformers", "httpx", "rerank_integrations")


@pytest.fixture(autouse=True, scope="module")
def _restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NAMES]
    saved = [(lg, lg.level, list(lg.handlers)) for lg in loggers]
    yield
    for lg, level, handlers in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers

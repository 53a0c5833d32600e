"""The pure budget decisions (``budgets``): deadline arithmetic and the size cap, from tables."""

from __future__ import annotations

import pytest

from rerank_integrations.backends.remote.budgets import (
    DEFAULT_MAX_RESPONSE_BYTES,
    attempt_budget,
    attempt_timeouts,
    declared_length,
    default_deadline,
    over_cap,
    retry_fits,
)


@pytest.mark.parametrize(
    ("timeout", "retries", "wait", "deadline"),
    [(60, 2, 60, 300), (1, 0, 60, 1), (5, 2, 60, 135), (0.5, 3, 10, 32)],
)
def test_default_deadline(timeout: float, retries: int, wait: float, deadline: float) -> None:
    assert default_deadline(timeout, retries, wait) == deadline


@pytest.mark.parametrize(
    ("timeout", "remaining", "budget"), [(60, 300, 60), (60, 12.5, 12.5), (1, 0, 0), (1, -2, -2)]
)
def test_attempt_budget(timeout: float, remaining: float, budget: float) -> None:
    assert attempt_budget(timeout, remaining) == budget


def test_attempt_timeouts_never_exceed_the_budget() -> None:
    assert attempt_timeouts(2.0, 5.0) == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert attempt_timeouts(30.0, 5.0)["connect"] == 5.0
    assert attempt_timeouts(-1.0, 5.0) == {"connect": 0.0, "read": 0.0, "write": 0.0, "pool": 0.0}


@pytest.mark.parametrize(
    ("delay", "remaining", "fits"), [(0.5, 1.0, True), (1.0, 1.0, False), (60, 10, False)]
)
def test_retry_fits(delay: float, remaining: float, fits: bool) -> None:
    assert retry_fits(delay, remaining) is fits


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ({}, None),
        ({"content-length": "123"}, 123),
        ({"content-length": " 77 "}, 77),
        ({"content-length": "-1"}, None),
        ({"content-length": "12, 12"}, None),
        ({"content-length": "\u00b2"}, None),
        ({"content-length": ""}, None),
    ],
)
def test_declared_length(headers: dict[str, str], length: int | None) -> None:
    assert declared_length(headers) == length


def test_cap() -> None:
    assert DEFAULT_MAX_RESPONSE_BYTES == 16 * 1024 * 1024
    assert not over_cap(10, 10) and over_cap(11, 10)

"""Pure budget decisions of the remote backend, shared by the sync and async loops: a call's
deadline (:func:`default_deadline`), each attempt's share of it (:func:`attempt_budget`,
:func:`attempt_timeouts`), whether a retry wait still fits (:func:`retry_fits`), and the
response size cap (:func:`declared_length`, :func:`over_cap`). The rules are stated once, in
docs/reliability.md "What a call's deadline bounds" and "Answer size".
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_SECONDS",
    "attempt_budget",
    "attempt_timeouts",
    "declared_length",
    "default_deadline",
    "over_cap",
    "retry_fits",
]

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""16 MiB: a rerank answer is about 50 bytes per document, so this is room for ~300,000
results; a bigger answer is a misbehaving server."""


MAX_SECONDS = 1_000_000.0
"""The longest ``timeout``, ``connect_timeout`` or ``deadline`` accepted (about 11.6 days):
anything longer is a typo, and the operating system's waits overflow near 2**33 s."""


def default_deadline(timeout: float, max_retries: int, max_retry_wait: float) -> float:
    """The call deadline used when none is given: ``(max_retries + 1) * timeout`` for the
    attempts plus ``max_retries * max_retry_wait`` for the waits between them, at most
    :data:`MAX_SECONDS`."""
    return min(MAX_SECONDS, (max_retries + 1) * timeout + max_retries * max_retry_wait)


def attempt_budget(timeout: float, remaining: float) -> float:
    """Seconds one attempt may take: ``timeout``, or less when the deadline is nearer.
    Zero or less means no attempt can start."""
    return min(timeout, remaining)


def attempt_timeouts(budget: float, connect_timeout: float) -> dict[str, float]:
    """httpx's four timeouts for an attempt of ``budget`` seconds: none longer than the budget
    (``connect`` also at most ``connect_timeout``)."""
    budget = max(budget, 0.0)
    return {
        "connect": min(connect_timeout, budget),
        "read": budget,
        "write": budget,
        "pool": budget,
    }


def retry_fits(delay: float, remaining: float) -> bool:
    """Whether waiting ``delay`` seconds still leaves time for another attempt."""
    return delay < remaining


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The ``Content-Length`` a server declared, or ``None`` when absent or malformed (a
    malformed one is left to the HTTP layer; the cap still applies while reading)."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def over_cap(size: int, cap: int) -> bool:
    """Whether ``size`` bytes are more than the cap allows."""
    return size > cap

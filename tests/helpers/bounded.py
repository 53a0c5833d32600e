"""Run a scenario with a hard time limit, so that a regression (a hang, a deadlock) fails the
test instead of blocking the run: :func:`bounded` runs a callable in a daemon thread, joins it
with a timeout, and reports how long it took and what it returned or raised."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0

    def raised(self, kind: type[BaseException]) -> BaseException:
        """The exception, asserted to be a ``kind``."""
        assert isinstance(self.error, kind), f"expected {kind.__name__}, got {self.error!r}"
        return self.error


def bounded(fn: Callable[[], Any], limit: float, what: str = "the scenario") -> Outcome:
    """Run ``fn()`` in a daemon thread; fail the test if it is not done within ``limit`` s."""
    outcome = Outcome()
    start = time.perf_counter()

    def target() -> None:
        try:
            outcome.value = fn()
        except BaseException as exc:  # reported to the test, never swallowed
            outcome.error = exc
        finally:
            outcome.seconds = time.perf_counter() - start

    thread = threading.Thread(target=target, daemon=True, name="bounded-scenario")
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"{what} did not finish within {limit:g} s (hang or deadlock)")
    return outcome

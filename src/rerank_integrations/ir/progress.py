"""A one-line progress bar on stderr: queries done, documents per second, ETA.

Shown only when the stream is a terminal and the user did not ask for quiet
(:func:`should_show`); redrawn at most every ``min_interval`` seconds with a carriage return,
finished with a newline. :func:`render_progress` is the pure formatting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar", "format_duration", "render_progress", "should_show"]


def should_show(stream: TextIO, *, quiet: bool) -> bool:
    """Whether to draw a bar on ``stream``: a terminal, and not ``quiet``."""
    if quiet:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def format_duration(seconds: float) -> str:
    """``"m:ss"`` or ``"h:mm:ss"``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_progress(
    done: int, total: int, docs: int, elapsed: float, *, done_before: int = 0, width: int = 24
) -> str:
    """``"  12/50 queries [######------]  24% | 153.2 docs/s | ETA 0:41"``.

    ``done`` counts every finished query (``done_before`` of them were finished before this
    process started, e.g. kept by a resumed run); ``docs`` and ``elapsed`` cover this process
    only, so the rate and the ETA are this process's own.
    """
    fraction = done / total if total else 1.0
    filled = min(width, int(fraction * width))
    bar = "#" * filled + "-" * (width - filled)
    rate = docs / elapsed if elapsed > 0 else 0.0
    new = done - done_before
    if done >= total:
        eta = f"done in {format_duration(elapsed)}"
    elif new > 0 and elapsed > 0:
        eta = f"ETA {format_duration(elapsed / new * (total - done))}"
    else:
        eta = "ETA ?"
    digits = len(str(total))
    return (
        f"{done:>{digits}}/{total} queries [{bar}] {100 * fraction:3.0f}% "
        f"| {rate:.1f} docs/s | {eta}"
    )


class ProgressBar:
    """Draws :func:`render_progress` on ``stream`` when ``enabled``; a no-op otherwise."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool,
        done_before: int = 0,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = done_before
        self.docs = 0
        self._done_before = done_before
        self._stream = stream
        self._enabled = enabled
        self._interval = min_interval
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._width = 0
        self._drawn: tuple[int, int] | None = None
        self._draw(force=True)

    def update(self, *, queries: int = 1, docs: int = 0) -> None:
        """Count ``queries`` more finished queries with ``docs`` documents."""
        self.done += queries
        self.docs += docs
        self._draw(force=self.done >= self.total)

    def close(self) -> None:
        """Draw the final state (unless it is on screen already) and end the line."""
        if self._enabled:
            if self._drawn != (self.done, self.docs):
                self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._enabled = False

    def _draw(self, *, force: bool) -> None:
        if not self._enabled:
            return
        now = self._clock()
        if not force and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        self._drawn = (self.done, self.docs)
        line = render_progress(
            self.done, self.total, self.docs, now - self._start, done_before=self._done_before
        )
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self._stream.write("\r" + line + pad)
        self._stream.flush()

"""Per-process state after ``os.fork()``: one registry for both backends.

After a fork the child has none of the parent's threads, so a lock may be held forever, a
thread pool has no workers and connections are shared with the parent. An object registered
with :func:`reset_after_fork` (held weakly) has its ``_after_fork_in_child()`` called in every
forked child (``os.register_at_fork``): the local engine starts a new worker there, the remote
transport drops its clients and pool. What must not be finalised in the child (a parent event
loop's async client) is kept alive there by :func:`keep_in_child`.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "keep_in_child", "reset_after_fork"]

logger = logging.getLogger(__name__)


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_KEPT_IN_CHILD: list[object] = []


def reset_after_fork(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every forked child (``obj`` is held weakly)."""
    _FORK_AWARE.add(obj)


def keep_in_child(obj: object) -> None:
    """Keep a parent's object alive in a forked child so that no finalizer of it runs there
    (e.g. an async client whose finalizer would schedule work on the parent's event loop)."""
    _KEPT_IN_CHILD.append(obj)


def _after_fork_in_child() -> None:
    for obj in list(_FORK_AWARE):
        try:
            obj._after_fork_in_child()
        except Exception:  # the child must come up; say what could not be reset
            logger.warning("rerank: resetting %r after fork failed", obj, exc_info=True)


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""How an adapter holds its reranker: a ready one, or the settings that build one lazily.

Shared by the LangChain, LlamaIndex and Haystack adapters (one lifecycle for all three):
:func:`build_reranker` turns "a Reranker XOR plain settings" into a Reranker,
:class:`LazyReranker` defers that to the first use (so constructing or deserialising an adapter
loads nothing), and :func:`refresh_reranker` / :func:`refresh_from_fields` swap the holder when
the adapter's settings were reassigned. Framework-free.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rerank_integrations.base import Reranker
from rerank_integrations.errors import RerankInputError, RerankTypeError

__all__ = [
    "RERANKER_SETTING_FIELDS",
    "LazyReranker",
    "build_reranker",
    "refresh_from_fields",
    "refresh_reranker",
]


def build_reranker(
    reranker: Reranker | None = None,
    *,
    backend: str | None = None,
    **settings: Any,
) -> Reranker:
    """Return ``reranker``, or build one from plain settings.

    Exactly one of ``reranker`` and settings: passing a reranker together with any non-``None``
    setting (``backend`` included) raises :class:`RerankInputError` — an adapter never
    silently ignores a setting. ``backend`` is ``"local"``, ``"remote"`` or a
    ``"module:Class"`` path (see :mod:`rerank_integrations.config`); settings whose value is
    ``None`` are left out so the backend's defaults apply.
    """
    given = {k: v for k, v in settings.items() if v is not None}
    if reranker is not None:
        if not isinstance(reranker, Reranker):
            raise RerankTypeError(
                "reranker", f"must be a Reranker or None, got {type(reranker).__name__}"
            )
        if backend is not None or given:
            names = sorted([*given, *(["backend"] if backend is not None else [])])
            raise RerankInputError(
                "reranker", f"pass either a Reranker or plain settings, not both (got {names})"
            )
        return reranker
    if backend is None:
        raise RerankInputError("backend", "no reranker given: set backend ('local' or 'remote')")
    from rerank_integrations.config import resolve_backend

    return resolve_backend(backend)(**given)


class LazyReranker:
    """Holds a reranker, or what builds one on first :meth:`get` (thread-safe).

    The source is exactly one of: a ready ``reranker`` (the caller's: never closed here), a
    ``config`` dict (:meth:`Reranker.to_config` output) or ``backend`` plus settings. Every
    adapter (LangChain, LlamaIndex, Haystack) keeps one per instance (never shared), so
    constructing or deserialising an adapter does no model loading or network work;
    :meth:`get` builds at most once until :meth:`close`, and :meth:`aget` builds in a worker
    thread (never on the event loop). Calls made through :meth:`using` / :meth:`ausing` are
    counted, so a holder :meth:`retire`-d while a call runs closes its reranker when the last
    call ends (an adapter whose settings were reassigned never leaks the old reranker).
    """

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        backend: str | None = None,
        **settings: Any,
    ) -> None:
        if reranker is not None:
            self._reranker: Reranker | None = build_reranker(reranker, backend=backend, **settings)
        elif config is None and backend is None:
            raise RerankInputError(
                "backend", "no reranker given: set backend ('local' or 'remote')"
            )
        else:
            self._reranker = None
        self._given = reranker
        self._config = None if config is None else dict(config)
        self._backend = backend
        self._settings = settings
        self._lock = threading.Lock()
        self._in_flight = 0
        self._retired = False
        self.owner_id: int | None = None  # id() of the adapter that made it (see refresh_*)

    def same_source(
        self,
        reranker: Reranker | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        backend: str | None = None,
        **settings: Any,
    ) -> bool:
        """Whether this holder was made from exactly this reranker / config / settings."""
        return (
            self._given is reranker
            and self._config == (None if config is None else dict(config))
            and self._backend == backend
            and self._settings == settings
        )

    @property
    def built(self) -> bool:
        """Whether the reranker exists (given, or built by an earlier :meth:`get`)."""
        return self._reranker is not None

    def get(self) -> Reranker:
        """The reranker, built from the config/settings on the first call."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    if self._config is not None:
                        self._reranker = Reranker.from_config(dict(self._config))
                    else:
                        self._reranker = build_reranker(backend=self._backend, **self._settings)
        return self._reranker

    async def aget(self) -> Reranker:
        """:meth:`get` for async code: a build (a model load, seconds) runs in a worker thread
        so the event loop keeps serving other tasks; a built reranker is returned at once."""
        if self._reranker is not None:
            return self._reranker
        return await asyncio.to_thread(self.get)

    @property
    def in_flight(self) -> int:
        """How many calls made through :meth:`using` / :meth:`ausing` are running now."""
        return self._in_flight

    @property
    def retired(self) -> bool:
        """Whether :meth:`retire` was called (the adapter moved on to another holder)."""
        return self._retired

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _leave(self) -> Reranker | None:
        """Count a call out; returns the reranker to close when retired and now idle."""
        with self._lock:
            self._in_flight -= 1
            if self._retired and self._in_flight == 0 and self._given is None:
                built, self._reranker = self._reranker, None
                return built
        return None

    def using(self) -> _InUse:
        """``with holder.using() as reranker:`` — the reranker (built if needed), counted as in
        use until the block ends."""
        return _InUse(self)

    def ausing(self) -> _InUse:
        """``async with holder.ausing() as reranker:`` — built off the loop, counted in use."""
        return _InUse(self)

    def retire(self) -> None:
        """The adapter no longer uses this holder: close what it built once no call uses it
        (at once when idle). A copy still holding it would build a fresh one on its next use."""
        with self._lock:
            self._retired = True
            idle = self._in_flight == 0
        if idle:
            self.close()

    def _take_built(self) -> Reranker | None:
        """Detach a reranker this holder built (a later :meth:`get` builds a fresh one)."""
        if self._given is not None:
            return None
        with self._lock:
            built, self._reranker = self._reranker, None
        return built

    def close(self) -> None:
        """Close the reranker if this holder built it (a given one is the caller's)."""
        built = self._take_built()
        if built is not None:
            built.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        built = self._take_built()
        if built is not None:
            await built.aclose()


class _InUse:
    """The context manager of :meth:`LazyReranker.using` / :meth:`LazyReranker.ausing`."""

    def __init__(self, holder: LazyReranker) -> None:
        self._holder = holder

    def __enter__(self) -> Reranker:
        self._holder._enter()
        try:
            return self._holder.get()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        built = self._holder._leave()
        if built is not None:
            built.close()

    async def __aenter__(self) -> Reranker:
        self._holder._enter()
        try:
            return await self._holder.aget()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        built = self._holder._leave()
        if built is not None:
            await built.aclose()


RERANKER_SETTING_FIELDS = ("model", "base_url", "api_format", "model_format", "device")
"""Backend settings an adapter exposes as its own fields (the rest go in ``reranker_kwargs``)."""


def refresh_from_fields(
    holder: LazyReranker | None, adapter: Any, *, api_key: str | None
) -> LazyReranker:
    """:func:`refresh_reranker` for an adapter whose fields are ``reranker``, ``backend``,
    :data:`RERANKER_SETTING_FIELDS` and ``reranker_kwargs`` (LangChain, LlamaIndex).

    ``backend`` defaults to ``"local"`` when no reranker is given. With a reranker, any setting
    is an error (:func:`build_reranker` names the keys, never the values).
    """
    backend = adapter.backend
    if backend is None and adapter.reranker is None:
        backend = "local"
    settings: dict[str, Any] = {} if api_key is None else {"api_key": api_key}
    settings.update({name: getattr(adapter, name) for name in RERANKER_SETTING_FIELDS})
    settings.update(adapter.reranker_kwargs)
    if isinstance(adapter.reranker, Mapping):  # a to_config() dict (deserialised): built lazily
        given = sorted(k for k, v in settings.items() if v is not None and k != "api_key")
        if adapter.backend is not None or given:
            names = sorted([*given, *(["backend"] if adapter.backend is not None else [])])
            raise RerankInputError(
                "reranker", f"pass either a Reranker or plain settings, not both (got {names})"
            )
        key = {} if api_key is None else {"api_key": api_key}  # a config never holds the key
        return refresh_reranker(holder, config={**adapter.reranker, **key}, owner=adapter)
    return refresh_reranker(holder, adapter.reranker, backend=backend, owner=adapter, **settings)


def refresh_reranker(
    holder: LazyReranker | None,
    reranker: Reranker | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    backend: str | None = None,
    owner: object = None,
    **settings: Any,
) -> LazyReranker:
    """``holder`` when it matches the current reranker/settings, else a new :class:`LazyReranker`.

    Adapters are pydantic models whose fields can be reassigned or ``model_copy(update=...)``-ed;
    calling this on each use means a changed ``model`` (say) is never silently shadowed by a
    reranker built from the old settings. The old holder is retired (:meth:`LazyReranker.retire`)
    when it belongs to ``owner`` (the adapter calling): what it built is closed as soon as no
    call uses it, so dropped rerankers (their model memory and worker threads) do not
    accumulate. A holder shared with a copy (``model_copy`` copies private attributes) is left to
    its owner, and a retired one is never reused.
    """
    if (
        holder is not None
        and not holder.retired
        and holder.same_source(reranker, config=config, backend=backend, **settings)
    ):
        return holder
    fresh = LazyReranker(reranker, config=config, backend=backend, **settings)
    fresh.owner_id = None if owner is None else id(owner)
    if holder is not None and holder.owner_id == fresh.owner_id:
        holder.retire()
    return fresh

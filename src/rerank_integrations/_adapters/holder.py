"""How an adapter holds its reranker: a ready one, a ``to_config()`` dict or plain settings.

One lifecycle for the three adapters: :func:`reranker_source` ("a Reranker, or its
``to_config()`` dict, or plain settings — not both"), :class:`LazyReranker` (built on first use,
so constructing or deserialising an adapter loads nothing) and :func:`refresh_holder` (a new
holder when the settings were reassigned; the replaced reranker is closed once idle).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from rerank_integrations.base import Reranker, resolve_backend
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.trust import check_key_variable
from rerank_integrations.validation import str_value, unknown_name


def reranker_source(
    reranker: object,
    settings: Mapping[str, object],
    *,
    key: str | None = None,
    field: str = "reranker",
) -> Reranker | dict[str, Any] | None:
    """What an adapter reranks with: ``reranker`` (an object, or a ``to_config()`` dict that
    must name its ``backend``), or ``None`` when the plain ``settings`` build it.

    A reranker and any non-``None`` setting (``backend`` included) are exclusive: a
    :class:`RerankInputError` naming ``field`` lists the settings' names (never their values),
    so a setting is never silently ignored. ``key`` (an API key) joins a ``to_config()`` dict (a
    config never holds one) and conflicts with a reranker object.
    """
    if reranker is None:
        return None
    if not isinstance(reranker, Reranker | Mapping):
        kind = type(reranker).__name__
        raise RerankTypeError(
            field, f"must be a Reranker, its to_config() dict or None, not {kind}"
        )
    names = [name for name, value in settings.items() if value is not None]
    if isinstance(reranker, Reranker) and key is not None:
        names.append("api_key")
    if names:
        raise RerankInputError(
            field, f"pass either a Reranker or plain settings, not both (got {sorted(names)})"
        )
    if isinstance(reranker, Reranker):
        return reranker
    str_value(f"{field}['backend']", reranker.get("backend"))
    return {**reranker, **({} if key is None else {"api_key": key})}


def build_reranker(
    reranker: Reranker | Mapping[str, Any] | None = None,
    *,
    backend: str | None = None,
    **settings: Any,
) -> Reranker:
    """Return ``reranker``, build it from its ``to_config()`` dict, or build one from plain
    settings (:func:`reranker_source`'s rule). ``backend`` is ``"local"``, ``"remote"`` or a
    ``"module:Class"`` path; settings whose value is ``None`` are left out (the backend's
    defaults apply).

    A config dict is built as trusted: the adapter checked it where it came in (its
    constructor, :func:`~rerank_integrations._adapters.policy.check_adapter_settings`), or it
    is the ``to_config()`` of a reranker built in code (a pickled or copied adapter), and it
    may hold the adapter's own ``api_key``."""
    given = reranker_source(reranker, {"backend": backend, **settings})
    if given is not None:
        return given if isinstance(given, Reranker) else Reranker.from_config(given, trusted=True)
    if backend is None:
        raise RerankInputError("backend", "no reranker given: set backend ('local' or 'remote')")
    from rerank_integrations.config import resolve_backend

    return resolve_backend(backend)(**{k: v for k, v in settings.items() if v is not None})


class LazyReranker:
    """Holds a reranker, or what builds one on first :meth:`get` (thread-safe).

    The source is exactly one of: a ready ``reranker`` (the caller's: never closed here), a
    ``config`` dict (:meth:`Reranker.to_config` output) or ``backend`` plus settings. Each adapter
    instance has its own. :meth:`get` builds at most once until :meth:`close` (after which the
    next :meth:`get` builds a fresh one); :meth:`aget` builds in a worker thread. Calls made
    through :meth:`using` / :meth:`ausing` are counted, so a holder :meth:`retire`-d while a call
    runs closes its reranker when the last call ends.
    """

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        backend: str | None = None,
        **settings: Any,
    ) -> None:
        if reranker is None and config is None and backend is None:
            raise RerankInputError(
                "backend", "no reranker given: set backend ('local' or 'remote')"
            )
        self._reranker = (
            None if reranker is None else build_reranker(reranker, backend=backend, **settings)
        )
        self.source = (reranker, None if config is None else dict(config), backend, settings)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.retired = False  # set by retire(): the adapter moved on to another holder
        self.owner_id: int | None = None  # id() of the adapter that made it (refresh_reranker)

    @property
    def built(self) -> bool:
        """Whether the reranker exists (given, or built by an earlier :meth:`get`)."""
        return self._reranker is not None

    def get(self) -> Reranker:
        """The reranker, built from the config/settings on the first call."""
        if self._reranker is None:
            _, config, backend, settings = self.source
            with self._lock:
                if self._reranker is None:
                    self._reranker = build_reranker(config, backend=backend, **settings)
        return self._reranker

    async def aget(self) -> Reranker:
        """:meth:`get` for async code: a build (a model load, seconds) runs in a worker thread
        so the event loop keeps serving other tasks; a built reranker is returned at once."""
        if self._reranker is not None:
            return self._reranker
        return await asyncio.to_thread(self.get)

    def _leave(self) -> Reranker | None:
        """Count a call out; returns the reranker to close when retired and now idle."""
        with self._lock:
            self._in_flight -= 1
            if self.retired and self._in_flight == 0 and self.source[0] is None:
                built, self._reranker = self._reranker, None
                return built
        return None

    @contextmanager
    def using(self) -> Iterator[Reranker]:
        """``with holder.using() as reranker:`` — the reranker (built if needed), counted as in
        use until the block ends."""
        with self._lock:
            self._in_flight += 1
        try:
            yield self.get()
        finally:
            built = self._leave()
            if built is not None:
                built.close()

    @asynccontextmanager
    async def ausing(self) -> AsyncIterator[Reranker]:
        """``async with holder.ausing() as reranker:`` — built off the loop, counted in use."""
        with self._lock:
            self._in_flight += 1
        try:
            yield await self.aget()
        finally:
            built = self._leave()
            if built is not None:
                await built.aclose()

    def retire(self) -> None:
        """The adapter no longer uses this holder: close what it built once no call uses it
        (at once when idle). A copy still holding it would build a fresh one on its next use."""
        with self._lock:
            self.retired = True
            idle = self._in_flight == 0
        if idle:
            self.close()

    def _take_built(self) -> Reranker | None:
        """Detach a reranker this holder built (a later :meth:`get` builds a fresh one)."""
        if self.source[0] is not None:
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

    Adapters call this on each use, so a reassigned setting (or a ``model_copy(update=...)``) is
    never shadowed by a reranker built from the old ones. The old holder is retired when it
    belongs to ``owner`` (the adapter calling): what it built is closed once no call uses it. A
    holder shared with a copy (``model_copy`` copies private attributes) is left to its owner,
    and a retired one is never reused.
    """
    if holder is not None and _reusable(holder, reranker, config, backend, settings):
        return holder
    fresh = LazyReranker(reranker, config=config, backend=backend, **settings)
    fresh.owner_id = None if owner is None else id(owner)
    if holder is not None and holder.owner_id == fresh.owner_id:
        holder.retire()
    return fresh


def _reusable(
    holder: LazyReranker,
    reranker: Reranker | None,
    config: Mapping[str, Any] | None,
    backend: str | None,
    settings: Mapping[str, Any],
) -> bool:
    """Whether ``holder`` was made from exactly this source (the same reranker object, not an
    equal one; equal config/backend/settings) and is not retired."""
    source = (None if config is None else dict(config), backend, settings)
    return not holder.retired and holder.source[0] is reranker and holder.source[1:] == source


def refresh_holder(
    holder: LazyReranker | None,
    owner: object,
    reranker: object,
    settings: Mapping[str, Any],
    *,
    key: str | None = None,
) -> LazyReranker:
    """The holder for an adapter's current ``reranker`` (an object or a ``to_config()`` dict) or
    plain ``settings`` (which include ``backend``: ``"local"`` when ``None``), checked by
    :func:`reranker_source`; ``key`` is the API key. See :func:`refresh_reranker`.

    Plain settings serialise with the adapter, so whoever set them they never choose the key's
    variable (:func:`~rerank_integrations.trust.check_key_variable`, on the settings as built:
    ``reranker_kwargs`` over ``base_url``/``api_format``), checked on every use so that a
    reassigned ``base_url`` is caught before any request."""
    source = reranker_source(reranker, settings, key=key)
    if isinstance(source, dict):
        return refresh_reranker(holder, config=source, owner=owner)
    if source is not None:
        return refresh_reranker(holder, source, owner=owner)
    check_key_variable(settings, field="reranker_kwargs")
    plain = {**({} if key is None else {"api_key": key}), **settings}
    backend = plain.pop("backend", None) or "local"
    if holder is None or not _reusable(holder, None, None, backend, plain):  # not per call
        check_backend_arguments(backend, [name for name, v in plain.items() if v is not None])
    return refresh_reranker(holder, backend=backend, owner=owner, **plain)


def load_backend(backend: str, *, field: str = "backend") -> type[Reranker]:
    """The backend's class (its module imported now): a missing module or class, or one that is
    not a ``Reranker``, is a :class:`RerankInputError` naming ``field`` (not a late failure)."""
    try:
        return resolve_backend(backend)
    except RerankInputError as exc:
        raise RerankInputError(field, str(exc).removeprefix(f"{exc.field}: ")) from None
    except (ImportError, AttributeError) as exc:
        raise RerankInputError(field, f"cannot load {backend!r}: {type(exc).__name__}") from None


ADAPTER_SETTINGS = ("model", "base_url", "api_key", "api_format", "model_format", "device")
"""Backend arguments an adapter takes as fields of its own (the rest: ``reranker_kwargs``)."""


def check_backend_arguments(backend: str, names: Sequence[str]) -> None:
    """Every name an adapter will pass to the backend's constructor is one it takes: checked
    when the adapter is made (and on reassignment), not at the first query as a bare
    TypeError. A name that is not an argument is a RerankTypeError naming the adapter's field
    (``reranker_kwargs['max_retrys']``, or ``model_format`` for the remote backend) and
    suggesting the closest argument. A backend whose constructor takes ``**kwargs`` is not
    checked."""
    cls = load_backend(backend)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n != "self" and not n.startswith("_")]
    for name in names:
        if name not in params:
            field = name if name in ADAPTER_SETTINGS else f"reranker_kwargs[{name!r}]"
            raise unknown_name(name, valid, field=field, of=cls.__name__)

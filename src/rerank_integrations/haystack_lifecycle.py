"""The Haystack ranker's lifecycle: how :class:`~rerank_integrations.haystack.RerankRanker`
holds, builds, closes, serialises and copies its reranker (a mixin of that component).

The same lazy holder as the LangChain and LlamaIndex adapters
(:mod:`rerank_integrations.adapter_holder`): nothing is built in ``__init__``; ``warm_up`` builds
(in a worker thread from ``warm_up_async``); reassigned settings get a new holder; ``to_dict``
never holds a secret; a pickle never holds the key or the model.
"""

import asyncio
import copy
import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any, Self

from rerank_integrations.extras import import_extra

import_extra("haystack", extra="haystack", feature="rerank_integrations.haystack.RerankRanker")

from haystack import default_from_dict, default_to_dict  # noqa: E402
from haystack.core.serialization import import_class_by_name  # noqa: E402
from haystack.utils import (  # noqa: E402
    ComponentDevice,
    Secret,
    deserialize_callable,
    deserialize_secrets_inplace,
    serialize_callable,
)
from haystack.utils.auth import SecretType  # noqa: E402

from rerank_integrations.adapter_support import (  # noqa: E402
    LazyReranker,
    refresh_reranker,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.config import BACKENDS, resolve_backend  # noqa: E402
from rerank_integrations.errors import RerankInputError  # noqa: E402
from rerank_integrations.haystack_rules import (  # noqa: E402
    local_kwargs,
)

logger = logging.getLogger(__name__)


def _check_backend_allowed(backend: object) -> None:
    """Gate a ``module:Class`` backend path through Haystack's deserialization allowlist.

    Loading a pipeline must not import a module the user has not allow-listed just because the
    YAML names it as a custom backend; ``"local"``/``"remote"`` are this package's own.
    """
    if isinstance(backend, str) and backend not in BACKENDS:
        module, sep, qualname = backend.partition(":")
        if sep and module and qualname:
            # raises DeserializationError when the module is not allow-listed
            import_class_by_name(f"{module}.{qualname}")


def _check_token(token: Secret | None) -> None:
    """The local backend downloads with huggingface_hub, which reads ``HF_TOKEN`` itself."""
    if token is None:
        return
    value = token.resolve_value()
    if value and value != os.environ.get("HF_TOKEN"):
        raise RerankInputError(
            "token",
            "the local backend downloads through huggingface_hub, which reads HF_TOKEN: set the "
            "token there (or log in with `hf auth login`) instead of passing a different one",
        )


class RankerLifecycle:
    """Lifecycle, serialisation and copying of the Haystack ranker component."""

    # set by RerankRanker.__init__
    backend: str | None
    model: str | None
    base_url: str | None
    api_format: str | None
    api_key: Secret | None
    device: ComponentDevice | None
    reranker_kwargs: dict[str, Any] | None
    model_kwargs: dict[str, Any] | None
    tokenizer_kwargs: dict[str, Any] | None
    token: Secret | None
    top_k: int | None
    score_threshold: float | None
    instruction: str | None
    instruction_fn: Any
    meta_fields_to_embed: list[str] | None
    embedding_separator: str
    query_prefix: str
    query_suffix: str
    document_prefix: str
    document_suffix: str
    scale_score: bool
    metadata_keys: list[str] | None
    metadata_formatter: Any
    send_metadata: bool | None
    _given: Reranker | None
    _config: dict[str, Any] | None
    _holder: LazyReranker | None
    _key_dropped: bool

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def backend_kwargs(self) -> dict[str, Any] | None:
        """Deprecated name of :attr:`reranker_kwargs`."""
        warnings.warn("backend_kwargs is deprecated: use reranker_kwargs", DeprecationWarning, 2)
        return self.reranker_kwargs

    @backend_kwargs.setter
    def backend_kwargs(self, value: Mapping[str, Any] | None) -> None:
        warnings.warn("backend_kwargs is deprecated: use reranker_kwargs", DeprecationWarning, 2)
        self.reranker_kwargs = None if value is None else dict(value)

    def _settings(self) -> dict[str, Any]:
        """Constructor settings for the backend (``None`` values are dropped when building)."""
        settings: dict[str, Any] = {
            "model": self.model,
            "base_url": self.base_url,
            "api_format": self.api_format,
        }
        if self.device is not None:
            settings["device"] = self.device.to_torch_str()
        if self.backend == "remote" and self.api_key is not None:
            settings["api_key"] = self.api_key.resolve_value()
        if self.backend == "local":
            settings.update(local_kwargs(self.model_kwargs, self.tokenizer_kwargs))
            _check_token(self.token)
        settings.update(self.reranker_kwargs or {})
        return settings

    def _lazy(self) -> LazyReranker:
        """The lazy holder for the current source; a reassigned setting gets a new holder.

        Built by :func:`~rerank_integrations.adapter_support.refresh_reranker`, exactly as in
        the LangChain and LlamaIndex adapters: nothing is built until it is needed, a holder made
        from old settings is never used for new ones, and the replaced one is closed once idle.
        """
        if self._key_dropped and self.api_key is None:
            raise RerankInputError(
                "api_key",
                "a Secret.from_token key is never pickled: give api_key again "
                "(use Secret.from_env_var(...) for a component you pickle or save)",
            )
        if self._given is not None or self._config is not None:
            self._holder = refresh_reranker(
                self._holder, self._given, config=self._config, owner=self
            )
        else:
            self._holder = refresh_reranker(
                self._holder, backend=self.backend, owner=self, **self._settings()
            )
        return self._holder

    def warm_up(self) -> None:
        """Build the reranker (model load / HTTP client). Idempotent; :meth:`run` calls it.

        If a backend setting (``model``, ``base_url``, ...) was reassigned since the last
        warm-up, a new reranker is built from the new settings (the old one is closed once no
        run uses it). A custom ``module:Class`` backend that cannot be imported raises
        ``RerankInputError`` naming ``backend`` here, before anything is built.
        """
        holder = self._lazy()
        if not holder.built and self.backend is not None and self.backend not in BACKENDS:
            try:
                resolve_backend(self.backend)
            except RerankInputError as exc:
                raise RerankInputError("backend", str(exc).removeprefix("backend: ")) from None
            except (ImportError, AttributeError) as exc:
                raise RerankInputError(
                    "backend", f"cannot load {self.backend!r}: {type(exc).__name__}"
                ) from None
        built = holder.get()
        logger.debug("RerankRanker uses a reranker for model %s", built.model_name)

    async def warm_up_async(self) -> None:
        """Async :meth:`warm_up`: the build (a model load can take seconds) runs in a worker
        thread, so the event loop keeps serving other tasks."""
        await asyncio.to_thread(self.warm_up)

    def close(self) -> None:
        """Close a reranker this component built; a later run builds a fresh one.

        A :class:`Reranker` passed to the constructor belongs to the caller and is left open.
        """
        if self._holder is not None:
            self._holder.close()

    async def close_async(self) -> None:
        """Async :meth:`close` (uses the reranker's ``aclose``)."""
        if self._holder is not None:
            await self._holder.aclose()

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Serialise to Haystack's ``{"type", "init_parameters"}`` dict; never contains a secret."""
        if self._given is not None:
            reranker: dict[str, Any] | None = self._given.to_config()
        else:
            reranker = dict(self._config) if self._config is not None else None
        return default_to_dict(
            self,
            reranker=reranker,
            backend=self.backend,
            model=self.model,
            base_url=self.base_url,
            api_format=self.api_format,
            api_key=self.api_key,  # Secret.to_dict(): env var names only; a token secret raises
            device=self.device,
            reranker_kwargs=self.reranker_kwargs,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            instruction=self.instruction,
            instruction_fn=serialize_callable(self.instruction_fn) if self.instruction_fn else None,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            query_prefix=self.query_prefix,
            query_suffix=self.query_suffix,
            document_prefix=self.document_prefix,
            document_suffix=self.document_suffix,
            scale_score=self.scale_score,
            metadata_keys=self.metadata_keys,
            model_kwargs=self.model_kwargs,
            tokenizer_kwargs=self.tokenizer_kwargs,
            token=self.token,
            metadata_formatter=(
                serialize_callable(self.metadata_formatter) if self.metadata_formatter else None
            ),
            send_metadata=self.send_metadata,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output (``data`` is not modified).

        Callables and custom ``module:Class`` backends are resolved through Haystack's
        deserialization allowlist (see docs/haystack.md).
        """
        params = dict(data.get("init_parameters", {}))
        deserialize_secrets_inplace(params, keys=["api_key", "token"])
        for name in ("instruction_fn", "metadata_formatter"):
            if isinstance(params.get(name), str):
                params[name] = deserialize_callable(params[name])
        config = params.get("reranker")
        _check_backend_allowed(config.get("backend") if isinstance(config, Mapping) else None)
        _check_backend_allowed(params.get("backend"))
        return default_from_dict(cls, {**data, "init_parameters": params})

    # -- pickling / copying -----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Settings only: the built reranker is never pickled (rebuilt on first use), a passed
        reranker travels as its ``to_config()``, and a ``Secret.from_token`` key is dropped."""
        state = dict(self.__dict__)
        state["_holder"] = None
        if state.get("_given") is not None:
            state["_config"] = state["_given"].to_config()
            state["_given"] = None
        key = state.get("api_key")
        if isinstance(key, Secret) and key.type != SecretType.ENV_VAR:
            state["api_key"] = None
            state["_key_dropped"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A copy with its own reranker (rebuilt from the settings on first use)."""
        state = dict(self.__dict__)
        state["_holder"] = None
        if state.get("_given") is not None:
            state["_config"] = state["_given"].to_config()
            state["_given"] = None
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(state, memo))
        return new

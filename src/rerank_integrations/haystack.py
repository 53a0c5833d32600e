"""Haystack 3 ranker component: :class:`RerankRanker`.

One import and one line in the pipeline you already have::

    from rerank_integrations.haystack import RerankRanker

    ranker = RerankRanker(backend="remote", model="ctxl-rerank-v2-instruct-multilingual")
    pipeline.add_component("ranker", ranker)

This module only maps Haystack ``Document`` objects to texts/metadata and back; every ranking
rule (instruction precedence, metadata rendering, threshold then ``top_k``, duplicates) is
called from :mod:`rerank_integrations.adapter_support`. Behaviour is documented in
``docs/haystack.md``.
"""

import asyncio
import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.extras import import_extra

import_extra("haystack", extra="haystack", feature="rerank_integrations.haystack.RerankRanker")

from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402
from haystack.core.serialization import import_class_by_name  # noqa: E402
from haystack.utils import (  # noqa: E402
    ComponentDevice,
    Secret,
    deserialize_callable,
    deserialize_secrets_inplace,
    serialize_callable,
)

from rerank_integrations.adapter_support import (  # noqa: E402
    RAW_SCORE_KEY,
    InstructionFn,
    LazyReranker,
    RerankOptions,
    arerank_texts,
    dedupe_best,
    pair_results,
    refresh_reranker,
    rerank_texts,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.config import BACKENDS  # noqa: E402
from rerank_integrations.errors import RerankInputError, RerankTypeError  # noqa: E402
from rerank_integrations.metadata import MetadataFormatter  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.validation import (  # noqa: E402
    optional_mapping,
    optional_str_sequence,
    validate_instruction,
    validate_query,
    validate_score_threshold,
    validate_top_n,
)

__all__ = ["RAW_SCORE_KEY", "RerankRanker"]

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


@component
class RerankRanker:
    """Reorders Haystack ``Document`` objects by a modern reranker's relevance score.

    Construct it from a ready :class:`~rerank_integrations.base.Reranker`
    (``RerankRanker(my_reranker)``) or from plain settings (``backend="local"``/``"remote"``,
    ``model``, ...) so that it serialises.
    The reranker is built in :meth:`warm_up` (which :meth:`run` calls itself when needed), never in
    ``__init__``.

    Output documents are copies: ``score`` is the relevance score in ``[0, 1]`` and
    ``meta[RAW_SCORE_KEY]`` (``"rerank_raw_score"``) the backend's native score.
    """

    def __init__(
        self,
        reranker: Reranker | Mapping[str, Any] | None = None,
        *,
        backend: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        api_format: str | None = None,
        api_key: Secret | None = None,
        device: ComponentDevice | None = None,
        reranker_kwargs: Mapping[str, Any] | None = None,
        top_k: int | None = 10,
        score_threshold: float | None = None,
        instruction: str | None = None,
        instruction_fn: InstructionFn | None = None,
        meta_fields_to_embed: Sequence[str] | None = None,
        metadata_keys: Sequence[str] | None = None,
        metadata_formatter: MetadataFormatter | None = None,
        send_metadata: bool | None = None,
        backend_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Configure the ranker (no model loading or network work happens here).

        :param reranker: a :class:`Reranker`, or a ``to_config()`` dict of one (built in
            ``warm_up``).
            Mutually exclusive with the backend settings below.
        :param backend: ``"local"``, ``"remote"`` or a ``"package.module:Class"`` path.
        :param model: model id / path (local) or API model name (remote).
        :param base_url: remote API base URL (remote backend only).
        :param api_format: remote API dialect, e.g. ``"contextual"``, ``"jina"``, ``"cohere"``
            (remote backend only).
        :param api_key: a Haystack ``Secret`` (e.g. ``Secret.from_env_var("CONTEXTUAL_API_KEY")``),
            resolved in ``warm_up`` and passed to the remote backend; serialised as the env var
            name, never the value. ``None`` (default) leaves the key to the remote backend's own
            policy: the format's env var for its public host, no key for a custom ``base_url``.
        :param device: ``ComponentDevice`` for the local backend (passed as a torch device string).
        :param reranker_kwargs: further JSON-serialisable constructor arguments of the
            backend's Reranker (the same name as in the LangChain and LlamaIndex adapters).
        :param top_k: keep at most this many documents (``None``: all). ``0`` is rejected.
        :param score_threshold: keep documents with ``score >= score_threshold`` (``0.0`` is real).
        :param instruction: the reranker instruction, e.g. ``"prefer the most recent source"``.
        :param instruction_fn: ``query -> instruction | None``, used when no per-call
            instruction is given.
        :param meta_fields_to_embed: the ``Document.meta`` fields sent in the reranker's
            per-document metadata field (Haystack's conventional name; ``metadata_keys`` is an
            alias).
        :param metadata_keys: alias of ``meta_fields_to_embed``.
        :param metadata_formatter: ``meta -> str`` replacing the default formatter.
        :param send_metadata: ``None`` (default) sends metadata when the reranker accepts it
            (local models, the Contextual API; see ``Reranker.accepts_metadata``), ``True``
            always, ``False`` never.
        :param backend_kwargs: deprecated name of ``reranker_kwargs`` (a DeprecationWarning).
        """
        if backend_kwargs is not None:
            warnings.warn(
                "RerankRanker(backend_kwargs=...) is deprecated: use reranker_kwargs=...",
                DeprecationWarning,
                stacklevel=2,
            )
            if reranker_kwargs is not None:
                raise RerankInputError(
                    "backend_kwargs", "is the deprecated name of reranker_kwargs: give one"
                )
            reranker_kwargs = backend_kwargs
        optional_str_sequence("meta_fields_to_embed", meta_fields_to_embed)
        optional_str_sequence("metadata_keys", metadata_keys)
        if (
            meta_fields_to_embed is not None
            and metadata_keys is not None
            and list(meta_fields_to_embed) != list(metadata_keys)
        ):
            raise RerankInputError(
                "metadata_keys", "is an alias of meta_fields_to_embed: give one of them"
            )
        keys = meta_fields_to_embed if meta_fields_to_embed is not None else metadata_keys
        if api_key is not None and not isinstance(api_key, Secret):
            raise RerankTypeError(
                "api_key", "must be a haystack.utils.Secret (e.g. Secret.from_env_var(...))"
            )
        if device is not None and not isinstance(device, ComponentDevice):
            raise RerankTypeError("device", "must be a haystack.utils.ComponentDevice or None")
        if device is not None and backend not in (None, "local"):
            raise RerankInputError("device", "is only used by the local backend")
        if api_key is not None and backend not in (None, "remote"):
            raise RerankInputError("api_key", "is only used by the remote backend")
        optional_mapping("reranker_kwargs", reranker_kwargs)

        self.backend = backend
        self.model = model
        self.base_url = base_url
        self.api_format = api_format
        self.api_key = api_key
        self.device = device
        self.reranker_kwargs = dict(reranker_kwargs) if reranker_kwargs is not None else None
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.instruction = instruction
        self.instruction_fn = instruction_fn
        self.meta_fields_to_embed = list(keys) if keys is not None else None
        self.metadata_formatter = metadata_formatter
        self.send_metadata = send_metadata
        self._options()  # validate now: a bad top_k/threshold/... fails at construction

        self._given: Reranker | None = None  # the caller's reranker: never closed here
        self._config: dict[str, Any] | None = None  # a to_config() dict: built in warm_up
        self._holder: LazyReranker | None = None  # the same lazy holder as the other adapters
        plain = {
            "backend": backend,
            "model": model,
            "base_url": base_url,
            "api_format": api_format,
            "device": device,
            "reranker_kwargs": reranker_kwargs,
            "api_key": api_key,
        }
        if reranker is not None:
            given = sorted(k for k, v in plain.items() if v is not None)
            if given:
                raise RerankInputError(
                    "reranker", f"pass either a Reranker or plain settings, not both (got {given})"
                )
            if isinstance(reranker, Reranker):
                self._given = reranker
            elif isinstance(reranker, Mapping) and isinstance(reranker.get("backend"), str):
                self._config = dict(reranker)
            else:
                raise RerankTypeError(
                    "reranker", "must be a Reranker, a Reranker.to_config() dict, or None"
                )
        elif backend is None:
            raise RerankInputError(
                "backend", "give a Reranker or set backend ('local', 'remote' or 'module:Class')"
            )

    def _options(self) -> RerankOptions:
        """The rerank options, read from the public attributes on every call.

        So a reassigned attribute (``ranker.top_k = 3``) is never shadowed by a cached value.
        """
        return RerankOptions(
            top_n=validate_top_n(self.top_k, field="top_k"),
            score_threshold=self.score_threshold,
            instruction=self.instruction,
            instruction_fn=self.instruction_fn,
            metadata_keys=self.meta_fields_to_embed,
            metadata_formatter=self.metadata_formatter,
            send_metadata=self.send_metadata,
        )

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
        settings.update(self.reranker_kwargs or {})
        return settings

    def _lazy(self) -> LazyReranker:
        """The lazy holder for the current source; a reassigned setting gets a new holder.

        Built by :func:`~rerank_integrations.adapter_support.refresh_reranker`, exactly as in
        the LangChain and LlamaIndex adapters: nothing is built until it is needed, and a
        holder made from old settings is never used for new ones.
        """
        if self._given is not None or self._config is not None:
            self._holder = refresh_reranker(self._holder, self._given, config=self._config)
        else:
            self._holder = refresh_reranker(self._holder, backend=self.backend, **self._settings())
        return self._holder

    def warm_up(self) -> None:
        """Build the reranker (model load / HTTP client). Idempotent; :meth:`run` calls it.

        If a backend setting (``model``, ``base_url``, ...) was reassigned since the last
        warm-up, a new reranker is built from the new settings (the old one is not closed: a
        run in flight may still use it).
        """
        built = self._lazy().get()
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
            metadata_formatter=(
                serialize_callable(self.metadata_formatter) if self.metadata_formatter else None
            ),
            send_metadata=self.send_metadata,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RerankRanker":
        """Rebuild from :meth:`to_dict` output (``data`` is not modified).

        Callables and custom ``module:Class`` backends are resolved through Haystack's
        deserialization allowlist (see docs/haystack.md).
        """
        params = dict(data.get("init_parameters", {}))
        deserialize_secrets_inplace(params, keys=["api_key"])
        for name in ("instruction_fn", "metadata_formatter"):
            if isinstance(params.get(name), str):
                params[name] = deserialize_callable(params[name])
        config = params.get("reranker")
        _check_backend_allowed(config.get("backend") if isinstance(config, Mapping) else None)
        _check_backend_allowed(params.get("backend"))
        return default_from_dict(cls, {**data, "init_parameters": params})

    # -- running ---------------------------------------------------------------------------

    def _unique_documents(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None,
        instruction: str | None,
        score_threshold: float | None,
    ) -> list[Document]:
        """Validate the call (before any model or network work) and drop duplicate ids."""
        validate_query(query)
        if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
            raise RerankTypeError("documents", "must be a list of haystack Document objects")
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise RerankTypeError(
                    f"documents[{i}]", f"must be a Document, got {type(doc).__name__}"
                )
        validate_top_n(top_k, field="top_k")
        validate_score_threshold(score_threshold)
        validate_instruction(instruction)
        return dedupe_best(documents, key=lambda d: d.id, score=lambda d: d.score)

    @staticmethod
    def _texts(docs: list[Document]) -> tuple[list[str], list[dict[str, Any]]]:
        return [d.content or "" for d in docs], [d.meta for d in docs]

    @staticmethod
    def _scored(docs: list[Document], results: list[RerankResult]) -> list[Document]:
        return [
            dataclasses.replace(
                doc, score=r.relevance_score, meta={**doc.meta, RAW_SCORE_KEY: r.raw_score}
            )
            for doc, r in pair_results(docs, results)
        ]

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        instruction: str | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``; best first.

        :param query: the search query (non-empty).
        :param documents: candidates; duplicates by ``Document.id`` keep the one with the best
            incoming score before reranking. Not modified.
        :param top_k: overrides the configured ``top_k`` when not ``None`` (``0`` is rejected).
        :param instruction: overrides the configured instruction / ``instruction_fn`` when not
            ``None``; ``""`` switches the instruction off for this call.
        :param score_threshold: overrides the configured threshold when not ``None``.
        :returns: ``{"documents": [...]}`` — copies with ``score`` set and the raw score in meta.
        """
        options = self._options()
        docs = self._unique_documents(query, documents, top_k, instruction, score_threshold)
        if not docs:
            return {"documents": []}
        self.warm_up()
        texts, metas = self._texts(docs)
        results = rerank_texts(
            self._lazy(), query, texts, metas, options,
            instruction=instruction, top_n=top_k, score_threshold=score_threshold,
        )  # fmt: skip
        return {"documents": self._scored(docs, results)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        instruction: str | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`: same parameters, same result; uses the reranker's ``arerank``."""
        options = self._options()
        docs = self._unique_documents(query, documents, top_k, instruction, score_threshold)
        if not docs:
            return {"documents": []}
        await self.warm_up_async()
        texts, metas = self._texts(docs)
        results = await arerank_texts(
            self._lazy(), query, texts, metas, options,
            instruction=instruction, top_n=top_k, score_threshold=score_threshold,
        )  # fmt: skip
        return {"documents": self._scored(docs, results)}

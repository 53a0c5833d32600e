"""LangChain adapter: :class:`RerankCompressor`, a ``BaseDocumentCompressor`` (langchain-core 1.x).

Drop-in::

    from rerank_integrations.langchain import RerankCompressor
    retriever = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(model="ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"),
        base_retriever=my_retriever,
    )

The behaviour (instruction precedence, metadata policy, top-n/threshold, score keys,
``top_n=0`` rejected) is :mod:`rerank_integrations.adapter_support`'s; this module only maps
``Document`` objects to texts + metadata mappings and back. LangChain specifics (the table
first-party -> ours is in docs/langchain.md; switching is docs/migrating.md):

- ``top_n`` defaults to ``3``, as LangChain's own rerankers (``CrossEncoderReranker``,
  ``CohereRerank``, ``FlashrankRerank``); ``None`` keeps every document.
- Text sent: ``page_content`` (exactly what ``CrossEncoderReranker`` scores). Metadata goes only
  to a reranker with a metadata slot (ctxl-v2 locally, the Contextual API) through that slot,
  never into the text; ``metadata_keys`` / ``send_metadata=True`` opt in to more.
- Returned documents are shallow copies (``model_copy``: same class, same ``id``, same
  ``page_content``) with a NEW metadata dict ``{**doc.metadata, "relevance_score": ...,
  "rerank_raw_score": ...}``; the inputs are never modified.
- ``callbacks`` is accepted (the ``BaseDocumentCompressor`` contract) and not used.
- ``acompress_documents`` is native: it awaits ``Reranker.arerank``; a lazy model load runs in
  a worker thread, never on the event loop.
- The reranker is either a ``reranker=`` object or built lazily (first call) from plain settings
  (``backend``, ``model``, ``base_url``, ``api_key``, ...), so constructing or deserialising a
  compressor loads nothing. Reassigning a setting (or ``model_copy(update=...)``) takes effect on
  the next call; the replaced reranker is closed once no call uses it. ``api_key`` is a
  ``SecretStr``: masked in ``repr``/``model_dump_json``, replaced by the secret id
  ``RERANK_API_KEY`` in ``langchain_core.load.dumps``, never pickled.
- Loading a config (``loads``) imports a ``"module:Class"`` backend only from this package or a
  module listed in ``RERANK_INTEGRATIONS_ALLOWED_BACKENDS`` (see
  :mod:`~rerank_integrations.adapter_policy`), and never switches on ``trust_remote_code`` /
  ``allow_pickle``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rerank_integrations.extras import import_extra

import_extra("langchain_core", extra="langchain", feature="rerank_integrations.langchain")

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.load.serializable import Serializable  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from pydantic import (  # noqa: E402
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
)

from rerank_integrations.adapter_pydantic import SafePydanticAdapter  # noqa: E402
from rerank_integrations.adapter_support import (  # noqa: E402
    LazyReranker,
    RerankOptions,
    arerank_texts,
    check_adapter_settings,
    key_after_unpickle,
    pair_results,
    refresh_from_fields,
    rerank_texts,
    score_metadata,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.errors import RerankInputError, RerankTypeError  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.validation import sequence_of  # noqa: E402

__all__ = ["RerankCompressor"]


class RerankCompressor(SafePydanticAdapter, BaseDocumentCompressor, Serializable):
    """Rerank retrieved documents with any :class:`~rerank_integrations.base.Reranker`.

    Give either ``reranker`` (a ready ``LocalReranker``/``RemoteReranker``/custom object) or
    plain settings: ``backend`` (``"local"`` — the default —, ``"remote"`` or
    ``"module:Class"``), ``model``, ``base_url``, ``api_key``, ``api_format``,
    ``model_format``, ``device`` and any other constructor argument in ``reranker_kwargs``.
    Unset (``None``) settings use the backend's defaults. Giving both raises ``ValueError``.
    ``top_n`` defaults to 3 (LangChain's rerankers' default; ``None`` keeps all).
    """

    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, validate_assignment=True
    )

    reranker: Reranker | dict[str, Any] | None = None
    """A ready reranker (serialised as its ``to_config()``; never holds a secret), or such a
    ``to_config()`` dict (what deserialising gives back; built lazily on first use)."""
    backend: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_format: str | None = None
    model_format: str | None = None
    device: str | None = None
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)

    top_n: int | None = Field(default=3, strict=True)
    """Keep at most this many (default 3 as LangChain's rerankers; ``None``: all; ``0`` is
    rejected)."""
    score_threshold: float | None = None
    """Keep documents with ``relevance_score >= score_threshold`` (``0.0`` is a real value)."""
    instruction: str | None = None
    instruction_fn: Callable[[str], str | None] | None = Field(default=None, exclude=True)
    metadata_keys: list[str] | None = None
    metadata_formatter: Callable[[Mapping[str, Any]], str] | None = Field(
        default=None, exclude=True
    )
    send_metadata: bool | None = None

    _holder: LazyReranker | None = PrivateAttr(default=None)
    _key_dropped: bool = PrivateAttr(default=False)

    # --- pydantic / LangChain plumbing --------------------------------------------------

    @field_serializer("reranker")
    def _reranker_to_config(self, value: Reranker | dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return dict(value) if isinstance(value, dict) else value.to_config()

    def model_post_init(self, context: Any, /) -> None:
        # again after validation: model_validate / model_validate_json bypass __init__
        check_adapter_settings({name: getattr(self, name) for name in type(self).model_fields})
        self._options()  # validate top_n, threshold, instruction, metadata settings now
        self._lazy()  # validate reranker XOR settings now (builds nothing)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["rerank_integrations", "langchain"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "RERANK_API_KEY"}

    def to_json(self) -> Any:
        """LangChain serialisation; a ``reranker`` object is written as its ``to_config()``.

        Loading it back (``loads``) goes through ``__init__``: a custom backend module must be
        allowed, and ``trust_remote_code``/``allow_pickle`` cannot be switched on."""
        serialized = super().to_json()
        kwargs = serialized.get("kwargs")
        if isinstance(kwargs, dict) and isinstance(kwargs.get("reranker"), Reranker):
            kwargs["reranker"] = kwargs["reranker"].to_config()
        return serialized

    # --- the adapter ----------------------------------------------------------------------

    def _options(self) -> RerankOptions:
        return RerankOptions.from_object(self)

    def _lazy(self) -> LazyReranker:
        if self.api_key is not None:
            key: str | None = self.api_key.get_secret_value()
        else:
            key = key_after_unpickle(self.base_url) if self._key_dropped else None
        self._holder = refresh_from_fields(self._holder, self, api_key=key)
        return self._holder

    def get_reranker(self) -> Reranker:
        """The reranker in use (built from the settings on first use)."""
        return self._lazy().get()

    @staticmethod
    def _rebuild(documents: Sequence[Document], results: Sequence[RerankResult]) -> list[Document]:
        return [
            doc.model_copy(update={"metadata": {**doc.metadata, **score_metadata(result)}})
            for doc, result in pair_results(documents, results)
        ]

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        instruction: str | None = None,
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; best first, scores in ``metadata``.

        Per-call ``instruction``/``top_n``/``score_threshold`` override the configured values
        when not ``None`` (``instruction=""`` switches a configured instruction off).
        """
        docs = _documents(documents)
        results = rerank_texts(
            self._lazy(),
            query,
            [d.page_content for d in docs],
            [d.metadata for d in docs],
            self._options(),
            instruction=instruction,
            top_n=top_n,
            score_threshold=score_threshold,
        )
        return self._rebuild(docs, results)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        instruction: str | None = None,
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents` (awaits ``Reranker.arerank``); same results."""
        docs = _documents(documents)
        results = await arerank_texts(
            self._lazy(),
            query,
            [d.page_content for d in docs],
            [d.metadata for d in docs],
            self._options(),
            instruction=instruction,
            top_n=top_n,
            score_threshold=score_threshold,
        )
        return self._rebuild(docs, results)

    def as_runnable(self) -> RunnableLambda[dict[str, Any], list[Document]]:
        """An LCEL step: input ``{"documents": [...], "query": str}`` (optionally
        ``"instruction"``, ``"top_n"``, ``"score_threshold"``), output the reranked documents.

        ``{"documents": retriever, "query": RunnablePassthrough()} | compressor.as_runnable()``
        works with ``invoke`` and ``ainvoke`` (the latter natively async).
        """

        def _args(inputs: Any) -> dict[str, Any]:
            if not isinstance(inputs, Mapping):
                raise RerankTypeError(
                    "input",
                    "the rerank step takes a dict {'documents': [...], 'query': str}, got "
                    f"{type(inputs).__name__}; build it with "
                    "{'documents': retriever, 'query': RunnablePassthrough()} | "
                    "compressor.as_runnable(), or use ContextualCompressionRetriever",
                )
            extra = set(inputs) - {"documents", "query", "instruction", "top_n", "score_threshold"}
            if extra:
                raise RerankInputError(
                    "input", f"unexpected keys in the rerank step's input: {sorted(extra)}"
                )
            missing = {"documents", "query"} - set(inputs)
            if missing:
                raise RerankInputError("input", f"missing keys {sorted(missing)}")
            return dict(inputs)

        def _invoke(inputs: dict[str, Any]) -> list[Document]:
            return list(self.compress_documents(**_args(inputs)))

        async def _ainvoke(inputs: dict[str, Any]) -> list[Document]:
            return list(await self.acompress_documents(**_args(inputs)))

        return RunnableLambda(_invoke, afunc=_ainvoke, name="RerankCompressor")

    def close(self) -> None:
        """Close a reranker this compressor built from settings (a passed-in one is yours)."""
        if self._holder is not None:
            self._holder.close()


def _documents(documents: object) -> list[Document]:
    """The documents as a list, each checked (typed errors naming ``documents[i]``)."""
    return sequence_of("documents", documents, Document, "Document")

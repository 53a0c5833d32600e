"""LangChain adapter: :class:`RerankCompressor`, a ``BaseDocumentCompressor`` (langchain-core 1.x).

Drop-in::

    from rerank_integrations.langchain import RerankCompressor
    retriever = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(model="ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"),
        base_retriever=my_retriever,
    )

The behaviour (instruction precedence, metadata rendering, top-n/threshold, score keys,
``top_n=0`` rejected) is :mod:`rerank_integrations.adapter_support`'s; this module only maps
``Document`` objects to texts + metadata mappings and back. LangChain specifics:

- Text sent: ``page_content``. Metadata sent: ``Document.metadata`` through the reranker's
  metadata field (rendered by ``format_metadata`` — vectors, ``_private`` keys and nested dicts
  are dropped — or by ``metadata_formatter``; ``metadata_keys`` selects fields;
  ``send_metadata``: ``None`` (default) sends it when the reranker accepts metadata,
  ``True`` always, ``False`` never).
- Returned documents are shallow copies (``model_copy``: same class, same ``id``, same
  ``page_content``) with a NEW metadata dict ``{**doc.metadata, "relevance_score": ...,
  "rerank_raw_score": ...}``; the inputs are never modified.
- ``callbacks`` is accepted (the ``BaseDocumentCompressor`` contract) and not used.
- ``acompress_documents`` is native: it awaits ``Reranker.arerank``.
- The reranker is either a ``reranker=`` object or built lazily (first call) from plain settings
  (``backend``, ``model``, ``base_url``, ``api_key``, ...), so constructing or deserialising a
  compressor loads nothing. Reassigning a setting (or ``model_copy(update=...)``) takes effect on
  the next call. ``api_key`` is a ``SecretStr``: masked in ``repr``/``model_dump_json`` and
  replaced by the secret id ``RERANK_API_KEY`` in ``langchain_core.load.dumps``.
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
    field_validator,
)

from rerank_integrations.adapter_support import (  # noqa: E402
    LazyReranker,
    RerankOptions,
    arerank_texts,
    check_adapter_settings,
    pair_results,
    refresh_from_fields,
    rerank_texts,
    score_metadata,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402

__all__ = ["RerankCompressor"]


class RerankCompressor(BaseDocumentCompressor, Serializable):
    """Rerank retrieved documents with any :class:`~rerank_integrations.base.Reranker`.

    Give either ``reranker`` (a ready ``LocalReranker``/``RemoteReranker``/custom object) or
    plain settings: ``backend`` (``"local"`` — the default —, ``"remote"`` or
    ``"module:Class"``), ``model``, ``base_url``, ``api_key``, ``api_format``,
    ``model_format``, ``device`` and any other constructor argument in ``reranker_kwargs``.
    Unset (``None``) settings use the backend's defaults. Giving both raises ``ValueError``.
    """

    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, validate_assignment=True
    )

    reranker: Reranker | None = None
    """A ready reranker (serialised as its ``to_config()``; never holds a secret)."""
    backend: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_format: str | None = None
    model_format: str | None = None
    device: str | None = None
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)

    top_n: int | None = Field(default=None, strict=True)
    """Keep at most this many (``None``: all; ``0`` is rejected)."""
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

    def __init__(self, **data: Any) -> None:
        check_adapter_settings(data)  # the core's typed errors, before pydantic sees the input
        super().__init__(**data)

    def __setattr__(self, name: str, value: Any) -> None:
        check_adapter_settings({name: value})  # ``c.top_n = 0`` fails here, not on later calls
        super().__setattr__(name, value)

    # --- pydantic / LangChain plumbing --------------------------------------------------

    @field_validator("reranker", mode="before")
    @classmethod
    def _reranker_from_config(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return Reranker.from_config(value)
        return value

    @field_serializer("reranker")
    def _reranker_to_config(self, value: Reranker | None) -> dict[str, Any] | None:
        return None if value is None else value.to_config()

    def model_post_init(self, context: Any, /) -> None:
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
        """LangChain serialisation; a ``reranker`` object is written as its ``to_config()``."""
        serialized = super().to_json()
        kwargs = serialized.get("kwargs")
        if isinstance(kwargs, dict) and isinstance(kwargs.get("reranker"), Reranker):
            kwargs["reranker"] = kwargs["reranker"].to_config()
        return serialized

    # --- the adapter ----------------------------------------------------------------------

    def _options(self) -> RerankOptions:
        return RerankOptions.from_object(self)

    def _lazy(self) -> LazyReranker:
        key = None if self.api_key is None else self.api_key.get_secret_value()
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
        docs = list(documents)
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
        docs = list(documents)
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

        def _args(inputs: dict[str, Any]) -> dict[str, Any]:
            extra = set(inputs) - {"documents", "query", "instruction", "top_n", "score_threshold"}
            if extra:
                raise ValueError(f"unexpected keys in the rerank step's input: {sorted(extra)}")
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

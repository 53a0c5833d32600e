"""LangChain adapter: :class:`RerankCompressor`, a ``BaseDocumentCompressor`` (langchain-core 1.x).

Drop-in::

    from rerank_integrations.langchain import RerankCompressor
    retriever = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(model="ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"),
        base_retriever=my_retriever,
    )

The rerank rules are :mod:`rerank_integrations._adapters.calls`'s and the settings, lazy
reranker, safe errors and pickling :class:`~rerank_integrations._adapters.pydantic_model.
PydanticAdapter`'s; this module maps ``Document`` objects to texts + metadata and back.
docs/langchain.md describes it (with the table first-party -> ours; docs/migrating.md the
switch). In short: ``top_n`` defaults to ``3`` as LangChain's own rerankers; the text sent is
``page_content`` (exactly what ``CrossEncoderReranker`` scores) and metadata goes only to a
reranker with a metadata slot, through that slot (``metadata_keys`` / ``send_metadata=True``
opt in to more); returned documents are ``model_copy``-s with a NEW metadata dict holding
``relevance_score`` and ``rerank_raw_score``; ``acompress_documents`` is natively async;
``api_key`` (a ``SecretStr``) is masked, written as the secret id ``RERANK_API_KEY`` by
``langchain_core.load.dumps`` and never pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.extras import import_extra

import_extra("langchain_core", extra="langchain", feature="rerank_integrations.langchain")

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.load.serializable import Serializable  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from pydantic import Field  # noqa: E402

from rerank_integrations._adapters.calls import (  # noqa: E402
    RerankOptions,
    arerank_texts,
    pair_results,
    rerank_texts,
    score_metadata,
)
from rerank_integrations._adapters.pydantic_model import (  # noqa: E402
    ADAPTER_CONFIG,
    PydanticAdapter,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.errors import RerankInputError, RerankTypeError  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.validation import checked_keywords, sequence_of  # noqa: E402

__all__ = ["RerankCompressor"]

_STEP_KEYS = {"documents", "query", "instruction", "top_n", "score_threshold"}


class RerankCompressor(PydanticAdapter, BaseDocumentCompressor, Serializable):
    """Rerank retrieved documents with any :class:`~rerank_integrations.base.Reranker`.

    The settings are :class:`~rerank_integrations._adapters.pydantic_model.PydanticAdapter`'s
    (a ``reranker``, or ``backend``/``model``/... built on first use; both raise
    ``ValueError``). ``top_n`` defaults to 3 (LangChain's rerankers' default; ``None`` keeps all).
    """

    model_config = ADAPTER_CONFIG

    top_n: int | None = Field(default=3, strict=True)
    """Keep at most this many (default 3 as LangChain's rerankers; ``None``: all; ``0`` is
    rejected)."""

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

    @staticmethod
    def _rebuild(documents: Sequence[Document], results: Sequence[RerankResult]) -> list[Document]:
        return [
            doc.model_copy(update={"metadata": {**doc.metadata, **score_metadata(result)}})
            for doc, result in pair_results(documents, results)
        ]

    @checked_keywords
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
        docs = sequence_of("documents", documents, Document, "Document")
        results = rerank_texts(
            self._lazy(), query, [d.page_content for d in docs], [d.metadata for d in docs],
            RerankOptions.from_object(self),
            instruction=instruction, top_n=top_n, score_threshold=score_threshold,
        )  # fmt: skip
        return self._rebuild(docs, results)

    @checked_keywords
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
        docs = sequence_of("documents", documents, Document, "Document")
        results = await arerank_texts(
            self._lazy(), query, [d.page_content for d in docs], [d.metadata for d in docs],
            RerankOptions.from_object(self),
            instruction=instruction, top_n=top_n, score_threshold=score_threshold,
        )  # fmt: skip
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
            extra = set(inputs) - _STEP_KEYS
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

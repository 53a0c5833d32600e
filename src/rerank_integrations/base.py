"""The abstract :class:`Reranker` every backend implements.

The public methods validate the call (:mod:`rerank_integrations.validation`), short-cut
empty input, delegate the scoring to the backend's ``_score``/``_ascore`` and apply the
ordering/``top_n`` rule (:mod:`rerank_integrations.ranking`). A backend only scores.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from rerank_integrations.ranking import select_results
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest, validate_request


class Reranker(abc.ABC):
    """Scores documents against a query; the common interface of every backend.

    Subclasses implement :meth:`_score` (and optionally :meth:`_ascore`, :meth:`close`,
    :meth:`aclose`), :attr:`model_name` and :meth:`to_config`. ``_score`` receives a validated,
    non-empty request and returns one :class:`RerankResult` per document it scored, in any
    order; it may honour ``request.top_n`` as a hint and return fewer.
    """

    #: The ``backend`` name written by :meth:`to_config`; see :mod:`rerank_integrations.config`.
    backend_name: str = ""

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model this reranker scores with (hub id, local path or API model name)."""

    @property
    def accepts_metadata(self) -> bool:
        """Whether per-document ``metadata`` reaches the model (as a field or in the prompt).

        Adapters send metadata by default only to rerankers that accept it; passing
        ``metadata`` to one that does not raises
        :class:`~rerank_integrations.errors.UnsupportedFeatureError`.
        """
        return True

    @abc.abstractmethod
    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        """Score a validated, non-empty request."""

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        """Async scoring; the default runs :meth:`_score` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self._score, request)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        metadata: Sequence[str] | None = None,
        top_n: int | None = None,
    ) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first.

        Results are sorted by ``relevance_score`` descending, ties by ``index`` ascending;
        ``top_n=None`` returns all. Empty ``documents`` returns ``[]`` without model or
        network work. Bad arguments raise a typed error before any work.
        """
        request = validate_request(
            query, documents, instruction=instruction, metadata=metadata, top_n=top_n
        )
        if not request.documents:
            return []
        return select_results(self._score(request), top_n=request.top_n)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        metadata: Sequence[str] | None = None,
        top_n: int | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`; same parameters, same results, never blocks the event loop."""
        request = validate_request(
            query, documents, instruction=instruction, metadata=metadata, top_n=top_n
        )
        if not request.documents:
            return []
        return select_results(await self._ascore(request), top_n=request.top_n)

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict (with a ``backend`` key) that rebuilds this reranker.

        Never contains a secret.
        """

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Reranker:
        """Rebuild a reranker from :meth:`to_config`'s output; the backend comes from the config."""
        from rerank_integrations.config import reranker_from_config

        return reranker_from_config(config)

    def close(self) -> None:
        """Release resources (HTTP connections, model memory). Idempotent."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

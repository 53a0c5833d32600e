"""A deterministic in-tree :class:`Reranker` test double (not a product feature).

Scores are fixed in advance: ``scores`` maps a document's text to its raw score; a
document not in the map gets ``default_score``. ``relevance_score`` is the raw score
clipped to ``[0, 1]``. Every call is recorded in :attr:`calls` so tests can assert exactly
what the reranker received.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.base import Reranker
from rerank_integrations.results import RerankResult
from rerank_integrations.validation import RerankRequest


class FakeReranker(Reranker):
    backend_name = "rerank_integrations._testing:FakeReranker"

    def __init__(
        self,
        scores: Mapping[str, float] | None = None,
        *,
        default_score: float = 0.0,
        model: str = "fake-reranker",
    ) -> None:
        self._scores = dict(scores or {})
        self._default = default_score
        self._model = model
        self._lock = threading.Lock()
        self.calls: list[RerankRequest] = []
        self._closed = False

    @property
    def model_name(self) -> str:
        return self._model

    def _score(self, request: RerankRequest) -> Sequence[RerankResult]:
        with self._lock:
            self.calls.append(request)
        results = []
        for i, doc in enumerate(request.documents):
            raw = self._scores.get(doc, self._default)
            results.append(RerankResult(i, min(1.0, max(0.0, raw)), raw))
        return results

    async def _ascore(self, request: RerankRequest) -> Sequence[RerankResult]:
        return self._score(request)

    def to_config(self) -> dict[str, Any]:
        return {
            "backend": self.backend_name,
            "scores": dict(self._scores),
            "default_score": self._default,
            "model": self._model,
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

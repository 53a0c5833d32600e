"""LlamaIndex adapter: :class:`RerankPostprocessor`, a ``BaseNodePostprocessor`` (llama-index 0.14).

Drop-in::

    from rerank_integrations.llama_index import RerankPostprocessor
    engine = index.as_query_engine(node_postprocessors=[RerankPostprocessor(model="...", top_n=3)])

The rerank rules are :mod:`rerank_integrations._adapters.calls`'s and the settings, lazy
reranker, safe errors and pickling :class:`~rerank_integrations._adapters.pydantic_model.
PydanticAdapter`'s. LlamaIndex specifics (docs/llamaindex.md has the details and the table
first-party -> ours, docs/migrating.md the switch):

- ``top_n=2`` as LlamaIndex's rerankers; a plain model scores
  ``node.get_content(metadata_mode=MetadataMode.EMBED)`` byte for byte. ``metadata_mode`` chooses
  which metadata is visible; when the metadata field is used (a reranker with a metadata slot,
  or ``metadata_keys`` / ``send_metadata=True``) the text is ``get_content(NONE)`` and the
  visible metadata goes through the field instead (never both).
- A per-call instruction is set for a block, ``with pp.instruction_override("..."):`` (a
  :class:`contextvars.ContextVar`: per instance, per thread/task), since the query engine's
  ``postprocess_nodes(nodes, query_bundle)`` has no room for one.
- Returned nodes are new ``NodeWithScore(node=copy, score=relevance_score)``; the copy's metadata
  gains ``"rerank_raw_score"``, also added to its excluded embed/LLM keys. Inputs are never
  modified.
- ``ReRankStartEvent``/``ReRankEndEvent`` and a ``CBEventType.RERANKING`` event fire, inside an
  instrumentation span, also for empty nodes (which build nothing). Bad input raises before any
  model work (a missing ``query_bundle``: ``ValueError``).
- ``to_dict``/``to_json`` leave out ``api_key``, ``instruction_fn``, ``metadata_formatter``,
  ``callback_manager``: give the key with ``RerankPostprocessor.from_dict(data, api_key=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from rerank_integrations.extras import import_extra

import_extra("llama_index.core", extra="llamaindex", feature="rerank_integrations.llama_index")

from llama_index.core.bridge.pydantic import Field, SecretStr  # noqa: E402
from llama_index.core.callbacks import CBEventType, EventPayload  # noqa: E402
from llama_index.core.instrumentation.events.rerank import (  # noqa: E402
    ReRankEndEvent,
    ReRankStartEvent,
)
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle  # noqa: E402
from llama_index_instrumentation import get_dispatcher  # noqa: E402  (re-exported by core)

from rerank_integrations._adapters.calls import (  # noqa: E402
    RAW_SCORE_KEY,
    RerankOptions,
    arerank_texts,
    metadata_enabled,
    pair_results,
    rerank_texts,
)
from rerank_integrations._adapters.pydantic_model import (  # noqa: E402
    ADAPTER_CONFIG,
    PydanticAdapter,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.validation import (  # noqa: E402
    sequence_of,
    validate_instruction,
    validate_query,
)

__all__ = ["RerankPostprocessor"]

dispatcher = get_dispatcher(__name__)


# Per-instance instruction overrides, keyed by id(postprocessor). Each value is an immutable
# mapping replaced (never mutated) by instruction_override, so the var is context-local state.
_OVERRIDES: ContextVar[Mapping[int, str | None]] = ContextVar(
    "rerank_integrations_llama_index_instruction", default=MappingProxyType({})
)


def _visible_metadata(node: BaseNode, mode: MetadataMode) -> dict[str, Any]:
    if mode == MetadataMode.NONE:
        return {}
    if mode == MetadataMode.EMBED:
        excluded = set(node.excluded_embed_metadata_keys)
    elif mode == MetadataMode.LLM:
        excluded = set(node.excluded_llm_metadata_keys)
    else:
        excluded = set()
    return {k: v for k, v in node.metadata.items() if k not in excluded}


class RerankPostprocessor(PydanticAdapter, BaseNodePostprocessor):
    """Rerank retrieved nodes with any :class:`~rerank_integrations.base.Reranker`.

    The settings are :class:`~rerank_integrations._adapters.pydantic_model.PydanticAdapter`'s
    (a ``reranker``, or ``backend``/``model``/... built on first use; both raise
    ``ValueError``). ``top_n`` defaults to 2 (as LlamaIndex's rerankers; ``None`` keeps all).
    ``keep_retrieval_score=True`` keeps each node's incoming score in the copy's
    ``metadata["retrieval_score"]`` (as ``SentenceTransformerRerank``).
    """

    model_config = ADAPTER_CONFIG

    api_key: SecretStr | None = Field(default=None, exclude=True)
    top_n: int | None = Field(default=2, strict=True)
    metadata_mode: MetadataMode = MetadataMode.EMBED
    keep_retrieval_score: bool = False

    @classmethod
    def class_name(cls) -> str:
        return "RerankPostprocessor"

    def _model_name(self) -> str:
        """The model name for events, without building anything."""
        holder = self._lazy()
        if holder.built:
            return holder.get().model_name
        if isinstance(self.reranker, Reranker):
            return self.reranker.model_name
        if isinstance(self.reranker, dict):
            return str(self.reranker.get("model") or "")
        return self.model or ""

    @contextmanager
    def instruction_override(self, instruction: str | None) -> Iterator[RerankPostprocessor]:
        """Use ``instruction`` for every query run inside the ``with`` block (this thread/task).

        ``None`` keeps the normal precedence; ``""`` switches the instruction off.
        """
        validate_instruction(instruction)
        token = _OVERRIDES.set(MappingProxyType({**_OVERRIDES.get(), id(self): instruction}))
        try:
            yield self
        finally:
            _OVERRIDES.reset(token)

    # --- the adapter ----------------------------------------------------------------------

    def _inputs(
        self, nodes: Sequence[NodeWithScore], reranker: Reranker
    ) -> tuple[list[str], list[dict[str, Any]] | None]:
        if metadata_enabled(RerankOptions.from_object(self), reranker):
            texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
            return texts, [_visible_metadata(n.node, self.metadata_mode) for n in nodes]
        return [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes], None

    def _outputs(
        self, nodes: Sequence[NodeWithScore], results: Sequence[RerankResult]
    ) -> list[NodeWithScore]:
        out = []
        for item, result in pair_results(nodes, results):
            node = item.node
            extra = {"retrieval_score": item.score} if self.keep_retrieval_score else {}
            copied = node.model_copy(
                update={
                    "metadata": {**node.metadata, **extra, RAW_SCORE_KEY: result.raw_score},
                    "excluded_embed_metadata_keys": _with_key(node.excluded_embed_metadata_keys),
                    "excluded_llm_metadata_keys": _with_key(node.excluded_llm_metadata_keys),
                }
            )
            out.append(NodeWithScore(node=copied, score=result.relevance_score))
        return out

    def _check(
        self, nodes: object, query_bundle: QueryBundle | None
    ) -> tuple[list[NodeWithScore], str, QueryBundle, RerankOptions]:
        """Validate the call before any model work (typed errors naming the field)."""
        if query_bundle is None:
            raise ValueError("RerankPostprocessor needs a query bundle (query_bundle=None)")
        query = validate_query(query_bundle.query_str)
        checked = sequence_of("nodes", nodes, NodeWithScore, "NodeWithScore")
        return checked, query, query_bundle, RerankOptions.from_object(self)

    def _start_event(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle, options: RerankOptions
    ) -> dict[Any, Any]:
        """Fire the start event (and the end event for no nodes); the callback payload."""
        model_name = self._model_name()
        top_n = len(nodes) if options.top_n is None else options.top_n
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=model_name)
        )
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        checked, query, bundle, options = self._check(nodes, query_bundle)
        if not checked:
            self._start_event(checked, bundle, options)
            return []
        with self._lazy().using() as reranker:
            payload = self._start_event(checked, bundle, options)
            texts, metas = self._inputs(checked, reranker)
            with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
                results = rerank_texts(
                    reranker, query, texts, metas, options,
                    instruction=_OVERRIDES.get().get(id(self)),
                )  # fmt: skip
                reranked = self._outputs(checked, results)
                event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    @dispatcher.span  # type: ignore[misc]
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        checked, query, bundle, options = self._check(nodes, query_bundle)
        if not checked:
            self._start_event(checked, bundle, options)
            return []
        async with self._lazy().ausing() as reranker:  # a model load runs in a worker thread
            payload = self._start_event(checked, bundle, options)
            texts, metas = self._inputs(checked, reranker)
            with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
                results = await arerank_texts(
                    reranker, query, texts, metas, options,
                    instruction=_OVERRIDES.get().get(id(self)),
                )  # fmt: skip
                reranked = self._outputs(checked, results)
                event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked


def _with_key(keys: list[str]) -> list[str]:
    return list(keys) if RAW_SCORE_KEY in keys else [*keys, RAW_SCORE_KEY]

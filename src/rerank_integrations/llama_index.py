"""LlamaIndex adapter: :class:`RerankPostprocessor`, a ``BaseNodePostprocessor`` (llama-index 0.14).

Drop-in::

    from rerank_integrations.llama_index import RerankPostprocessor
    engine = index.as_query_engine(node_postprocessors=[RerankPostprocessor(model="...", top_n=3)])

The rerank rules (instruction precedence, metadata rendering, top-n/threshold, ``top_n=0``
rejected) are :mod:`rerank_integrations.adapter_support`'s. LlamaIndex specifics decided here:

- **Text vs metadata (never both by accident).** ``metadata_mode`` (default
  ``MetadataMode.EMBED``, what LlamaIndex's own rerankers read) chooses WHICH metadata of a node
  is visible: ``EMBED`` drops the node's ``excluded_embed_metadata_keys``, ``LLM`` its
  ``excluded_llm_metadata_keys``, ``ALL`` nothing, ``NONE`` everything. ``send_metadata``
  chooses WHERE it goes:

  - ``send_metadata=None`` (default) means ``True`` when the reranker accepts metadata
    (``Reranker.accepts_metadata``: local models, the Contextual API) and ``False`` otherwise.
  - ``send_metadata=True``: text = ``node.get_content(metadata_mode=MetadataMode.NONE)``
    and the visible metadata goes through the reranker's metadata field (rendered by
    ``format_metadata`` / ``metadata_formatter``, filtered by ``metadata_keys``; the node's
    exclusion lists always apply — use ``metadata_mode=ALL`` to ignore them).
  - ``send_metadata=False``: text = ``node.get_content(metadata_mode=metadata_mode)`` (LlamaIndex
    renders the visible metadata into the text with the node's own template) and no metadata field.

- **Per-call instruction.** The query engine calls ``postprocess_nodes(nodes, query_bundle)``
  with no room for extra arguments, so a per-call instruction is set for a block of code::

      with reranker.instruction_override("prefer the most recent source"):
          engine.query("...")          # or: await engine.aquery("...")

  It is held in a :class:`contextvars.ContextVar` (per postprocessor instance, per thread/task,
  so concurrent queries do not see each other's value) and takes the "per-call" place in the
  precedence: override (not ``None``) > ``instruction_fn(query_str)`` > ``instruction``.
  ``instruction_override("")`` switches a configured instruction off inside the block.
- **Returned nodes** are new ``NodeWithScore(node=copy, score=relevance_score)``; ``copy`` is a
  shallow ``model_copy`` of the node (same ``node_id``) whose metadata gains
  ``"rerank_raw_score"`` (the backend's native score), also added to the copy's
  ``excluded_embed_metadata_keys``/``excluded_llm_metadata_keys`` so it never leaks into an LLM
  prompt or embedding. Input nodes and ``NodeWithScore`` objects are never modified.
- **Events**: ``ReRankStartEvent(query, nodes, top_n, model_name)`` and ``ReRankEndEvent(nodes)``
  go through the instrumentation dispatcher, and a ``CBEventType.RERANKING`` event through the
  callback manager (payload: nodes, model name, query string, top_k). ``top_n`` in the start
  event is the configured one, or the number of nodes when unset (the event requires an int).
- A missing ``query_bundle`` raises ``ValueError``; empty nodes return ``[]`` with no reranker
  call and no events.
- **Serialisation** (``to_dict``/``to_json``): settings, options and ``metadata_mode``;
  ``api_key``, ``instruction_fn``, ``metadata_formatter`` and ``callback_manager`` are excluded;
  a ``reranker`` object is written as its ``to_config()`` and rebuilt by ``from_dict``. Give the
  key again with ``RerankPostprocessor.from_dict(data, api_key=...)`` (or let the backend read
  its environment variable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from rerank_integrations.extras import import_extra

import_extra("llama_index.core", extra="llamaindex", feature="rerank_integrations.llama_index")

from llama_index.core.bridge.pydantic import (  # noqa: E402
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
    field_validator,
)
from llama_index.core.callbacks import CBEventType, EventPayload  # noqa: E402
from llama_index.core.instrumentation.events.rerank import (  # noqa: E402
    ReRankEndEvent,
    ReRankStartEvent,
)
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle  # noqa: E402
from llama_index_instrumentation import get_dispatcher  # noqa: E402  (re-exported by core)

from rerank_integrations.adapter_support import (  # noqa: E402
    RAW_SCORE_KEY,
    LazyReranker,
    RerankOptions,
    arerank_texts,
    check_adapter_settings,
    metadata_enabled,
    pair_results,
    refresh_from_fields,
    rerank_texts,
)
from rerank_integrations.base import Reranker  # noqa: E402
from rerank_integrations.results import RerankResult  # noqa: E402
from rerank_integrations.validation import validate_instruction  # noqa: E402

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


class RerankPostprocessor(BaseNodePostprocessor):
    """Rerank retrieved nodes with any :class:`~rerank_integrations.base.Reranker`.

    Give either ``reranker`` or plain settings (``backend`` — ``"local"`` by default,
    ``"remote"`` or ``"module:Class"`` —, ``model``, ``base_url``, ``api_key``, ``api_format``,
    ``model_format``, ``device``, other constructor arguments in ``reranker_kwargs``); the
    backend is built on first use. Both raises ``ValueError``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: Reranker | None = None
    backend: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True)
    api_format: str | None = None
    model_format: str | None = None
    device: str | None = None
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)

    top_n: int | None = Field(default=None, strict=True)
    score_threshold: float | None = None
    instruction: str | None = None
    instruction_fn: Callable[[str], str | None] | None = Field(default=None, exclude=True)
    metadata_keys: list[str] | None = None
    metadata_formatter: Callable[[Mapping[str, Any]], str] | None = Field(
        default=None, exclude=True
    )
    send_metadata: bool | None = None
    metadata_mode: MetadataMode = MetadataMode.EMBED

    _holder: LazyReranker | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        check_adapter_settings(data)  # the core's typed errors, before pydantic sees the input
        super().__init__(**data)

    def __setattr__(self, name: str, value: Any) -> None:
        check_adapter_settings({name: value})  # ``c.top_n = 0`` fails here, not on later calls
        super().__setattr__(name, value)

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
        RerankOptions.from_object(self)  # validate the options now
        self._lazy()  # validate reranker XOR settings now (builds nothing)

    @classmethod
    def class_name(cls) -> str:
        return "RerankPostprocessor"

    # --- reranker and per-call instruction ----------------------------------------------

    def _lazy(self) -> LazyReranker:
        key = None if self.api_key is None else self.api_key.get_secret_value()
        self._holder = refresh_from_fields(self._holder, self, api_key=key)
        return self._holder

    def get_reranker(self) -> Reranker:
        """The reranker in use (built from the settings on first use)."""
        return self._lazy().get()

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

    @staticmethod
    def _outputs(
        nodes: Sequence[NodeWithScore], results: Sequence[RerankResult]
    ) -> list[NodeWithScore]:
        out = []
        for item, result in pair_results(nodes, results):
            node = item.node
            copy = node.model_copy(
                update={
                    "metadata": {**node.metadata, RAW_SCORE_KEY: result.raw_score},
                    "excluded_embed_metadata_keys": _with_key(node.excluded_embed_metadata_keys),
                    "excluded_llm_metadata_keys": _with_key(node.excluded_llm_metadata_keys),
                }
            )
            out.append(NodeWithScore(node=copy, score=result.relevance_score))
        return out

    def _start(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, Reranker, dict[Any, Any]] | None:
        """Validate; ``None`` for empty input; else fire the start event and return the call."""
        if query_bundle is None:
            raise ValueError("RerankPostprocessor needs a query bundle (query_bundle=None)")
        options = RerankOptions.from_object(self)
        if not nodes:
            return None
        reranker = self.get_reranker()
        top_n = len(nodes) if options.top_n is None else options.top_n
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=top_n, model_name=reranker.model_name
            )
        )
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: reranker.model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        return query_bundle.query_str, reranker, payload

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        started = self._start(nodes, query_bundle)
        if started is None:
            return []
        query, reranker, payload = started
        texts, metas = self._inputs(nodes, reranker)
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            results = rerank_texts(
                reranker, query, texts, metas, RerankOptions.from_object(self),
                instruction=_OVERRIDES.get().get(id(self)),
            )  # fmt: skip
            reranked = self._outputs(nodes, results)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        started = self._start(nodes, query_bundle)
        if started is None:
            return []
        query, reranker, payload = started
        texts, metas = self._inputs(nodes, reranker)
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            results = await arerank_texts(
                reranker, query, texts, metas, RerankOptions.from_object(self),
                instruction=_OVERRIDES.get().get(id(self)),
            )  # fmt: skip
            reranked = self._outputs(nodes, results)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def close(self) -> None:
        """Close a reranker this postprocessor built from settings (a passed-in one is yours)."""
        if self._holder is not None:
            self._holder.close()


def _with_key(keys: list[str]) -> list[str]:
    return list(keys) if RAW_SCORE_KEY in keys else [*keys, RAW_SCORE_KEY]

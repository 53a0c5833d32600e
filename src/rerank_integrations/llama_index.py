"""LlamaIndex adapter: :class:`RerankPostprocessor`, a ``BaseNodePostprocessor`` (llama-index 0.14).

Drop-in::

    from rerank_integrations.llama_index import RerankPostprocessor
    engine = index.as_query_engine(node_postprocessors=[RerankPostprocessor(model="...", top_n=3)])

The rerank rules (instruction precedence, metadata rendering, top-n/threshold, ``top_n=0``
rejected) are :mod:`rerank_integrations.adapter_support`'s. LlamaIndex specifics decided here:

- **Defaults follow LlamaIndex's rerankers** (``SentenceTransformerRerank``, ``JinaRerank``,
  ``CohereRerank``): ``top_n=2`` (``None`` keeps every node), and the text a plain model scores
  is ``node.get_content(metadata_mode=MetadataMode.EMBED)`` byte for byte (the node's own
  metadata template, ``excluded_embed_metadata_keys`` honoured). The table first-party -> ours
  is in docs/llamaindex.md; switching is docs/migrating.md.
- **Text vs metadata (never both).** ``metadata_mode`` (default ``EMBED``) chooses WHICH metadata
  of a node is visible: ``EMBED`` drops the node's ``excluded_embed_metadata_keys``, ``LLM`` its
  ``excluded_llm_metadata_keys``, ``ALL`` nothing, ``NONE`` everything. Whether it goes to the
  reranker's metadata field is :func:`~rerank_integrations.adapter_support.metadata_enabled`:

  - metadata field used (by default only for a reranker with a metadata slot — ctxl-v2
    locally, the Contextual API —, or opted in with ``metadata_keys`` / ``send_metadata=True``):
    text = ``node.get_content(metadata_mode=MetadataMode.NONE)``, the visible metadata goes
    through the field (rendered by ``format_metadata`` / ``metadata_formatter``, filtered by
    ``metadata_keys``; the node's exclusion lists always apply);
  - otherwise (every plain model by default, ``send_metadata=False``): text =
    ``node.get_content(metadata_mode=metadata_mode)`` and no metadata field.

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
- Both ``_postprocess_nodes`` and ``_apostprocess_nodes`` run inside an instrumentation span.
- A missing ``query_bundle`` raises ``ValueError``, a blank query or a non-``NodeWithScore`` in
  ``nodes`` a typed error naming it, before any model work; empty nodes return ``[]`` with no
  reranker call (nothing is built) but fire the start and end events, like first-party
  rerankers fire their start event.
- **Serialisation** (``to_dict``/``to_json``): settings, options and ``metadata_mode``;
  ``api_key``, ``instruction_fn``, ``metadata_formatter`` and ``callback_manager`` are excluded;
  a ``reranker`` object is written as its ``to_config()`` and rebuilt lazily after ``from_dict``.
  Give the key again with ``RerankPostprocessor.from_dict(data, api_key=...)`` (or let the
  backend read its environment variable). Loading imports a ``"module:Class"`` backend only from
  this package or an allowed module, and never switches on ``trust_remote_code`` /
  ``allow_pickle``. Pickle / ``deepcopy`` carry the settings only (never the key, never the built
  model).
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
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
)
from llama_index.core.callbacks import CBEventType, EventPayload  # noqa: E402
from llama_index.core.instrumentation.events.rerank import (  # noqa: E402
    ReRankEndEvent,
    ReRankStartEvent,
)
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle  # noqa: E402
from llama_index_instrumentation import get_dispatcher  # noqa: E402  (re-exported by core)

from rerank_integrations.adapter_pydantic import SafePydanticAdapter  # noqa: E402
from rerank_integrations.adapter_support import (  # noqa: E402
    RAW_SCORE_KEY,
    LazyReranker,
    RerankOptions,
    arerank_texts,
    check_adapter_settings,
    key_after_unpickle,
    metadata_enabled,
    pair_results,
    refresh_from_fields,
    rerank_texts,
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


class RerankPostprocessor(SafePydanticAdapter, BaseNodePostprocessor):
    """Rerank retrieved nodes with any :class:`~rerank_integrations.base.Reranker`.

    Give either ``reranker`` or plain settings (``backend`` — ``"local"`` by default,
    ``"remote"`` or ``"module:Class"`` —, ``model``, ``base_url``, ``api_key``, ``api_format``,
    ``model_format``, ``device``, other constructor arguments in ``reranker_kwargs``); the
    backend is built on first use. Both raises ``ValueError``. ``top_n`` defaults to 2 (as
    LlamaIndex's rerankers; ``None`` keeps all). ``keep_retrieval_score=True`` keeps each node's
    incoming score in the copy's ``metadata["retrieval_score"]`` (as ``SentenceTransformerRerank``).
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True, extra="forbid", validate_assignment=True
    )

    reranker: Reranker | dict[str, Any] | None = None
    backend: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True)
    api_format: str | None = None
    model_format: str | None = None
    device: str | None = None
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)

    top_n: int | None = Field(default=2, strict=True)
    score_threshold: float | None = None
    instruction: str | None = None
    instruction_fn: Callable[[str], str | None] | None = Field(default=None, exclude=True)
    metadata_keys: list[str] | None = None
    metadata_formatter: Callable[[Mapping[str, Any]], str] | None = Field(
        default=None, exclude=True
    )
    send_metadata: bool | None = None
    metadata_mode: MetadataMode = MetadataMode.EMBED
    keep_retrieval_score: bool = False

    _holder: LazyReranker | None = PrivateAttr(default=None)
    _key_dropped: bool = PrivateAttr(default=False)

    @field_serializer("reranker")
    def _reranker_to_config(self, value: Reranker | dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return dict(value) if isinstance(value, dict) else value.to_config()

    def __setstate__(self, state: dict[str, Any]) -> None:
        BaseModel.__setstate__(self, state)

    def model_post_init(self, context: Any, /) -> None:
        # again after validation: model_validate / model_validate_json bypass __init__
        check_adapter_settings({name: getattr(self, name) for name in type(self).model_fields})
        RerankOptions.from_object(self)  # validate the options now
        self._lazy()  # validate reranker XOR settings now (builds nothing)

    @classmethod
    def class_name(cls) -> str:
        return "RerankPostprocessor"

    # --- reranker and per-call instruction ----------------------------------------------

    def _lazy(self) -> LazyReranker:
        if self.api_key is not None:
            key: str | None = self.api_key.get_secret_value()
        else:
            key = key_after_unpickle(self.base_url) if self._key_dropped else None
        self._holder = refresh_from_fields(self._holder, self, api_key=key)
        return self._holder

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
    ) -> tuple[list[NodeWithScore], str, RerankOptions]:
        """Validate the call before any model work (typed errors naming the field)."""
        if query_bundle is None:
            raise ValueError("RerankPostprocessor needs a query bundle (query_bundle=None)")
        query = validate_query(query_bundle.query_str)
        checked = sequence_of("nodes", nodes, NodeWithScore, "NodeWithScore")
        return checked, query, RerankOptions.from_object(self)

    def _start_event(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle, options: RerankOptions
    ) -> tuple[str, dict[Any, Any]]:
        model_name = self._model_name()
        top_n = len(nodes) if options.top_n is None else options.top_n
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=model_name)
        )
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        return model_name, payload

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        checked, query, options = self._check(nodes, query_bundle)
        assert query_bundle is not None
        if not checked:
            self._start_event(checked, query_bundle, options)
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        holder = self._lazy()
        with holder.using() as reranker:
            _, payload = self._start_event(checked, query_bundle, options)
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
        checked, query, options = self._check(nodes, query_bundle)
        assert query_bundle is not None
        if not checked:
            self._start_event(checked, query_bundle, options)
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        holder = self._lazy()
        async with holder.ausing() as reranker:  # a model load runs in a worker thread
            _, payload = self._start_event(checked, query_bundle, options)
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

    def close(self) -> None:
        """Close a reranker this postprocessor built from settings (a passed-in one is yours)."""
        if self._holder is not None:
            self._holder.close()


def _with_key(keys: list[str]) -> list[str]:
    return list(keys) if RAW_SCORE_KEY in keys else [*keys, RAW_SCORE_KEY]

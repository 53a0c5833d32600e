"""RerankPostprocessor inside real LlamaIndex objects (no mocks of LlamaIndex objects)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from rerank_integrations._adapters.calls import RAW_SCORE_KEY
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError
from rerank_integrations.llama_index import RerankPostprocessor

SECRET = "sk-test-very-secret-0123456789"

SCORES = {
    "Solar capacity grew 10% in 2021.": 0.30,
    "Solar capacity grew 25% in 2024.": 0.95,
    "Wind power basics.": 0.05,
    "Solar panel prices fell in 2023.": 0.70,
}
EXPECTED_ORDER = ["n2024", "n2023", "n2021", "nwind"]


def make_nodes() -> list[TextNode]:
    return [
        TextNode(
            id_="n2021",
            text="Solar capacity grew 10% in 2021.",
            metadata={"source": "IEA", "date": "2021-06-01", "file_path": "/tmp/iea.pdf"},
            excluded_embed_metadata_keys=["file_path"],
            excluded_llm_metadata_keys=["file_path", "date"],
        ),
        TextNode(
            id_="n2024",
            text="Solar capacity grew 25% in 2024.",
            metadata={"source": "Reuters", "date": "2024-03-01"},
        ),
        TextNode(id_="nwind", text="Wind power basics.", metadata={"source": "wiki"}),
        TextNode(
            id_="n2023",
            text="Solar panel prices fell in 2023.",
            metadata={"source": "BNEF", "date": "2023-01-15"},
        ),
    ]


def scored() -> list[NodeWithScore]:
    return [NodeWithScore(node=n, score=0.5) for n in make_nodes()]


@pytest.fixture
def fake() -> FakeReranker:
    return FakeReranker(SCORES)


def index() -> VectorStoreIndex:
    return VectorStoreIndex(make_nodes(), embed_model=MockEmbedding(embed_dim=8))


class EventRecorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


class CallbackRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.records: list[tuple[str, CBEventType, dict[Any, Any] | None]] = []

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        self.records.append(("start", event_type, payload))
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        self.records.append(("end", event_type, payload))

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None:
        return None

    def reranking(self) -> list[tuple[str, dict[Any, Any] | None]]:
        return [(kind, p) for kind, t, p in self.records if t == CBEventType.RERANKING]


@pytest.fixture
def recorder() -> Iterator[EventRecorder]:
    handler = EventRecorder()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)


def ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


# --- the postprocessor on its own ----------------------------------------------------------


def test_orders_scores_and_raw_score(fake: FakeReranker) -> None:
    inputs = scored()
    before = copy.deepcopy(inputs)
    out = RerankPostprocessor(reranker=fake, top_n=None).postprocess_nodes(
        inputs, query_str="solar"
    )
    assert ids(out) == EXPECTED_ORDER
    assert [n.score for n in out] == [0.95, 0.70, 0.30, 0.05]
    for n in out:
        assert n.node.metadata[RAW_SCORE_KEY] == SCORES[n.node.get_content()]
        # the raw score never reaches an LLM prompt or an embedding
        assert RAW_SCORE_KEY not in n.node.get_content(metadata_mode=MetadataMode.LLM)
        assert RAW_SCORE_KEY not in n.node.get_content(metadata_mode=MetadataMode.EMBED)
    # inputs untouched, outputs are new objects
    assert inputs == before
    assert [n.score for n in inputs] == [0.5] * 4
    assert all(RAW_SCORE_KEY not in n.node.metadata for n in inputs)
    assert not {id(n) for n in out} & {id(n) for n in inputs}
    assert not {id(n.node) for n in out} & {id(n.node) for n in inputs}


def test_text_and_metadata_field_default_embed_mode(fake: FakeReranker) -> None:
    RerankPostprocessor(reranker=fake).postprocess_nodes(scored(), query_str="q")
    (call,) = fake.calls
    # text without metadata; metadata minus excluded_embed_metadata_keys via the field
    assert call.documents == tuple(n.text for n in make_nodes())
    assert call.metadata == (
        "source: IEA\ndate: 2021-06-01",
        "source: Reuters\ndate: 2024-03-01",
        "source: wiki",
        "source: BNEF\ndate: 2023-01-15",
    )


def test_metadata_mode_llm_and_all(fake: FakeReranker) -> None:
    RerankPostprocessor(reranker=fake, metadata_mode=MetadataMode.LLM).postprocess_nodes(
        scored(), query_str="q"
    )
    assert fake.calls[-1].metadata is not None
    assert fake.calls[-1].metadata[0] == "source: IEA"  # date and file_path excluded for LLM
    RerankPostprocessor(reranker=fake, metadata_mode=MetadataMode.ALL).postprocess_nodes(
        scored(), query_str="q"
    )
    assert fake.calls[-1].metadata is not None
    # ALL: nothing excluded by the node, but a loader's file_path is bookkeeping, not sent
    assert fake.calls[-1].metadata[0] == "source: IEA\ndate: 2021-06-01"
    RerankPostprocessor(reranker=fake, metadata_mode=MetadataMode.NONE).postprocess_nodes(
        scored(), query_str="q"
    )
    assert fake.calls[-1].metadata is None


def test_metadata_field_off_puts_metadata_in_text_once(fake: FakeReranker) -> None:
    RerankPostprocessor(reranker=fake, send_metadata=False).postprocess_nodes(
        scored(), query_str="q"
    )
    call = fake.calls[-1]
    assert call.metadata is None
    nodes = make_nodes()
    assert call.documents == tuple(n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes)
    assert call.documents[0].count("2021-06-01") == 1 and "file_path" not in call.documents[0]


def test_metadata_keys_and_formatter(fake: FakeReranker) -> None:
    RerankPostprocessor(reranker=fake, metadata_keys=["date", "file_path"]).postprocess_nodes(
        scored(), query_str="q"
    )
    # the node's exclusion list still applies to an explicitly listed key
    assert fake.calls[-1].metadata == (
        "date: 2021-06-01",
        "date: 2024-03-01",
        "",
        "date: 2023-01-15",
    )
    pp = RerankPostprocessor(reranker=fake, metadata_formatter=lambda m: m.get("source", ""))
    pp.postprocess_nodes(scored(), query_str="q")
    assert fake.calls[-1].metadata == ("IEA", "Reuters", "wiki", "BNEF")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"top_n": 2}, EXPECTED_ORDER[:2]),
        ({"top_n": 4}, EXPECTED_ORDER),
        ({"top_n": 9}, EXPECTED_ORDER),
        ({"score_threshold": 0}, EXPECTED_ORDER),
        ({"score_threshold": 0.0}, EXPECTED_ORDER),
        ({"score_threshold": 0.3}, EXPECTED_ORDER[:3]),
        ({"score_threshold": 0.5, "top_n": 3}, EXPECTED_ORDER[:2]),
        ({"score_threshold": 0.99}, []),
    ],
)
def test_top_n_and_threshold(
    fake: FakeReranker, kwargs: dict[str, Any], expected: list[str]
) -> None:
    pp = RerankPostprocessor(reranker=fake, **{"top_n": None, **kwargs})
    out = pp.postprocess_nodes(scored(), query_str="q")
    assert ids(out) == expected


def test_top_n_zero_rejected(fake: FakeReranker) -> None:
    with pytest.raises(ValueError, match="top_n"):
        RerankPostprocessor(reranker=fake, top_n=0)
    pp = RerankPostprocessor(reranker=fake, top_n=None)
    with pytest.raises(RerankInputError, match="top_n"):
        pp.top_n = 0  # rejected on assignment, so later calls are not poisoned
    assert pp.top_n is None
    assert fake.calls == []
    assert len(pp.postprocess_nodes(scored(), query_str="q")) == len(scored())


def test_missing_query_and_empty_input(fake: FakeReranker, recorder: EventRecorder) -> None:
    pp = RerankPostprocessor(reranker=fake)
    with pytest.raises(ValueError, match="query bundle"):
        pp.postprocess_nodes(scored())
    assert pp.postprocess_nodes([], query_str="q") == []
    assert fake.calls == []
    # like first-party rerankers (JinaRerank fires its start event): start + end, no call
    starts = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 1 and starts[0].nodes == [] and ends[0].nodes == []


def test_instruction_construction_override_and_fn(fake: FakeReranker) -> None:
    pp = RerankPostprocessor(
        reranker=fake,
        instruction="configured",
        instruction_fn=lambda q: "latest first" if "latest" in q else None,
    )
    pp.postprocess_nodes(scored(), query_str="solar")
    assert fake.calls[-1].instruction == "configured"
    pp.postprocess_nodes(scored(), query_str="latest solar")
    assert fake.calls[-1].instruction == "latest first"
    with pp.instruction_override("prefer the most recent source"):
        pp.postprocess_nodes(scored(), query_str="latest solar")
        assert fake.calls[-1].instruction == "prefer the most recent source"
        other = RerankPostprocessor(reranker=fake)  # the override is per instance
        other.postprocess_nodes(scored(), query_str="q")
        assert fake.calls[-1].instruction is None
    with pp.instruction_override(""):
        pp.postprocess_nodes(scored(), query_str="latest solar")
        assert fake.calls[-1].instruction is None
    pp.postprocess_nodes(scored(), query_str="solar")  # block left: back to normal
    assert fake.calls[-1].instruction == "configured"
    with pytest.raises(TypeError), pp.instruction_override(3):  # type: ignore[arg-type]
        pass


async def test_instruction_override_is_task_local(fake: FakeReranker) -> None:
    pp = RerankPostprocessor(reranker=fake)

    async def run(instruction: str) -> str | None:
        with pp.instruction_override(instruction):
            await asyncio.sleep(0)
            await pp.apostprocess_nodes(scored(), query_str=instruction)
        return instruction

    await asyncio.gather(run("a"), run("b"), run("c"))
    assert sorted((c.query, c.instruction) for c in fake.calls) == [
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
    ]


async def test_async_equals_sync_and_is_native(fake: FakeReranker) -> None:
    class NoSync(FakeReranker):
        def _score(self, request: Any) -> Any:
            raise AssertionError("the sync path must not be used by the async postprocessor")

        async def _ascore(self, request: Any) -> Any:
            return FakeReranker._score(self, request)

    pp = RerankPostprocessor(reranker=fake, top_n=3, instruction="i")
    sync = pp.postprocess_nodes(scored(), query_str="q")
    asy = await RerankPostprocessor(
        reranker=NoSync(SCORES), top_n=3, instruction="i"
    ).apostprocess_nodes(scored(), query_str="q")
    assert ids(sync) == ids(asy) == EXPECTED_ORDER[:3]
    assert [n.score for n in sync] == [n.score for n in asy]
    assert [n.node.metadata for n in sync] == [n.node.metadata for n in asy]
    assert await pp.apostprocess_nodes([], query_str="q") == []
    with pytest.raises(ValueError):
        await pp.apostprocess_nodes(scored())


def test_events_and_callbacks(fake: FakeReranker, recorder: EventRecorder) -> None:
    cb = CallbackRecorder()
    pp = RerankPostprocessor(reranker=fake, top_n=2, callback_manager=CallbackManager([cb]))
    out = pp.postprocess_nodes(scored(), query_bundle=QueryBundle("solar"))
    starts = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 1
    assert starts[0].top_n == 2 and starts[0].model_name == "fake-reranker"
    assert isinstance(starts[0].query, QueryBundle) and starts[0].query.query_str == "solar"
    assert len(starts[0].nodes) == 4
    assert ids(ends[0].nodes) == ids(out) == EXPECTED_ORDER[:2]
    rr = cb.reranking()
    assert [kind for kind, _ in rr] == ["start", "end"]
    start_payload, end_payload = rr[0][1], rr[1][1]
    assert start_payload is not None and end_payload is not None
    assert start_payload[EventPayload.MODEL_NAME] == "fake-reranker"
    assert start_payload[EventPayload.QUERY_STR] == "solar"
    assert start_payload[EventPayload.TOP_K] == 2
    assert ids(end_payload[EventPayload.NODES]) == EXPECTED_ORDER[:2]


def test_event_top_n_defaults_to_node_count(fake: FakeReranker, recorder: EventRecorder) -> None:
    RerankPostprocessor(reranker=fake, top_n=None).postprocess_nodes(scored(), query_str="q")
    (start,) = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    assert start.top_n == 4


# --- inside query engines ------------------------------------------------------------------


def test_as_query_engine_sync_and_async(fake: FakeReranker, recorder: EventRecorder) -> None:
    pp = RerankPostprocessor(reranker=fake, top_n=2, instruction="prefer recent")
    engine = index().as_query_engine(llm=MockLLM(), similarity_top_k=4, node_postprocessors=[pp])
    response = engine.query("solar growth")
    assert ids(response.source_nodes) == EXPECTED_ORDER[:2]
    assert [n.score for n in response.source_nodes] == [0.95, 0.70]
    assert fake.calls[-1].instruction == "prefer recent"
    assert set(fake.calls[-1].documents) == set(SCORES)
    assert any(isinstance(e, ReRankEndEvent) for e in recorder.events)

    async def run() -> Any:
        with pp.instruction_override("per query"):
            return await engine.aquery("solar growth")

    aresponse = asyncio.run(run())
    assert ids(aresponse.source_nodes) == EXPECTED_ORDER[:2]
    assert fake.calls[-1].instruction == "per query"


async def test_retriever_query_engine_async(fake: FakeReranker) -> None:
    cb = CallbackRecorder()
    pp = RerankPostprocessor(reranker=fake, score_threshold=0.5)
    engine = RetrieverQueryEngine.from_args(
        index().as_retriever(similarity_top_k=4),
        llm=MockLLM(),
        node_postprocessors=[pp],
        callback_manager=CallbackManager([cb]),  # the engine hands it to its postprocessors
    )
    sync = engine.query("solar")
    asy = await engine.aquery("solar")
    assert ids(sync.source_nodes) == ids(asy.source_nodes) == EXPECTED_ORDER[:2]
    assert [n.score for n in asy.source_nodes] == [0.95, 0.70]
    assert [kind for kind, _ in cb.reranking()] == ["start", "end", "start", "end"]


# --- serialisation ---------------------------------------------------------------------------


def test_serialisation_never_contains_the_key() -> None:
    pp = RerankPostprocessor(
        backend="remote", model="m", base_url="http://127.0.0.1:1", api_key=SECRET
    )
    for text in (pp.to_json(), str(pp.to_dict()), repr(pp), str(pp), pp.model_dump_json()):
        assert SECRET not in text
    data = pp.to_dict()
    assert "api_key" not in data and data["class_name"] == "RerankPostprocessor"
    again = RerankPostprocessor.from_json(pp.to_json(), api_key="sk-again")
    assert again.model == "m" and again.api_key is not None
    assert again.api_key.get_secret_value() == "sk-again"


def test_serialisation_round_trip_with_reranker_object(fake: FakeReranker) -> None:
    pp = RerankPostprocessor(
        reranker=fake, top_n=2, score_threshold=0.0, instruction="i", metadata_mode=MetadataMode.LLM
    )
    revived = RerankPostprocessor.from_json(pp.to_json())
    assert revived.top_n == 2 and revived.score_threshold == 0.0
    assert revived.metadata_mode == MetadataMode.LLM
    assert ids(revived.postprocess_nodes(scored(), query_str="q")) == EXPECTED_ORDER[:2]


def test_construction_errors(fake: FakeReranker) -> None:
    with pytest.raises(ValueError, match="not both"):
        RerankPostprocessor(reranker=fake, model="m")
    with pytest.raises(TypeError, match="did you mean 'top_n'"):
        RerankPostprocessor(reranker=fake, top_k=3)  # a typo is not silently ignored


def test_settings_build_lazily_and_follow_changes() -> None:
    path = "rerank_integrations._testing:FakeReranker"
    pp = RerankPostprocessor(
        backend=path, model="m1", reranker_kwargs={"scores": SCORES}, top_n=None
    )
    assert ids(pp.postprocess_nodes(scored(), query_str="q")) == EXPECTED_ORDER
    pp.model = "m2"
    assert pp.get_reranker().model_name == "m2"
    lazy = RerankPostprocessor(backend=path, reranker_kwargs={"scores": 7})  # fails if built
    assert lazy.postprocess_nodes([], query_str="q") == []  # nothing built for empty input
    assert not lazy._lazy().built


# --- end to end with real backends -----------------------------------------------------------


async def test_end_to_end_tiny_local_model(tiny_ctxl_dir: Any) -> None:
    from rerank_integrations import LocalReranker

    pp = RerankPostprocessor(backend="local", model=str(tiny_ctxl_dir), device="cpu", top_n=3)
    engine = index().as_query_engine(llm=MockLLM(), similarity_top_k=4, node_postprocessors=[pp])
    with pp.instruction_override("recent"):
        response = engine.query("solar growth")
        aresponse = await engine.aquery("solar growth")
    nodes = make_nodes()
    direct = LocalReranker(str(tiny_ctxl_dir), device="cpu").rerank(
        "solar growth",
        [n.text for n in nodes],
        instruction="recent",
        metadata=[
            "source: IEA\ndate: 2021-06-01",
            "source: Reuters\ndate: 2024-03-01",
            "source: wiki",
            "source: BNEF\ndate: 2023-01-15",
        ],
        top_n=3,
    )
    expected = [nodes[r.index].node_id for r in direct]
    assert ids(response.source_nodes) == ids(aresponse.source_nodes) == expected
    assert [n.score for n in response.source_nodes] == [r.relevance_score for r in direct]
    assert [n.node.metadata[RAW_SCORE_KEY] for n in response.source_nodes] == [
        r.raw_score for r in direct
    ]
    pp.close()


def test_end_to_end_loopback_server() -> None:
    from helpers.remote_server import RerankTestServer

    with RerankTestServer() as server:
        pp = RerankPostprocessor(
            backend="remote",
            model="m",
            base_url=server.base_url("contextual"),
            api_key=SECRET,
            top_n=None,
        )
        out = pp.postprocess_nodes(scored(), query_str="solar")
        assert [n.score for n in out] == sorted(
            (server.score("solar", n.text) for n in make_nodes()), reverse=True
        )
        (body,) = server.bodies()
        assert body["documents"][0] == "Solar capacity grew 10% in 2021."  # text without metadata
        assert body["metadata"][0] == "source: IEA\ndate: 2021-06-01"  # file_path excluded
        assert SECRET not in pp.to_json()
        pp.close()

"""RerankCompressor inside real LangChain objects (no mocks of LangChain)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.load import dumps, loads
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from rerank_integrations._adapters.calls import RAW_SCORE_KEY, RELEVANCE_SCORE_KEY, SCORE_KEYS
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError
from rerank_integrations.langchain import RerankCompressor

SECRET = "sk-test-very-secret-0123456789"

# raw scores known in advance: expected order old-report < ... by score
SCORES = {
    "Solar capacity grew 10% in 2021.": 0.30,
    "Solar capacity grew 25% in 2024.": 0.95,
    "Wind power basics.": 0.05,
    "Solar panel prices fell in 2023.": 0.70,
}


def corpus() -> list[Document]:
    return [
        Document(
            page_content="Solar capacity grew 10% in 2021.",
            metadata={"source": "IEA", "date": "2021-06-01", "embedding": [0.1, 0.2], "_k": "x"},
            id="d2021",
        ),
        Document(
            page_content="Solar capacity grew 25% in 2024.",
            metadata={"source": "Reuters", "date": "2024-03-01"},
            id="d2024",
        ),
        Document(page_content="Wind power basics.", metadata={"source": "wiki"}, id="dwind"),
        Document(
            page_content="Solar panel prices fell in 2023.",
            metadata={"source": "BNEF", "date": "2023-01-15", "nested": {"a": 1}},
            id="d2023",
        ),
    ]


EXPECTED_ORDER = ["d2024", "d2023", "d2021", "dwind"]


@pytest.fixture
def fake() -> FakeReranker:
    return FakeReranker(SCORES)


def retriever_with(compressor: RerankCompressor) -> ContextualCompressionRetriever:
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=16))
    store.add_documents(corpus())
    base = store.as_retriever(search_kwargs={"k": 4})
    return ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)


def test_compress_orders_writes_scores_and_keeps_ids(fake: FakeReranker) -> None:
    docs = corpus()
    before = copy.deepcopy(docs)
    out = RerankCompressor(reranker=fake, top_n=None).compress_documents(docs, "solar growth")
    assert [d.id for d in out] == EXPECTED_ORDER
    for d in out:
        raw = SCORES[d.page_content]
        assert d.metadata[RELEVANCE_SCORE_KEY] == raw
        assert d.metadata[RAW_SCORE_KEY] == raw
        original = next(o for o in before if o.id == d.id)
        kept = {k: v for k, v in d.metadata.items() if k not in SCORE_KEYS}
        assert kept == original.metadata
    assert docs == before  # inputs untouched (deep compare)
    assert all(RELEVANCE_SCORE_KEY not in d.metadata for d in docs)
    assert all(a is not b for a, b in zip(out, docs, strict=False))


def test_metadata_sent_without_vectors_private_or_nested(fake: FakeReranker) -> None:
    RerankCompressor(reranker=fake).compress_documents(corpus(), "q")
    (call,) = fake.calls
    assert call.documents == tuple(d.page_content for d in corpus())
    assert call.metadata == (
        "source: IEA\ndate: 2021-06-01",
        "source: Reuters\ndate: 2024-03-01",
        "source: wiki",
        "source: BNEF\ndate: 2023-01-15",
    )
    assert "0.1" not in "".join(call.metadata) and "_k" not in "".join(call.metadata)


def test_metadata_keys_formatter_and_off(fake: FakeReranker) -> None:
    RerankCompressor(reranker=fake, metadata_keys=["date"]).compress_documents(corpus(), "q")
    assert fake.calls[-1].metadata == (
        "date: 2021-06-01",
        "date: 2024-03-01",
        "",
        "date: 2023-01-15",
    )
    RerankCompressor(
        reranker=fake, metadata_formatter=lambda m: f"[{m.get('source')}]"
    ).compress_documents(corpus(), "q")
    assert fake.calls[-1].metadata == ("[IEA]", "[Reuters]", "[wiki]", "[BNEF]")
    RerankCompressor(reranker=fake, send_metadata=False).compress_documents(corpus(), "q")
    assert fake.calls[-1].metadata is None


def test_instruction_construction_per_call_and_fn(fake: FakeReranker) -> None:
    c = RerankCompressor(reranker=fake, instruction="prefer recent")
    c.compress_documents(corpus(), "q")
    assert fake.calls[-1].instruction == "prefer recent"
    c.compress_documents(corpus(), "q", instruction="prefer IEA")
    assert fake.calls[-1].instruction == "prefer IEA"
    c.compress_documents(corpus(), "q", instruction="")  # switches it off for this call
    assert fake.calls[-1].instruction is None
    with_fn = RerankCompressor(
        reranker=fake,
        instruction="configured",
        instruction_fn=lambda q: "latest first" if "latest" in q else None,
    )
    with_fn.compress_documents(corpus(), "latest solar")
    assert fake.calls[-1].instruction == "latest first"
    with_fn.compress_documents(corpus(), "solar")  # fn returns None -> configured
    assert fake.calls[-1].instruction == "configured"
    with_fn.compress_documents(corpus(), "latest solar", instruction="per call")  # per call wins
    assert fake.calls[-1].instruction == "per call"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"top_n": 2}, EXPECTED_ORDER[:2]),
        ({"top_n": 4}, EXPECTED_ORDER),  # equal to the length
        ({"top_n": 10}, EXPECTED_ORDER),  # bigger
        ({"score_threshold": 0}, EXPECTED_ORDER),  # 0 is real (keeps >= 0)
        ({"score_threshold": 0.0}, EXPECTED_ORDER),
        ({"score_threshold": 0.3}, EXPECTED_ORDER[:3]),  # >= keeps the exact value
        ({"score_threshold": 0.5, "top_n": 3}, EXPECTED_ORDER[:2]),
        ({"score_threshold": 0.99}, []),
    ],
)
def test_top_n_and_threshold(
    fake: FakeReranker, kwargs: dict[str, Any], expected: list[str]
) -> None:
    out = RerankCompressor(reranker=fake, **{"top_n": None, **kwargs}).compress_documents(
        corpus(), "q"
    )
    assert [d.id for d in out] == expected


def test_per_call_values_override_constructor_values(fake: FakeReranker) -> None:
    # the known defect: a method default shadowing the constructor value
    c = RerankCompressor(reranker=fake, top_n=1, score_threshold=0.9)
    assert [d.id for d in c.compress_documents(corpus(), "q")] == ["d2024"]
    out = c.compress_documents(corpus(), "q", top_n=3, score_threshold=0.0)
    assert [d.id for d in out] == EXPECTED_ORDER[:3]


def test_top_n_zero_is_rejected(fake: FakeReranker) -> None:
    with pytest.raises(ValueError, match="top_n"):
        RerankCompressor(reranker=fake, top_n=0)
    with pytest.raises(RerankInputError, match="top_n"):
        RerankCompressor(reranker=fake).compress_documents(corpus(), "q", top_n=0)
    assert fake.calls == []


def test_empty_input_never_calls_or_builds(fake: FakeReranker) -> None:
    assert RerankCompressor(reranker=fake).compress_documents([], "q") == []
    assert fake.calls == []
    # settings whose build would fail: nothing is built for empty input
    lazy = RerankCompressor(backend="rerank_integrations._testing:FakeReranker", model="m",
                            reranker_kwargs={"scores": 7})  # fmt: skip
    assert lazy.compress_documents([], "q") == []
    assert not lazy._lazy().built


async def test_async_equals_sync(fake: FakeReranker) -> None:
    c = RerankCompressor(reranker=fake, top_n=3, instruction="i", metadata_keys=["source"])
    sync = c.compress_documents(corpus(), "q")
    asy = await c.acompress_documents(corpus(), "q")
    assert sync == asy
    assert fake.calls[0] == fake.calls[1]
    assert await c.acompress_documents([], "q") == []
    assert len(fake.calls) == 2


async def test_acompress_is_native(fake: FakeReranker) -> None:
    class NoSync(FakeReranker):
        def _score(self, request: Any) -> Any:
            raise AssertionError("the sync path must not be used by acompress_documents")

        async def _ascore(self, request: Any) -> Any:
            return FakeReranker._score(self, request)

    r = NoSync(SCORES)
    out = await RerankCompressor(reranker=r, top_n=None).acompress_documents(corpus(), "q")
    assert [d.id for d in out] == EXPECTED_ORDER


def test_inside_contextual_compression_retriever(fake: FakeReranker) -> None:
    retriever = retriever_with(RerankCompressor(reranker=fake, top_n=3, instruction="recent"))
    out = retriever.invoke("solar growth")
    assert [d.id for d in out] == EXPECTED_ORDER[:3]
    assert [d.metadata[RELEVANCE_SCORE_KEY] for d in out] == [0.95, 0.70, 0.30]
    assert fake.calls[-1].instruction == "recent"
    assert set(fake.calls[-1].documents) == set(SCORES)


async def test_inside_contextual_compression_retriever_async(fake: FakeReranker) -> None:
    retriever = retriever_with(RerankCompressor(reranker=fake, top_n=3))
    sync = retriever.invoke("solar growth")
    asy = await retriever.ainvoke("solar growth")
    assert [d.id for d in asy] == [d.id for d in sync] == EXPECTED_ORDER[:3]
    assert asy == sync


async def test_lcel_step(fake: FakeReranker) -> None:
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=16))
    store.add_documents(corpus())
    compressor = RerankCompressor(reranker=fake, top_n=2)
    chain = {
        "documents": store.as_retriever(search_kwargs={"k": 4}),
        "query": RunnablePassthrough(),
    } | compressor.as_runnable()
    assert [d.id for d in chain.invoke("solar")] == EXPECTED_ORDER[:2]
    assert [d.id for d in await chain.ainvoke("solar")] == EXPECTED_ORDER[:2]
    # per-call values through the step's input
    step = compressor.as_runnable()
    out = step.invoke({"documents": corpus(), "query": "q", "top_n": 1, "instruction": "x"})
    assert [d.id for d in out] == ["d2024"] and fake.calls[-1].instruction == "x"
    with pytest.raises(ValueError, match="unexpected"):
        step.invoke({"documents": corpus(), "query": "q", "topn": 1})


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_serialisation_never_contains_the_key() -> None:
    c = RerankCompressor(backend="remote", model="m", base_url="http://127.0.0.1:1", api_key=SECRET)
    texts = [repr(c), str(c), c.model_dump_json(), json.dumps(c.model_dump(mode="json")), dumps(c)]
    for text in texts:
        assert SECRET not in text
    serialized = json.loads(dumps(c))
    assert serialized["kwargs"]["api_key"] == {"lc": 1, "type": "secret", "id": ["RERANK_API_KEY"]}
    revived = loads(
        dumps(c),
        valid_namespaces=["rerank_integrations"],
        allowed_objects=[RerankCompressor],
        secrets_map={"RERANK_API_KEY": "sk-other"},
    )
    assert isinstance(revived, RerankCompressor)
    assert revived.model == "m" and revived.api_key is not None
    assert revived.api_key.get_secret_value() == "sk-other"


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_serialisation_of_a_reranker_object_round_trips(fake: FakeReranker) -> None:
    c = RerankCompressor(reranker=fake, top_n=2, instruction="recent")
    data = c.model_dump()
    assert data["reranker"] == fake.to_config()
    rebuilt = RerankCompressor.model_validate(data)
    assert [d.id for d in rebuilt.compress_documents(corpus(), "q")] == EXPECTED_ORDER[:2]
    revived = loads(
        dumps(c), valid_namespaces=["rerank_integrations"], allowed_objects=[RerankCompressor]
    )
    assert [d.id for d in revived.compress_documents(corpus(), "q")] == EXPECTED_ORDER[:2]


def test_reranker_and_settings_are_exclusive(fake: FakeReranker) -> None:
    with pytest.raises(ValueError, match="not both"):
        RerankCompressor(reranker=fake, model="m")
    with pytest.raises(ValueError, match="not both") as info:
        RerankCompressor(reranker=fake, api_key=SECRET)
    assert SECRET not in str(info.value)
    with pytest.raises(TypeError):  # an unknown argument, as Python's unexpected keyword
        RerankCompressor(reranker=fake, unknown_field=1)


def test_settings_build_lazily_and_rebuild_on_change() -> None:
    path = "rerank_integrations._testing:FakeReranker"
    c = RerankCompressor(backend=path, model="m1", reranker_kwargs={"scores": SCORES}, top_n=None)
    assert c.get_reranker().model_name == "m1"
    assert [d.id for d in c.compress_documents(corpus(), "q")] == EXPECTED_ORDER
    first = c.get_reranker()
    assert c.get_reranker() is first
    c.model = "m2"  # never shadowed by the reranker built from the old settings
    assert c.get_reranker().model_name == "m2"
    copied = c.model_copy(update={"model": "m3"})
    assert copied.get_reranker().model_name == "m3" and c.get_reranker().model_name == "m2"


# --- end to end with real backends -----------------------------------------------------------


def test_end_to_end_tiny_local_model(tiny_ctxl_dir: Any) -> None:
    from rerank_integrations import LocalReranker

    compressor = RerankCompressor(
        backend="local", model=str(tiny_ctxl_dir), device="cpu", top_n=3, instruction="recent"
    )
    retriever = retriever_with(compressor)
    out = retriever.invoke("solar growth")
    assert len(out) == 3
    scores = [d.metadata[RELEVANCE_SCORE_KEY] for d in out]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    # the adapter's scores are exactly what the backend gives for the same texts + metadata
    docs = corpus()
    direct = LocalReranker(str(tiny_ctxl_dir), device="cpu").rerank(
        "solar growth",
        [d.page_content for d in docs],
        instruction="recent",
        metadata=[
            "source: IEA\ndate: 2021-06-01",
            "source: Reuters\ndate: 2024-03-01",
            "source: wiki",
            "source: BNEF\ndate: 2023-01-15",
        ],
        top_n=3,
    )
    assert [d.id for d in out] == [docs[r.index].id for r in direct]
    assert [d.metadata[RAW_SCORE_KEY] for d in out] == [r.raw_score for r in direct]
    compressor.close()


async def test_end_to_end_loopback_server_async() -> None:
    from helpers.remote_server import RerankTestServer

    with RerankTestServer() as server:
        compressor = RerankCompressor(
            backend="remote",
            model="m",
            api_format="contextual",
            base_url=server.base_url("contextual"),
            api_key=SECRET,
            instruction="prefer recent",
            top_n=None,
        )
        out = await compressor.acompress_documents(corpus(), "solar")
        assert [d.metadata[RELEVANCE_SCORE_KEY] for d in out] == sorted(
            (server.score("solar", d.page_content) for d in corpus()), reverse=True
        )
        (body,) = server.bodies()
        assert body["instruction"] == "prefer recent"
        assert body["metadata"][0] == "source: IEA\ndate: 2021-06-01"
        assert SECRET not in compressor.model_dump_json()
        compressor.close()

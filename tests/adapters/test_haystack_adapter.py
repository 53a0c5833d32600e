"""RerankRanker in real Haystack 3 pipelines (no mocks of Haystack objects).

The deterministic ``FakeReranker`` (scores known in advance, every request recorded) gives the
ordering assertions; the end-to-end runs with real backends are at the bottom.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import yaml
from haystack import DeserializationError, Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import ComponentDevice, Secret

from rerank_integrations._adapters.calls import RAW_SCORE_KEY
from rerank_integrations._testing import FakeReranker
from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.errors import RerankInputError, RerankTypeError
from rerank_integrations.haystack import RerankRanker
from rerank_integrations.metadata import format_metadata

FAKE = "rerank_integrations._testing:FakeReranker"
QUERY = "solar panel efficiency record"

# Every text contains a query word so BM25 retrieves all of them. Raw scores outside [0, 1]
# show the difference between the relevance score (clipped) and the raw score.
DOCS = [
    Document(
        id="a",
        content="solar panel efficiency record set in 2019",
        meta={"date": "2019-03-01", "source": "Old Gazette", "embedding": [0.1, 0.2], "_tok": 7},
    ),
    Document(
        id="b",
        content="new solar panel efficiency record announced",
        meta={"date": "2024-06-01", "source": "Science Daily", "_private": "internal"},
    ),
    Document(id="c", content="panel discussion about weather", meta={"source": "Blog"}),
    Document(id="d", content="solar record of the decade", meta={"date": "2021-01-01"}),
    Document(id="e", content="record rainfall in spring", meta={}),
]
SCORES = {
    DOCS[0].content: 0.4,
    DOCS[1].content: 3.5,  # relevance 1.0
    DOCS[2].content: -2.0,  # relevance 0.0
    DOCS[3].content: 0.7,
    DOCS[4].content: 0.05,
}
EXPECTED_ORDER = ["b", "d", "a", "e", "c"]


def relevance(raw: float) -> float:
    return min(1.0, max(0.0, raw))


def fake() -> FakeReranker:
    return FakeReranker(SCORES)


def fake_config() -> dict[str, Any]:
    return fake().to_config()


def ids(result: dict[str, list[Document]]) -> list[str]:
    return [d.id for d in result["documents"]]


def make_pipeline(ranker: RerankRanker, *, docs: Sequence[Document] = DOCS) -> Pipeline:
    store = InMemoryDocumentStore(index=f"hs-test-{uuid.uuid4()}")
    store.write_documents(list(docs))
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=10))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def pipeline_inputs(**ranker_args: Any) -> dict[str, Any]:
    return {"retriever": {"query": QUERY}, "ranker": {"query": QUERY, **ranker_args}}


def instruction_for_query(query: str) -> str | None:
    """Module-level so that it serialises by import path."""
    return "prefer tables" if "table" in query else None


def formatter(meta: Any) -> str:
    return "|".join(f"{k}={meta[k]}" for k in sorted(meta))


# -- pipelines: sync, async, YAML ---------------------------------------------------------------


def test_pipeline_orders_by_reranker_scores_and_writes_scores() -> None:
    pipeline = make_pipeline(RerankRanker(fake(), top_k=None))
    retrieved = pipeline.run(pipeline_inputs(), include_outputs_from={"retriever"})
    bm25_ids = ids(retrieved["retriever"])
    assert sorted(bm25_ids) == sorted(EXPECTED_ORDER)
    assert bm25_ids != EXPECTED_ORDER  # the reranker really changes the order
    out = retrieved["ranker"]["documents"]
    assert [d.id for d in out] == EXPECTED_ORDER
    by_id = {d.id: d for d in DOCS}
    for doc in out:
        raw = SCORES[doc.content]
        assert doc.score == relevance(raw)
        assert doc.meta[RAW_SCORE_KEY] == raw
        assert {k: v for k, v in doc.meta.items() if k != RAW_SCORE_KEY} == by_id[doc.id].meta
        assert doc.content == by_id[doc.id].content


async def test_async_pipeline_equals_sync() -> None:
    sync_out = make_pipeline(RerankRanker(fake(), top_k=3, instruction="x")).run(pipeline_inputs())
    async_ranker = RerankRanker(fake(), top_k=3, instruction="x")
    async_out = await make_pipeline(async_ranker).run_async(pipeline_inputs())
    assert ids(async_out["ranker"]) == EXPECTED_ORDER[:3]
    assert async_out["ranker"]["documents"] == sync_out["ranker"]["documents"]


async def test_component_run_async_equals_run_with_overrides() -> None:
    args = {"top_k": 2, "instruction": "prefer news", "score_threshold": 0.05}
    r1, r2 = fake(), fake()
    sync = RerankRanker(r1, meta_fields_to_embed=["source"]).run(QUERY, DOCS, **args)
    asyn = await RerankRanker(r2, meta_fields_to_embed=["source"]).run_async(QUERY, DOCS, **args)
    assert sync == asyn
    assert ids(sync) == ["b", "d"]
    assert r1.calls == r2.calls  # the reranker received exactly the same request


def test_yaml_round_trip_needs_allowlist_and_gives_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", raising=False)
    ranker = RerankRanker(fake(), top_k=4, score_threshold=0.0, instruction="prefer recent")
    pipeline = make_pipeline(ranker)
    expected = pipeline.run(pipeline_inputs())["ranker"]["documents"]
    text = pipeline.dumps()
    assert FAKE in text  # the reranker travels as its to_config()

    with pytest.raises(DeserializationError, match="rerank_integrations"):
        Pipeline.loads(text)  # Haystack 3 refuses modules that are not allow-listed

    loaded = Pipeline.loads(text, allowed_modules=["rerank_integrations"])
    assert loaded.run(pipeline_inputs())["ranker"]["documents"] == expected
    assert yaml.safe_load(loaded.dumps()) == yaml.safe_load(text)


async def test_yaml_round_trip_with_env_allowlist_runs_async(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = make_pipeline(RerankRanker(backend=FAKE, reranker_kwargs={"scores": SCORES}))
    expected = pipeline.run(pipeline_inputs(top_k=2))["ranker"]["documents"]
    assert [d.id for d in expected] == EXPECTED_ORDER[:2]
    monkeypatch.setenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", "rerank_integrations")
    loaded = Pipeline.loads(pipeline.dumps())
    out = await loaded.run_async(pipeline_inputs(top_k=2))
    assert out["ranker"]["documents"] == expected


def test_custom_backend_path_goes_through_the_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", raising=False)
    data = RerankRanker(fake()).to_dict()
    # The component module itself is allowed for this call, the backend module is not.
    pipeline_dict = {
        "components": {"ranker": data},
        "connections": [],
    }
    with pytest.raises(DeserializationError, match=r"rerank_integrations\._testing"):
        Pipeline.from_dict(pipeline_dict, allowed_modules=["rerank_integrations.haystack"])
    allowed = ["rerank_integrations.haystack", "rerank_integrations._testing"]
    loaded = Pipeline.from_dict(pipeline_dict, allowed_modules=allowed)
    out = loaded.run({"ranker": {"query": QUERY, "documents": DOCS}})
    assert ids(out["ranker"]) == EXPECTED_ORDER


# -- top_k / score_threshold ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top_k", "expected"),
    [(1, EXPECTED_ORDER[:1]), (5, EXPECTED_ORDER), (50, EXPECTED_ORDER), (None, EXPECTED_ORDER)],
)
def test_top_k_edge_cases(top_k: int | None, expected: list[str]) -> None:
    assert ids(RerankRanker(fake(), top_k=top_k).run(QUERY, DOCS)) == expected
    assert ids(RerankRanker(fake(), top_k=2).run(QUERY, DOCS, top_k=top_k)) == (
        expected if top_k is not None else EXPECTED_ORDER[:2]  # run-time None: the init value
    )


def test_top_k_zero_is_rejected_before_any_work() -> None:
    with pytest.raises(RerankInputError, match="top_k"):
        RerankRanker(fake(), top_k=0)
    reranker = fake()
    ranker = RerankRanker(reranker)
    for bad, exc in ((0, RerankInputError), (-1, RerankInputError), (True, RerankTypeError)):
        with pytest.raises(exc, match="top_k"):
            ranker.run(QUERY, DOCS, top_k=bad)
    with pytest.raises(RerankInputError, match="top_k"):
        ranker.run(QUERY, [], top_k=0)  # empty input does not hide a bad argument
    assert reranker.calls == []


def test_default_top_k_is_ten() -> None:
    many = [Document(content=f"doc {i}") for i in range(15)]
    assert len(RerankRanker(FakeReranker()).run(QUERY, many)["documents"]) == 10


def test_score_threshold_zero_is_a_real_value_and_inclusive() -> None:
    ranker = RerankRanker(fake(), top_k=None, score_threshold=0.5)
    assert ids(ranker.run(QUERY, DOCS)) == ["b", "d"]
    # 0.0 per call overrides the init 0.5 (never `x or self.x`); the 0.0-scored "c" is kept.
    assert ids(ranker.run(QUERY, DOCS, score_threshold=0.0)) == EXPECTED_ORDER
    assert ids(ranker.run(QUERY, DOCS, score_threshold=0.7)) == ["b", "d"]  # >= keeps 0.7
    assert ids(ranker.run(QUERY, DOCS, score_threshold=0.71)) == ["b"]
    assert ids(ranker.run(QUERY, DOCS, score_threshold=1.5)) == []


def test_threshold_is_applied_before_top_k() -> None:
    out = RerankRanker(fake(), top_k=3, score_threshold=0.3).run(QUERY, DOCS)
    assert ids(out) == ["b", "d", "a"]
    out = RerankRanker(fake(), top_k=3).run(QUERY, DOCS, score_threshold=0.6)
    assert ids(out) == ["b", "d"]


def test_bad_threshold_rejected() -> None:
    with pytest.raises(RerankInputError, match="score_threshold"):
        RerankRanker(fake(), score_threshold=float("nan"))
    with pytest.raises(RerankTypeError, match="score_threshold"):
        RerankRanker(fake()).run(QUERY, DOCS, score_threshold="high")  # type: ignore[arg-type]


# -- instruction and metadata reach the reranker exactly as documented ---------------------------


def test_instruction_precedence() -> None:
    reranker = fake()
    ranker = RerankRanker(reranker, instruction="configured", instruction_fn=instruction_for_query)
    ranker.run(QUERY, DOCS)  # instruction_fn returns None -> configured
    ranker.run("best table layout", DOCS)  # instruction_fn wins over configured
    ranker.run("best table layout", DOCS, instruction="per call")  # per call wins over both
    ranker.run(QUERY, DOCS, instruction="")  # "" switches it off for this call
    assert [c.instruction for c in reranker.calls] == [
        "configured",
        "prefer tables",
        "per call",
        None,
    ]
    table = "best table layout"
    assert [c.query for c in reranker.calls] == [QUERY, table, table, QUERY]


def test_default_sends_metadata_to_a_slot_like_the_other_adapters() -> None:
    # meta_fields_to_embed=None embeds nothing in the TEXT (as Haystack's rankers); a reranker
    # with a metadata slot gets the metadata in its slot, as in LangChain and LlamaIndex
    reranker = fake()
    RerankRanker(reranker).run(QUERY, DOCS)
    (call,) = reranker.calls
    assert call.documents == tuple(d.content for d in DOCS)
    assert call.metadata == tuple(format_metadata(d.meta) for d in DOCS)


def test_send_metadata_true_sends_every_field_without_embeddings_or_private_keys() -> None:
    reranker = fake()
    RerankRanker(reranker, send_metadata=True).run(QUERY, DOCS)
    (call,) = reranker.calls
    assert call.documents == tuple(d.content for d in DOCS)  # text only, no metadata inside
    assert call.metadata == (
        "date: 2019-03-01\nsource: Old Gazette",
        "date: 2024-06-01\nsource: Science Daily",
        "source: Blog",
        "date: 2021-01-01",
        "",
    )
    assert call.metadata == tuple(format_metadata(d.meta) for d in DOCS)


@pytest.mark.parametrize("name", ["meta_fields_to_embed", "metadata_keys"])
def test_meta_fields_to_embed_selects_and_orders_fields(name: str) -> None:
    reranker = fake()
    ranker = RerankRanker(reranker, **{name: ["source", "date", "_private", "embedding"]})
    ranker.run(QUERY, DOCS)
    assert reranker.calls[0].metadata == (
        "source: Old Gazette\ndate: 2019-03-01",
        "source: Science Daily\ndate: 2024-06-01",
        "source: Blog",
        "date: 2021-01-01",
        "",
    )
    assert ranker.to_dict()["init_parameters"][name] == [
        "source",
        "date",
        "_private",
        "embedding",
    ]


def test_metadata_keys_wins_for_the_metadata_field() -> None:
    reranker = fake()
    RerankRanker(reranker, meta_fields_to_embed=["source"], metadata_keys=["date"]).run(QUERY, DOCS)
    assert reranker.calls[0].metadata is not None
    assert reranker.calls[0].metadata[0] == "date: 2019-03-01"
    assert reranker.calls[0].documents == tuple(d.content for d in DOCS)  # never both


def test_metadata_formatter_and_send_metadata_false() -> None:
    reranker = fake()
    RerankRanker(reranker, metadata_formatter=formatter, meta_fields_to_embed=["source"]).run(
        QUERY, DOCS[:2]
    )
    assert reranker.calls[0].metadata == ("source=Old Gazette", "source=Science Daily")
    reranker = fake()
    RerankRanker(reranker, send_metadata=False).run(QUERY, DOCS)
    assert reranker.calls[0].metadata is None


def test_score_keys_from_an_earlier_rerank_are_not_sent() -> None:
    first = RerankRanker(fake()).run(QUERY, DOCS)["documents"]
    reranker = fake()
    second = RerankRanker(reranker).run(QUERY, first)["documents"]
    assert all(RAW_SCORE_KEY not in m for m in reranker.calls[0].metadata or ())
    assert [d.id for d in second] == EXPECTED_ORDER


def test_document_without_content_is_sent_as_empty_text() -> None:
    reranker = FakeReranker({"": 0.9, "x": 0.1})
    out = RerankRanker(reranker).run(QUERY, [Document(content="x"), Document(meta={"k": "v"})])
    assert reranker.calls[0].documents == ("x", "")
    assert [d.content for d in out["documents"]] == [None, "x"]


# -- inputs, duplicates, empty input, validation --------------------------------------------------


def test_inputs_are_never_mutated() -> None:
    docs = [copy.deepcopy(d) for d in DOCS]
    docs[0] = Document(id="a", content=DOCS[0].content, meta=dict(DOCS[0].meta), score=0.3)
    snapshot = copy.deepcopy(docs)
    metas = [d.meta for d in docs]
    out = RerankRanker(fake(), top_k=None).run(QUERY, docs)["documents"]
    assert docs == snapshot
    assert [d.meta for d in docs] == [s.meta for s in snapshot]
    assert all(d.meta is m for d, m in zip(docs, metas, strict=True))
    assert all(RAW_SCORE_KEY not in d.meta for d in docs)
    assert docs[0].score == 0.3
    assert not any(o is d or o.meta is d.meta for o in out for d in docs)


def test_duplicates_by_id_keep_the_best_incoming_score_and_are_scored_once() -> None:
    weak = Document(id="dup", content=DOCS[1].content, meta={"source": "mirror"}, score=0.2)
    strong = Document(id="dup", content=DOCS[1].content, meta={"source": "origin"}, score=0.9)
    unscored = Document(id="dup", content=DOCS[1].content, meta={"source": "none"})
    reranker = fake()
    out = RerankRanker(reranker, top_k=None, send_metadata=True).run(
        QUERY, [DOCS[0], weak, unscored, strong, DOCS[3]]
    )
    assert ids(out) == ["dup", "d", "a"]
    assert out["documents"][0].meta["source"] == "origin"
    assert out["documents"][0].score == 1.0  # the reranker's score replaces the incoming one
    (call,) = reranker.calls
    assert call.documents == (DOCS[0].content, DOCS[1].content, DOCS[3].content)
    assert call.metadata is not None and "source: origin" in call.metadata[1]


async def test_empty_documents_return_empty_without_building_or_calling() -> None:
    # A backend that cannot be imported proves that neither warm_up nor the reranker ran.
    ranker = RerankRanker(backend="no_such_module_for_tests:Nope", instruction_fn=_boom)
    assert ranker.run(QUERY, []) == {"documents": []}
    assert await ranker.run_async(QUERY, []) == {"documents": []}
    with pytest.raises(RerankInputError) as info:  # typed, naming the field, before any build
        ranker.run(QUERY, DOCS[:1])
    assert info.value.field == "backend"
    with pytest.raises(RerankInputError, match="backend"):
        RerankRanker(backend="not-a-backend")
    # the other adapters reject such a backend at construction (typed, naming the field)
    reranker = fake()
    assert RerankRanker(reranker).run(QUERY, []) == {"documents": []}
    assert reranker.calls == []


def _boom(query: str) -> str | None:
    raise AssertionError("instruction_fn must not be called for empty input")


def test_bad_inputs_raise_typed_errors_naming_the_field() -> None:
    reranker = fake()
    ranker = RerankRanker(reranker)
    with pytest.raises(RerankInputError, match="query"):
        ranker.run("  ", DOCS)
    with pytest.raises(RerankTypeError, match=r"documents\[1\]"):
        ranker.run(QUERY, [DOCS[0], "not a document"])  # type: ignore[list-item]
    with pytest.raises(RerankTypeError, match="instruction"):
        ranker.run(QUERY, DOCS, instruction=3)  # type: ignore[arg-type]
    assert reranker.calls == []
    with pytest.raises(RerankInputError, match="reranker"):
        RerankRanker(fake(), model="m")
    assert RerankRanker().backend == "local"  # as Haystack's rankers: a local model by default
    with pytest.raises(RerankTypeError, match="reranker"):
        RerankRanker(object())  # type: ignore[arg-type]
    with pytest.raises(RerankInputError, match="device"):
        RerankRanker(backend="remote", device=ComponentDevice.from_str("cpu"))
    with pytest.raises(RerankTypeError, match="api_key"):
        RerankRanker(backend="remote", api_key="sk-plain")  # type: ignore[arg-type]


# -- lifecycle ------------------------------------------------------------------------------------


def test_warm_up_builds_lazily_and_close_releases_what_it_built() -> None:
    ranker = RerankRanker(fake_config())
    # Not built by __init__: the first run warms up by itself.
    assert ids(ranker.run(QUERY, DOCS)) == EXPECTED_ORDER
    first = ranker.to_dict()
    ranker.close()
    assert ids(ranker.run(QUERY, DOCS)) == EXPECTED_ORDER  # a fresh reranker is built
    assert ranker.to_dict() == first

    given = fake()
    owner = RerankRanker(given)
    owner.warm_up()
    owner.close()
    assert given.closed is False  # the caller's reranker is the caller's to close


async def test_close_async_closes_the_built_reranker() -> None:
    ranker = RerankRanker(fake_config())
    await ranker.warm_up_async()
    built = ranker._lazy().get()
    assert isinstance(built, FakeReranker)
    await ranker.close_async()
    assert built.closed is True


def test_backend_kwargs_is_gone() -> None:
    with pytest.raises(TypeError, match="backend_kwargs"):
        RerankRanker(backend=FAKE, backend_kwargs={"scores": SCORES})  # type: ignore[call-arg]
    assert not hasattr(RerankRanker(backend=FAKE), "backend_kwargs")


def test_meta_fields_to_embed_must_be_a_list_not_a_str() -> None:
    with pytest.raises(RerankTypeError) as info:
        RerankRanker(fake(), meta_fields_to_embed="date")  # type: ignore[arg-type]
    assert info.value.field == "meta_fields_to_embed"


# -- serialisation and secrets --------------------------------------------------------------------


def test_to_dict_never_contains_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-DO-NOT-LEAK-4242"
    monkeypatch.setenv("CONTEXTUAL_API_KEY", secret)
    monkeypatch.setenv("MY_RERANK_KEY", secret)
    with_env = RerankRanker(backend="remote", api_key=Secret.from_env_var("MY_RERANK_KEY"))
    default = RerankRanker(backend="remote", model="ctxl-rerank-v2-instruct-multilingual")
    given = RerankRanker(RemoteReranker())  # key read from CONTEXTUAL_API_KEY by the backend
    for ranker in (with_env, default, given):
        ranker.warm_up()  # resolves the key and builds the client: still nothing serialised
        data = ranker.to_dict()
        assert secret not in repr(data)
        pipeline = Pipeline()
        pipeline.add_component("ranker", ranker)
        assert secret not in pipeline.dumps()
        assert secret not in repr(ranker)
    assert with_env.to_dict()["init_parameters"]["api_key"] == {
        "type": "env_var",
        "env_vars": ["MY_RERANK_KEY"],
        "strict": True,
    }
    assert default.to_dict()["init_parameters"]["api_key"] is None  # the backend's own policy
    token_ranker = RerankRanker(backend="remote", api_key=Secret.from_token(secret))
    with pytest.raises(ValueError, match="token"):
        token_ranker.to_dict()  # Haystack refuses to serialise a token secret
    with pytest.raises(RerankInputError, match="api_key"):
        RerankRanker(backend="local", api_key=Secret.from_env_var("MY_RERANK_KEY"))


def test_to_dict_from_dict_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    allow = "rerank_integrations,test_haystack_adapter"
    monkeypatch.setenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", allow)
    ranker = RerankRanker(
        backend="remote",
        model="ctxl-rerank-v2-instruct-multilingual",
        base_url="http://127.0.0.1:9/v1",
        api_format="contextual",
        api_key=Secret.from_env_var(["MY_KEY", "CONTEXTUAL_API_KEY"]),
        reranker_kwargs={"timeout": 5.0},
        top_k=3,
        score_threshold=0.0,
        instruction="prefer recent",
        instruction_fn=instruction_for_query,
        metadata_keys=["date"],
        metadata_formatter=formatter,
        send_metadata=False,
    )
    data = ranker.to_dict()
    assert data["type"] == "rerank_integrations.haystack.RerankRanker"
    params = data["init_parameters"]
    assert params["instruction_fn"] == "test_haystack_adapter.instruction_for_query"
    assert params["metadata_formatter"] == "test_haystack_adapter.formatter"
    assert params["score_threshold"] == 0.0
    before = copy.deepcopy(data)
    rebuilt = RerankRanker.from_dict(data)
    assert data == before  # from_dict does not modify its input
    assert rebuilt.to_dict() == data
    assert rebuilt.instruction_fn is instruction_for_query
    assert rebuilt.api_key == Secret.from_env_var(["MY_KEY", "CONTEXTUAL_API_KEY"])


def test_reranker_object_serialises_via_to_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", "rerank_integrations")
    data = RerankRanker(fake(), top_k=2).to_dict()
    assert data["init_parameters"]["reranker"] == fake_config()
    rebuilt = RerankRanker.from_dict(data)
    assert ids(rebuilt.run(QUERY, DOCS)) == EXPECTED_ORDER[:2]
    assert rebuilt.to_dict() == data


def test_from_dict_refuses_unlisted_callables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", "rerank_integrations")
    data = RerankRanker(fake(), instruction_fn=instruction_for_query).to_dict()
    with pytest.raises(DeserializationError, match="test_haystack_adapter"):
        RerankRanker.from_dict(data)


def test_reassigned_attributes_are_honoured() -> None:
    reranker = fake()
    ranker = RerankRanker(reranker, top_k=2)
    ranker.top_k = 3
    ranker.instruction = "changed"
    ranker.meta_fields_to_embed = ["source"]
    assert ids(ranker.run(QUERY, DOCS)) == EXPECTED_ORDER[:3]
    assert reranker.calls[-1].instruction == "changed"
    sources = ("source: Old Gazette", "source: Science Daily", "source: Blog", "", "")
    assert reranker.calls[-1].metadata == sources
    ranker.top_k = 0
    with pytest.raises(RerankInputError, match="top_k"):
        ranker.run(QUERY, DOCS)
    assert len(reranker.calls) == 1


def test_changed_backend_settings_rebuild_the_reranker() -> None:
    ranker = RerankRanker(backend=FAKE, reranker_kwargs={"scores": SCORES}, top_k=None)
    assert ids(ranker.run(QUERY, DOCS)) == EXPECTED_ORDER
    ranker.reranker_kwargs = {"scores": {d.content: float(i) / 10 for i, d in enumerate(DOCS)}}
    assert ids(ranker.run(QUERY, DOCS)) == ["e", "d", "c", "b", "a"]


# -- end to end with a real backend: RemoteReranker over real HTTP on 127.0.0.1 ------------------

REMOTE_SCORES = {
    DOCS[3].content: 0.9,
    DOCS[0].content: 0.6,
    DOCS[1].content: 0.3,
    DOCS[4].content: 0.2,
    DOCS[2].content: 0.1,
}


@pytest.fixture
def server() -> Iterator[Any]:
    from helpers.remote_server import RerankTestServer

    with RerankTestServer() as srv:
        srv.scores = dict(REMOTE_SCORES)
        yield srv


def remote_ranker(server: Any, **kwargs: Any) -> RerankRanker:
    return RerankRanker(
        backend="remote",
        model="ctxl-rerank-v2-instruct-multilingual",
        api_format="contextual",
        base_url=server.base_url("contextual"),
        api_key=Secret.from_env_var("HS_TEST_RERANK_KEY"),
        instruction="prefer the most recent source",
        meta_fields_to_embed=["date", "source"],
        **kwargs,
    )


async def test_remote_backend_end_to_end(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_TEST_RERANK_KEY", "sk-loopback-777")
    monkeypatch.setenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", "rerank_integrations")
    pipeline = make_pipeline(remote_ranker(server, top_k=3))
    out = pipeline.run(pipeline_inputs())["ranker"]["documents"]
    assert [d.id for d in out] == ["d", "a", "b"]
    assert [d.score for d in out] == [0.9, 0.6, 0.3]
    assert [d.meta[RAW_SCORE_KEY] for d in out] == [0.9, 0.6, 0.3]

    request = server.requests[0]
    assert request.headers["Authorization"] == "Bearer sk-loopback-777"
    body = request.body
    assert body["query"] == QUERY
    assert body["model"] == "ctxl-rerank-v2-instruct-multilingual"
    assert body["instruction"] == "prefer the most recent source"
    sent = dict(zip(body["documents"], body["metadata"], strict=True))
    assert sent[DOCS[0].content] == "date: 2019-03-01\nsource: Old Gazette"
    assert sent[DOCS[1].content] == "date: 2024-06-01\nsource: Science Daily"
    assert sent[DOCS[4].content] == ""
    assert "embedding" not in repr(body) and "_private" not in repr(body)

    text = pipeline.dumps()
    assert "sk-loopback-777" not in text
    loaded = Pipeline.loads(text)
    assert (await loaded.run_async(pipeline_inputs()))["ranker"]["documents"] == out
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-loopback-777"
    pipeline.close()
    await loaded.close_async()


def test_remote_backend_errors_surface(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.remote_server import Fault

    from rerank_integrations.errors import RemoteStatusError

    monkeypatch.setenv("HS_TEST_RERANK_KEY", "sk-loopback-777")
    server.script.extend([Fault.error(401)])
    ranker = remote_ranker(server, reranker_kwargs={"max_retries": 0})
    with pytest.raises(RemoteStatusError) as info:
        ranker.run(QUERY, DOCS)
    assert "sk-loopback-777" not in str(info.value)
    # Inside a pipeline, Haystack wraps run-time errors; the RerankError is the cause.
    from haystack.core.errors import PipelineRuntimeError

    server.script.extend([Fault.error(401)])
    pipeline = Pipeline()
    pipeline.add_component("ranker", remote_ranker(server, reranker_kwargs={"max_retries": 0}))
    with pytest.raises(PipelineRuntimeError) as wrapped:
        pipeline.run({"ranker": {"query": QUERY, "documents": DOCS}})
    assert isinstance(wrapped.value.__cause__, RemoteStatusError)


# -- end to end with a real backend: LocalReranker on a tiny random-weight model ------------------


async def test_local_backend_end_to_end(tiny_ctxl_dir: Any) -> None:
    from rerank_integrations.backends.local import LocalReranker

    ranker = RerankRanker(
        backend="local",
        model=str(tiny_ctxl_dir),
        device=ComponentDevice.from_str("cpu"),
        instruction="prefer the most recent source",
        meta_fields_to_embed=["date", "source"],
        top_k=None,
    )
    pipeline = make_pipeline(ranker)
    out = pipeline.run(pipeline_inputs())["ranker"]["documents"]
    assert (await pipeline.run_async(pipeline_inputs()))["ranker"]["documents"] == out
    # The same scores as the backend called directly with the documented mapping.
    with LocalReranker(str(tiny_ctxl_dir), device="cpu") as direct:
        expected = direct.rerank(
            QUERY,
            [d.content or "" for d in DOCS],
            instruction="prefer the most recent source",
            metadata=[format_metadata(d.meta, keys=["date", "source"]) for d in DOCS],
        )
    assert [d.id for d in out] == [DOCS[r.index].id for r in expected]
    assert [d.score for d in out] == pytest.approx([r.relevance_score for r in expected])
    assert [d.meta[RAW_SCORE_KEY] for d in out] == pytest.approx([r.raw_score for r in expected])
    pipeline.close()


def test_unserialisable_callables_fail_loudly_at_to_dict() -> None:
    from haystack.core.errors import SerializationError

    ranker = RerankRanker(fake(), instruction_fn=lambda q: None)
    assert ids(ranker.run(QUERY, DOCS)) == EXPECTED_ORDER[:5]  # usable, just not serialisable
    with pytest.raises(SerializationError, match="lambda"):
        ranker.to_dict()


def test_without_haystack_the_import_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['haystack'] = None\n"
        "from rerank_integrations.errors import MissingExtraError\n"
        "try:\n"
        "    import rerank_integrations.haystack\n"
        "except MissingExtraError as e:\n"
        "    print('MISSING', e.install_command)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'MISSING pip install "rerank-integrations[haystack]"' in out.stdout

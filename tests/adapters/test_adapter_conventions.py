"""The per-framework conventions of docs/{langchain,llamaindex,haystack}.md that the side-by-side
tests (test_migrating.py) do not already pin: defaults, which reranker has a metadata slot,
Haystack's extra parameters, the LlamaIndex async span."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rerank_integrations._adapters.calls import RerankOptions, metadata_enabled
from rerank_integrations._testing import FakeReranker
from rerank_integrations.errors import RerankInputError

SCORES = {"a": 0.2, "b": 0.9, "c": 0.5, "d": 0.1}


def test_defaults_follow_each_framework() -> None:
    from rerank_integrations.haystack import RerankRanker
    from rerank_integrations.langchain import RerankCompressor
    from rerank_integrations.llama_index import RerankPostprocessor

    assert RerankCompressor(reranker=FakeReranker()).top_n == 3
    assert RerankPostprocessor(reranker=FakeReranker()).top_n == 2
    ranker = RerankRanker(model="some/model")  # no backend: local, as Haystack's rankers
    assert ranker.backend == "local" and ranker.top_k == 10
    assert ranker.embedding_separator == "\n" and ranker.scale_score is True
    assert ranker.meta_fields_to_embed is None


def test_metadata_slot_decision(tiny_xlmr_dir: Path, tiny_ctxl_dir: Path) -> None:
    from rerank_integrations import LocalReranker, RemoteReranker

    url = "http://127.0.0.1:9"
    ctxl = LocalReranker(str(tiny_ctxl_dir), device="cpu")
    cross = LocalReranker(str(tiny_xlmr_dir), device="cpu")
    contextual = RemoteReranker("m", api_format="contextual", base_url=url)
    jina = RemoteReranker("m", api_format="jina", base_url=url)
    folded = RemoteReranker("m", api_format="jina", base_url=url, fold_unsupported=True)
    try:
        assert ctxl.has_metadata_slot and contextual.has_metadata_slot
        assert not cross.has_metadata_slot and not jina.has_metadata_slot
        assert not folded.has_metadata_slot  # folding is not a slot
        assert FakeReranker().has_metadata_slot  # a custom reranker that accepts metadata
        default = RerankOptions()
        assert metadata_enabled(default, ctxl) and not metadata_enabled(default, cross)
        assert metadata_enabled(RerankOptions(metadata_keys=["a"]), cross)  # opt-in: folded
        assert not metadata_enabled(RerankOptions(metadata_keys=["a"]), jina)  # cannot take it
        assert metadata_enabled(RerankOptions(send_metadata=True), jina)  # raises when called
        assert not metadata_enabled(RerankOptions(send_metadata=False), ctxl)
    finally:
        for r in (ctxl, cross, contextual, jina, folded):
            r.close()


def test_langchain_plain_model_scores_page_content_only(tiny_xlmr_dir: Path) -> None:
    """No metadata reaches a cross-encoder by default (the migration trap): the scores equal
    the model's scores of page_content alone."""
    from langchain_core.documents import Document

    from rerank_integrations import LocalReranker
    from rerank_integrations.langchain import RerankCompressor

    docs = [Document(page_content=t, metadata={"source": s}) for t, s in
            [("Paris is in France.", "atlas"), ("Tea is green.", "blog")]]  # fmt: skip
    c = RerankCompressor(model=str(tiny_xlmr_dir), device="cpu", top_n=None)
    out = c.compress_documents(docs, "capital of France")
    direct = LocalReranker(str(tiny_xlmr_dir), device="cpu")
    expected = direct.rerank("capital of France", [d.page_content for d in docs])
    assert [d.metadata["rerank_raw_score"] for d in out] == [r.raw_score for r in expected]
    with_meta = RerankCompressor(model=str(tiny_xlmr_dir), device="cpu", metadata_keys=["source"])
    folded = with_meta.compress_documents(docs, "capital of France")  # opt-in: folded in
    assert [d.metadata["rerank_raw_score"] for d in folded] != [r.raw_score for r in expected]
    for r in (c, with_meta, direct):
        r.close()


def test_haystack_text_prefixes_and_separator() -> None:
    from haystack import Document

    from rerank_integrations.haystack import RerankRanker

    class NoSlot(FakeReranker):
        has_metadata_slot = False

    fake = NoSlot(SCORES)
    ranker = RerankRanker(
        fake, meta_fields_to_embed=["title", "missing", "none"], embedding_separator=" | ",
        query_prefix="Q: ", query_suffix=" ?", document_prefix="<", document_suffix=">",
    )  # fmt: skip
    docs = [Document(content="a", meta={"title": "T", "none": None, "n": 1})]
    ranker.run(query="q", documents=docs)
    (call,) = fake.calls
    assert call.query == "Q: q ?"
    assert call.documents == ("<T | a>",) and call.metadata is None
    slot = FakeReranker(SCORES)  # a slot model: the same fields in the slot, plain text
    RerankRanker(slot, meta_fields_to_embed=["title"], document_prefix="<").run(
        query="q", documents=docs
    )
    assert slot.calls[0].documents == ("<a",) and slot.calls[0].metadata == ("title: T",)


def test_haystack_scale_score_and_threshold_on_the_returned_score() -> None:
    from haystack import Document

    from rerank_integrations.haystack import RerankRanker

    class Raw(FakeReranker):
        def _score(self, request: Any) -> Any:
            from rerank_integrations.results import RerankResult

            return [RerankResult(i, 0.5, float(len(d))) for i, d in enumerate(request.documents)]

    docs = [Document(id=t, content=t) for t in ("x", "xxx", "xx")]
    ranker = RerankRanker(Raw(), scale_score=False, score_threshold=2.0)
    out = ranker.run(query="q", documents=docs)["documents"]
    assert [(d.id, d.score) for d in out] == [("xxx", 3.0), ("xx", 2.0)]
    out = ranker.run(query="q", documents=docs, scale_score=True, score_threshold=0.0)
    assert [d.score for d in out["documents"]] == [0.5, 0.5, 0.5]


def test_haystack_model_kwargs_tokenizer_kwargs_and_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from haystack.utils import Secret

    from rerank_integrations.haystack import RerankRanker

    ranker = RerankRanker(
        model="m", model_kwargs={"torch_dtype": "float32", "attn_implementation": "eager"},
        tokenizer_kwargs={"model_max_length": 128},
    )  # fmt: skip
    settings = ranker._settings()
    assert settings["dtype"] == "float32" and settings["attn_implementation"] == "eager"
    assert settings["max_length"] == 128
    assert ranker.to_dict()["init_parameters"]["model_kwargs"] == {
        "torch_dtype": "float32",
        "attn_implementation": "eager",
    }
    with pytest.raises(RerankInputError) as info:
        RerankRanker(model="m", model_kwargs={"low_cpu_mem_usage": True})
    assert info.value.field == "model_kwargs['low_cpu_mem_usage']"
    with pytest.raises(RerankInputError, match="local backend"):
        RerankRanker(backend="remote", model_kwargs={"dtype": "float32"})
    monkeypatch.setenv("HF_TOKEN", "hf-same")
    RerankRanker(model="m", token=Secret.from_token("hf-same"))._settings()
    with pytest.raises(RerankInputError) as info:
        RerankRanker(model="m", token=Secret.from_token("hf-other"))._settings()
    assert info.value.field == "token" and "hf-other" not in str(info.value)


def test_haystack_to_dict_round_trips_the_new_parameters() -> None:
    from rerank_integrations.haystack import RerankRanker

    ranker = RerankRanker(
        model="m", meta_fields_to_embed=["t"], embedding_separator=" | ", query_prefix="q: ",
        document_suffix="!", scale_score=False, metadata_keys=["t"],
    )  # fmt: skip
    again = RerankRanker.from_dict(ranker.to_dict())
    for name in ("meta_fields_to_embed", "embedding_separator", "query_prefix",
                 "document_suffix", "scale_score", "metadata_keys", "backend"):  # fmt: skip
        assert getattr(again, name) == getattr(ranker, name)


async def test_llama_index_async_path_runs_in_a_span() -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_integrations.llama_index import RerankPostprocessor

    handler = SimpleSpanHandler()
    root = get_dispatcher()
    root.add_span_handler(handler)
    try:
        pp = RerankPostprocessor(reranker=FakeReranker(SCORES))
        nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in ("a", "b")]
        pp.postprocess_nodes(nodes, query_str="q")
        await pp.apostprocess_nodes(nodes, query_str="q")
    finally:
        root.span_handlers.remove(handler)
    names = [s.id_ for s in handler.completed_spans]
    assert any("RerankPostprocessor._postprocess_nodes" in n for n in names)
    assert any("RerankPostprocessor._apostprocess_nodes" in n for n in names)

"""docs/migrating.md, executed: every snippet runs, and each first-party reranker installed in
the test environment runs side by side with ours on the same tiny cross-encoder (or the same
loopback rerank server): same ids in the same order, same scores where the scale is the same,
metadata unchanged, inputs untouched."""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.remote_server import RerankTestServer

from rerank_integrations._adapters.calls import RAW_SCORE_KEY, SCORE_KEYS

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "migrating.md"
SNIPPET = re.compile(r"<!-- snippet: ([\w-]+)/(before|after) -->\s*```python\n(.*?)```", re.S)
SNIPPETS: dict[tuple[str, str], str] = {
    (name, side): code for name, side, code in SNIPPET.findall(PAGE.read_text())
}
NAMES = [
    "lc-cross-encoder", "lc-cohere", "lc-flashrank", "lc-contextual",
    "li-sentence-transformer", "li-cohere", "li-jina", "li-contextual",
    "hs-sentence-transformers", "hs-jina", "hs-cohere",
]  # fmt: skip
#: the package each "before" snippet needs (installed by the test extra, or not)
BEFORE_MODULES = {
    "lc-cross-encoder": "langchain_community.cross_encoders",
    "lc-cohere": "langchain_cohere",
    "lc-flashrank": "flashrank",
    "lc-contextual": "langchain_contextual",
    "li-sentence-transformer": "llama_index.core.postprocessor",
    "li-cohere": "llama_index.postprocessor.cohere_rerank",
    "li-jina": "llama_index.postprocessor.jinaai_rerank",
    "li-contextual": "llama_index.postprocessor.contextual_rerank",
    "hs-sentence-transformers": "haystack_integrations.components.rankers.sentence_transformers",
    "hs-jina": "haystack_integrations.components.rankers.jina",
    "hs-cohere": "haystack_integrations.components.rankers.cohere",
}
INSTALLED_IN_TESTS = {
    "lc-cross-encoder", "li-sentence-transformer", "li-jina", "hs-sentence-transformers", "hs-jina",
    "hs-cohere",
}  # fmt: skip
QUERY = "What is the capital of France?"
TEXTS = [
    ("Paris is the capital and largest city of France.", "Encyclopedia", "2021"),
    ("Berlin is the capital of Germany!", "Atlas", "2019"),
    ("The quick brown fox jumps over the lazy dog.", "Typing drills", "1999"),
    ("Green tea contains antioxidants called catechins.", "Health news", "2023"),
    ("Le thé vert est riche en antioxydants.", "Santé", "2024"),
]


def run_snippet(name: str, side: str, **namespace: Any) -> dict[str, Any]:
    code = SNIPPETS[(name, side)]
    scope: dict[str, Any] = {"__name__": f"migrating_{name.replace('-', '_')}", **namespace}
    exec(compile(code, f"{PAGE}:{name}/{side}", "exec"), scope)
    return scope


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """First-party clients (requests, httpx) honour proxy variables; the server is local."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as s:
        yield s


class JinaLikeServer(RerankTestServer):
    """The loopback server, answering with the ``usage`` block JinaRanker reads."""

    def _json(self, h: Any, status: int, obj: Any, number: int, headers: Any = None) -> None:
        if status == 200 and isinstance(obj, dict) and "model" in obj:
            obj = {**obj, "usage": {"total_tokens": 0}}
        super()._json(h, status, obj, number, headers)


# --- the page itself -----------------------------------------------------------------------


def test_every_snippet_is_on_the_page_and_compiles() -> None:
    assert sorted({name for name, _ in SNIPPETS}) == sorted(NAMES)
    for name in NAMES:
        for side in ("before", "after"):
            compile(SNIPPETS[(name, side)], f"{name}/{side}", "exec")
    for name in INSTALLED_IN_TESTS:  # the test extra installs these first-party packages
        assert _installed(BEFORE_MODULES[name]), BEFORE_MODULES[name]


@pytest.mark.parametrize("name", sorted(set(NAMES) - INSTALLED_IN_TESTS))
def test_before_snippets_of_packages_not_in_the_test_env(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run when the first-party package happens to be installed (not by the test extra)."""
    if not _installed(BEFORE_MODULES[name]):
        pytest.skip(f"{BEFORE_MODULES[name]} is not installed (not in the test extra)")
    for var in ("COHERE_API_KEY", "CO_API_KEY", "CONTEXTUAL_AI_API_KEY"):
        monkeypatch.setenv(var, "test-key")
    scope = run_snippet(name, "before", MODEL="unused")
    assert "compressor" in scope or "reranker" in scope or "ranker" in scope


# --- LangChain -----------------------------------------------------------------------------


def lc_docs() -> list[Any]:
    from langchain_core.documents import Document

    return [
        Document(page_content=t, metadata={"source": s, "year": y}, id=f"doc-{i}")
        for i, (t, s, y) in enumerate(TEXTS)
    ]


def test_langchain_cross_encoder_reranker_side_by_side(tiny_xlmr_dir: Path) -> None:
    model = str(tiny_xlmr_dir)
    theirs_c = run_snippet("lc-cross-encoder", "before", MODEL=model)["compressor"]
    ours_c = run_snippet("lc-cross-encoder", "after", MODEL=model)["compressor"]
    docs = lc_docs()
    snapshot = copy.deepcopy(docs)
    theirs = list(theirs_c.compress_documents(docs, QUERY))
    ours = list(ours_c.compress_documents(docs, QUERY))
    assert len(theirs) == len(ours) == 3  # both default... and the snippet's top_n=3
    assert [d.id for d in ours] == [d.id for d in theirs]
    assert [d.page_content for d in ours] == [d.page_content for d in theirs]
    # the same scale: sentence-transformers' sigmoid of the logit, over page_content only
    scores = list(theirs_c.model.score([(QUERY, d.page_content) for d in docs]))
    expected = sorted((float(s) for s in scores), reverse=True)[:3]
    assert [d.metadata["relevance_score"] for d in ours] == pytest.approx(expected, abs=1e-6)
    for o, t in zip(ours, theirs, strict=True):
        assert {k: v for k, v in o.metadata.items() if k not in SCORE_KEYS} == t.metadata
    assert docs == snapshot
    ours_c.close()


@pytest.mark.parametrize(
    ("name", "api_format", "expected_top_n"),
    [("lc-cohere", "cohere", 3), ("lc-contextual", "contextual", None)],
)
def test_langchain_api_snippets_on_the_loopback_server(
    name: str, api_format: str, expected_top_n: int | None, server: RerankTestServer
) -> None:
    compressor = run_snippet(name, "after")["compressor"]
    compressor.base_url = server.base_url(api_format)  # instead of the provider's host
    out = compressor.compress_documents(lc_docs(), QUERY)
    (body,) = server.bodies()
    assert body["documents"] == [t for t, _, _ in TEXTS]  # page_content, as first-party
    assert body.get("top_n") == expected_top_n
    assert len(out) == (expected_top_n or len(TEXTS))
    if api_format == "contextual":  # a metadata slot: the metadata goes there, not in the text
        assert body["metadata"][0] == "source: Encyclopedia\nyear: 2021"
    else:
        assert "metadata" not in body
    compressor.close()


def test_langchain_flashrank_snippet(tiny_xlmr_dir: Path) -> None:
    compressor = run_snippet("lc-flashrank", "after")["compressor"]
    assert compressor.top_n == 3 and compressor.model.startswith("cross-encoder/")
    compressor.model = str(tiny_xlmr_dir)  # the tiny stand-in for the hub checkpoint
    out = compressor.compress_documents(lc_docs(), QUERY)
    scores = [d.metadata["relevance_score"] for d in out]
    assert len(out) == 3 and scores == sorted(scores, reverse=True)
    compressor.close()


# --- LlamaIndex ----------------------------------------------------------------------------


def li_nodes() -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [
        NodeWithScore(
            node=TextNode(
                id_=f"node-{i}",
                text=t,
                metadata={"source": s, "year": y, "file_name": f"f{i}.txt"},
                excluded_embed_metadata_keys=["file_name"],
            ),
            score=0.5,
        )
        for i, (t, s, y) in enumerate(TEXTS)
    ]


def _ids(nodes: list[Any]) -> list[str]:
    return [n.node.node_id for n in nodes]


def _meta_without_ours(node: Any) -> dict[str, Any]:
    return {k: v for k, v in node.metadata.items() if k != RAW_SCORE_KEY}


def test_llamaindex_sentence_transformer_rerank_side_by_side(tiny_xlmr_dir: Path) -> None:
    from llama_index.core.schema import MetadataMode

    model = str(tiny_xlmr_dir)
    theirs_pp = run_snippet("li-sentence-transformer", "before", MODEL=model)["reranker"]
    ours_pp = run_snippet("li-sentence-transformer", "after", MODEL=model)["reranker"]
    theirs = theirs_pp.postprocess_nodes(li_nodes(), query_str=QUERY)
    inputs = li_nodes()
    ours = ours_pp.postprocess_nodes(inputs, query_str=QUERY)
    assert len(ours) == len(theirs) == 2
    assert _ids(ours) == _ids(theirs)
    assert [n.score for n in ours] == pytest.approx([float(n.score) for n in theirs], abs=1e-6)
    for o, t in zip(ours, theirs, strict=True):
        assert _meta_without_ours(o.node) == t.node.metadata
        # the text scored is get_content(EMBED) byte for byte: metadata, a blank line, text
        text = t.node.get_content(metadata_mode=MetadataMode.EMBED)
        assert text.startswith("source: ") and "\n\n" in text and "file_name" not in text
    assert [n.score for n in inputs] == [0.5] * len(TEXTS)  # ours never modifies the input
    ours_pp.close()


def test_llamaindex_jina_rerank_side_by_side(server: RerankTestServer) -> None:
    from llama_index.core.schema import MetadataMode

    theirs_pp = run_snippet("li-jina", "before")["reranker"]
    theirs_pp.api_url = server.base_url("jina") + "/rerank"
    ours_pp = run_snippet("li-jina", "after")["reranker"]
    ours_pp.base_url = server.base_url("jina")
    theirs = theirs_pp.postprocess_nodes(li_nodes(), query_str=QUERY)
    ours = ours_pp.postprocess_nodes(li_nodes(), query_str=QUERY)
    assert _ids(ours) == _ids(theirs) and len(ours) == 2
    assert [n.score for n in ours] == [n.score for n in theirs]  # the API's score, both
    for o, t in zip(ours, theirs, strict=True):
        assert _meta_without_ours(o.node) == t.node.metadata
    first, second = server.bodies()
    assert (
        second["documents"]
        == first["documents"]
        == [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in li_nodes()]
    )
    assert second["top_n"] == first["top_n"] == 2 and second["query"] == first["query"]
    ours_pp.close()


@pytest.mark.parametrize(
    ("name", "api_format"), [("li-cohere", "cohere"), ("li-contextual", "contextual")]
)
def test_llamaindex_api_snippets_on_the_loopback_server(
    name: str, api_format: str, server: RerankTestServer
) -> None:
    from llama_index.core.schema import MetadataMode

    reranker = run_snippet(name, "after")["reranker"]
    reranker.base_url = server.base_url(api_format)
    out = reranker.postprocess_nodes(li_nodes(), query_str=QUERY)
    (body,) = server.bodies()
    assert len(out) == 2 and body["top_n"] == 2
    if api_format == "contextual":  # metadata slot: plain text + the EMBED-visible metadata
        assert body["documents"] == [t for t, _, _ in TEXTS]
        assert body["metadata"][0] == "source: Encyclopedia\nyear: 2021"
    else:
        expected = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in li_nodes()]
        assert body["documents"] == expected and "metadata" not in body
    reranker.close()


# --- Haystack ------------------------------------------------------------------------------


def hs_docs() -> list[Any]:
    from haystack import Document

    return [
        Document(id=f"d{i}", content=t, meta={"title": s, "year": y})
        for i, (t, s, y) in enumerate(TEXTS)
    ]


def _hs_meta(doc: Any) -> dict[str, Any]:
    return {k: v for k, v in doc.meta.items() if k != RAW_SCORE_KEY}


@pytest.mark.parametrize("scale_score", [True, False])
def test_haystack_sentence_transformers_ranker_side_by_side(
    tiny_xlmr_dir: Path, scale_score: bool
) -> None:
    model = str(tiny_xlmr_dir)
    theirs_r = run_snippet("hs-sentence-transformers", "before", MODEL=model)["ranker"]
    ours_r = run_snippet("hs-sentence-transformers", "after", MODEL=model)["ranker"]
    docs = [*hs_docs(), hs_docs()[0]]  # a duplicate id: both drop it first
    snapshot = copy.deepcopy(docs)
    theirs = theirs_r.run(query=QUERY, documents=docs, scale_score=scale_score)["documents"]
    ours = ours_r.run(query=QUERY, documents=docs, scale_score=scale_score)["documents"]
    assert len(ours) == len(theirs) == len(TEXTS)
    assert [d.id for d in ours] == [d.id for d in theirs]
    # same scale either way: sigmoid(logit) with scale_score=True, the logit with False
    assert [d.score for d in ours] == pytest.approx([d.score for d in theirs], abs=1e-5)
    assert [_hs_meta(d) for d in ours] == [d.meta for d in theirs]
    assert docs == snapshot
    # the threshold compares the score as returned, as Haystack's ranker
    cut = sorted(d.score for d in theirs)[2]
    theirs_cut = theirs_r.run(query=QUERY, documents=docs, scale_score=scale_score,
                              score_threshold=cut)["documents"]  # fmt: skip
    ours_cut = ours_r.run(query=QUERY, documents=docs, scale_score=scale_score,
                          score_threshold=cut)["documents"]  # fmt: skip
    assert [d.id for d in ours_cut] == [d.id for d in theirs_cut]
    ours_r.close()


def test_haystack_jina_ranker_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_KEY", "test-key")  # JinaRanker's Secret is strict
    with JinaLikeServer() as server:
        endpoint = server.base_url("jina") + "/rerank"  # JinaRanker's base_url is the endpoint
        theirs_r = run_snippet("hs-jina", "before")["ranker"]
        theirs_r.base_url = endpoint
        ours_r = run_snippet("hs-jina", "after")["ranker"]
        ours_r.base_url = endpoint  # the same full endpoint works (no /rerank/rerank)
        theirs = theirs_r.run(query=QUERY, documents=hs_docs())["documents"]
        ours = ours_r.run(query=QUERY, documents=hs_docs())["documents"]
        bodies = server.bodies()
        paths = [r.path for r in server.requests]
    assert [d.id for d in ours] == [d.id for d in theirs] and len(ours) == len(TEXTS)
    assert [d.score for d in ours] == [d.score for d in theirs]
    assert [_hs_meta(d) for d in ours] == [d.meta for d in theirs]
    assert bodies[0]["documents"] == bodies[1]["documents"] == [t for t, _, _ in TEXTS]
    assert paths[0] == paths[1] == "/jina/v1/rerank"
    ours_r.close()


def test_haystack_cohere_ranker_side_by_side(
    server: RerankTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COHERE_API_KEY", "test-key")
    theirs_r = run_snippet("hs-cohere", "before")["ranker"]
    # the Cohere client appends /v2/rerank to its base URL; the loopback serves /cohere/v2/rerank
    theirs_r.api_base_url = server.base_url("cohere").removesuffix("/v2")
    theirs_r.meta_fields_to_embed = ["title"]
    ours_r = run_snippet("hs-cohere", "after")["ranker"]
    ours_r.base_url = server.base_url("cohere")
    ours_r.meta_fields_to_embed = ["title"]
    theirs = theirs_r.run(query=QUERY, documents=hs_docs())["documents"]
    ours = ours_r.run(query=QUERY, documents=hs_docs())["documents"]
    first, second = server.bodies()
    assert [d.id for d in ours] == [d.id for d in theirs] and len(ours) == len(TEXTS)
    assert [d.score for d in ours] == [d.score for d in theirs]
    assert [_hs_meta(d) for d in ours] == [d.meta for d in theirs]
    # CohereRanker's text: the meta values and the content joined by the separator
    assert second["documents"] == first["documents"]
    assert (
        second["documents"][0] == "Encyclopedia\nParis is the capital and largest city of France."
    )
    assert first["top_n"] == 10 and second["top_n"] == min(10, len(TEXTS))  # capped: the same
    assert second["model"] == first["model"]
    ours_r.close()

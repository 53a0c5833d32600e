"""Per-document limits that real servers state (vLLM's context length, Infinity's characters),
vLLM's instruction field, Infinity's root path and pydantic's ``loc`` in error messages:
the pure decisions, and the reranker against the loopback double speaking those servers'
own wordings (tests/servers/ runs the same cases against the real servers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.remote_server import RerankTestServer

from rerank_integrations import RemoteReranker
from rerank_integrations.backends.remote.formats import (
    WireRequest,
    error_message,
    get_format,
)
from rerank_integrations.backends.remote.limits import (
    DocumentLimit,
    is_document_too_long,
    is_too_long,
    parse_document_limit,
)
from rerank_integrations.backends.remote.outcomes import not_found_hint
from rerank_integrations.backends.remote.planning import (
    cap_characters,
    oversize_error,
    shrink_rejected,
)
from rerank_integrations.errors import RemoteStatusError, RerankInputError

VLLM_400 = (
    "This model's maximum context length is 512 tokens. However, your prompt contains at "
    "least 513 input tokens, which exceeds this limit even without any output tokens. Please "
    "reduce the length of the input prompt. (parameter=input_tokens, value=513)"
)
INFINITY_422 = "body.documents.0: String should have at most 122880 characters"


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        (VLLM_400, DocumentLimit("tokens", 512)),
        ("maximum context length is 8,192 tokens", DocumentLimit("tokens", 8192)),
        (INFINITY_422, DocumentLimit("characters", 122880)),
        ("String should have at most 10 characters", DocumentLimit("characters", 10)),
        ("List should have at most 2048 items after validation, not 3000", None),
        ("too many documents: 2000 > 100", None),
        ("body.query: Field required", None),
    ],
)
def test_parse_document_limit(message: str, limit: DocumentLimit | None) -> None:
    assert parse_document_limit(message) == limit


def test_vllm_400_context_length_is_too_long_but_other_400s_are_not() -> None:
    assert is_too_long(400, VLLM_400)
    assert is_document_too_long(400, VLLM_400)
    assert not is_too_long(400, "1 validation error: body.query: Field required")
    assert is_too_long(422, INFINITY_422)
    assert not is_document_too_long(404, VLLM_400)


def test_pydantic_loc_is_in_the_message() -> None:
    body = (
        '{"detail":[{"type":"missing","loc":["body","query"],"msg":"Field required","input":{}}]}'
    )
    assert error_message(body) == "body.query: Field required"
    two = '{"detail":[{"loc":["body","documents",0],"msg":"bad"},{"msg":"no loc"}]}'
    assert error_message(two) == "body.documents.0: bad; no loc"
    assert error_message('{"detail":[{"loc":"body.top_n","msg":"x"}]}') == "body.top_n: x"


def test_not_found_hint_names_the_root() -> None:
    hint = not_found_hint(404, "http://host:7997/v1/rerank")
    assert hint is not None and "base_url='http://host:7997'" in hint
    assert "api_format='infinity'" in hint
    assert not_found_hint(404, "http://host:7997/rerank") is None
    assert not_found_hint(500, "http://host:7997/v1/rerank") is None


def _request(*docs: str, query: str = "q") -> WireRequest:
    return WireRequest(query=query, documents=docs, indices=tuple(range(10, 10 + len(docs))))


ERROR = RemoteStatusError(400, VLLM_400)


def test_shrink_rejected_cuts_only_documents_over_the_stated_limit() -> None:
    long = "word " * 600  # ~1000 estimated tokens
    request = _request("short", long, "also short")
    shrunk = shrink_rejected(
        request,
        DocumentLimit("tokens", 512),
        tokens_budget=None,
        chars_budget=None,
        error=ERROR,
    )
    assert shrunk.limit == DocumentLimit("tokens", 512)
    assert shrunk.cut == (1,)
    docs = shrunk.request.documents
    assert docs[0] == "short" and docs[2] == "also short"
    assert long.startswith(docs[1]) and len(docs[1]) < len(long)
    assert shrunk.request.indices == request.indices


def test_shrink_rejected_lowers_the_budget_when_everything_fits_the_estimate() -> None:
    request = _request("a" * 300, "b" * 30)  # ~100 + ~10 tokens + query and overhead
    shrunk = shrink_rejected(
        request,
        DocumentLimit("tokens", 512),
        tokens_budget=None,
        chars_budget=None,
        error=ERROR,
    )
    assert shrunk.limit.value < 512
    docs = shrunk.request.documents
    assert len(docs[0]) < 300 and docs[1] == "b" * 30


def test_shrink_rejected_with_on_oversize_error_names_the_callers_index() -> None:
    request = _request("short", "word " * 600)
    shrunk = shrink_rejected(
        request, DocumentLimit("tokens", 512), tokens_budget=None, chars_budget=None, error=ERROR
    )
    error = oversize_error(shrunk, ERROR)
    assert error.field == "documents[11]"
    assert "maximum context length" in str(error)


def test_shrink_rejected_gives_up_when_nothing_can_be_cut() -> None:
    with pytest.raises(RemoteStatusError):  # the query alone is over the limit
        shrink_rejected(
            _request("d", query="q " * 2000),
            DocumentLimit("tokens", 512),
            tokens_budget=None,
            chars_budget=None,
            error=ERROR,
        )
    chars_error = RemoteStatusError(422, INFINITY_422)
    with pytest.raises(RemoteStatusError):  # no document over the character limit
        shrink_rejected(
            _request("short"),
            DocumentLimit("characters", 10),
            tokens_budget=None,
            chars_budget=None,
            error=chars_error,
        )


def test_cap_characters() -> None:
    assert cap_characters(("abc", "de"), None, truncate=True) == (("abc", "de"), ())
    assert cap_characters(("abcdef", "de"), 3, truncate=True) == (("abc", "de"), (0,))
    with pytest.raises(RerankInputError) as info:
        cap_characters(("ab", "abcdef"), 3, truncate=False)
    assert info.value.field == "documents[1]"


def test_vllm_and_infinity_formats() -> None:
    vllm = get_format("vllm")
    assert vllm.supports_instruction and not vllm.supports_metadata
    body = vllm.build_body("m", WireRequest("q", ("d",), (0,), instruction="be strict"), True)
    assert body["instruction"] == "be strict"
    assert "instruction" not in vllm.build_body("m", WireRequest("q", ("d",), (0,)), True)
    infinity = get_format("infinity")
    assert infinity.default_base_url is None and infinity.path == "/rerank"
    assert infinity.max_chars_per_document == 122_880
    assert infinity.max_documents_per_request == 2048
    assert not infinity.supports_instruction


# --------------------------------------------------------------------------- loopback


@pytest.fixture
def server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as s:
        yield s


def make(server: RerankTestServer, api_format: str = "vllm", **kw: Any) -> RemoteReranker:
    return RemoteReranker(
        "test-model",
        api_format=api_format,
        base_url=server.base_url(api_format),
        timeout=5.0,
        _sleep=lambda s: None,
        _random=lambda: 0.0,
        **kw,
    )


DOCS = ["alpha document", "beta document", "gamma document", "delta document"]


def test_vllm_sends_the_instruction_field(server: RerankTestServer) -> None:
    results = make(server).rerank("q", DOCS, instruction="prefer 2024")
    body = server.requests[0].body
    assert body["instruction"] == "prefer 2024" and body["query"] == "q"  # not folded
    assert len(results) == 4


def test_one_too_long_document_no_longer_fails_the_call(
    server: RerankTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.context_length = 200  # "tokens" = characters in the double
    reranker = make(server)
    docs = [*DOCS, "x" * 5000]
    with caplog.at_level(logging.INFO, logger="rerank_integrations"):
        results = reranker.rerank("q", docs)
    assert {r.index for r in results} == set(range(5))
    assert server.requests[0].body["documents"][4] == "x" * 5000  # no limit known yet
    assert len(server.requests[-1].body["documents"]) == 5  # re-sent whole, cut
    assert len(server.requests[-1].body["documents"][4]) < 5000
    assert reranker.limits.max_tokens_per_document is not None
    assert "on one document" in caplog.text
    # the next call cuts before sending: one request, no 400
    before = len(server.requests)
    reranker.rerank("q", docs)
    assert len(server.requests) == before + 1


def test_one_too_long_document_alone_is_cut_too(server: RerankTestServer) -> None:
    server.context_length = 200
    results = make(server).rerank("q", ["x" * 5000])
    assert [r.index for r in results] == [0]


def test_one_too_long_document_async(server: RerankTestServer) -> None:
    server.context_length = 200
    reranker = make(server)
    results = asyncio.run(reranker.arerank("q", [*DOCS, "x" * 5000]))
    assert {r.index for r in results} == set(range(5))


def test_on_oversize_error_raises_for_the_servers_stated_limit(server: RerankTestServer) -> None:
    server.context_length = 200
    reranker = make(server, on_oversize="error")
    with pytest.raises(RerankInputError) as info:
        reranker.rerank("q", [*DOCS, "x" * 5000])
    assert info.value.field == "documents[4]"
    # now known: refused before any request
    before = len(server.requests)
    with pytest.raises(RerankInputError):
        reranker.rerank("q", [*DOCS, "x" * 5000])
    assert len(server.requests) == before


def test_on_oversize_error_raises_for_a_configured_limit_on_vllm(server: RerankTestServer) -> None:
    reranker = make(server, on_oversize="error", max_tokens_per_document=100)
    with pytest.raises(RerankInputError) as info:
        reranker.rerank("q", ["short", "word " * 400])
    assert info.value.field == "documents[1]"
    assert server.requests == []


def test_infinity_character_limit_is_learnt(server: RerankTestServer) -> None:
    server.max_chars = 1000
    reranker = make(server, "jina")  # a jina-style router in front of Infinity: no known cap
    results = reranker.rerank("q", [*DOCS, "y" * 3000])
    assert {r.index for r in results} == set(range(5))
    assert reranker.limits.max_chars_per_document == 1000
    assert len(server.requests[-1].body["documents"][4]) == 1000


def test_infinity_format_caps_characters_before_sending(server: RerankTestServer) -> None:
    server.max_chars = 122_880
    reranker = make(server, "infinity")
    results = reranker.rerank("q", ["short", "z" * 130_000])
    assert len(results) == 2
    assert len(server.requests) == 1
    assert len(server.requests[0].body["documents"][1]) == 122_880
    with pytest.raises(RerankInputError) as info:
        make(server, "infinity", on_oversize="error").rerank("q", ["short", "z" * 130_000])
    assert info.value.field == "documents[1]"


def test_a_404_under_v1_names_the_root(server: RerankTestServer) -> None:
    reranker = RemoteReranker(
        "m", api_format="jina", base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
    )
    with pytest.raises(RemoteStatusError) as info:
        reranker.rerank("q", DOCS)
    assert info.value.status == 404
    assert f"base_url='http://127.0.0.1:{server.port}'" in str(info.value)


def test_a_validation_error_names_the_field(server: RerankTestServer) -> None:
    from helpers.remote_server import Fault

    detail = [{"type": "missing", "loc": ["body", "query"], "msg": "Field required"}]
    server.script.append(Fault.error(422, {"detail": detail}))
    with pytest.raises(RemoteStatusError) as info:
        make(server).rerank("q", DOCS)
    assert str(info.value).startswith("HTTP 422: body.query: Field required")

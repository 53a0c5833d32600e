"""Wire formats: pure request builders and validating response parsers (table tests)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from rerank_integrations.backends.remote.formats import (
    FORMATS,
    WireRequest,
    decode_json,
    error_message,
    get_format,
    to_relevance,
)
from rerank_integrations.errors import RemoteResponseError, RerankInputError

REQ = WireRequest(query="q", documents=("a", "b", "c"), indices=(10, 11, 12))
FULL = WireRequest(
    query="q",
    documents=("a", "b"),
    indices=(0, 1),
    instruction="prefer recent",
    metadata=("year: 2024", ""),
    top_n=1,
)


@pytest.mark.parametrize(
    ("api_format", "request_", "expected"),
    [
        ("contextual", REQ, {"query": "q", "documents": ["a", "b", "c"], "model": "m"}),
        (
            "contextual",
            FULL,
            {
                "query": "q",
                "documents": ["a", "b"],
                "model": "m",
                "top_n": 1,
                "instruction": "prefer recent",
                "metadata": ["year: 2024", ""],
            },
        ),
        (
            "jina",
            REQ,
            {"model": "m", "query": "q", "documents": ["a", "b", "c"], "return_documents": False},
        ),
        (
            "vllm",
            FULL,
            {
                "model": "m",
                "query": "q",
                "documents": ["a", "b"],
                "return_documents": False,
                "top_n": 1,
                "instruction": "prefer recent",  # vLLM's own field (issue 10)
            },
        ),
        (
            "infinity",
            REQ,
            {"model": "m", "query": "q", "documents": ["a", "b", "c"], "return_documents": False},
        ),
        ("cohere", REQ, {"model": "m", "query": "q", "documents": ["a", "b", "c"]}),
        ("cohere", FULL, {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 1}),
        (
            "tei",
            REQ,
            {
                "query": "q",
                "texts": ["a", "b", "c"],
                "truncate": True,
                "raw_scores": False,
                "return_text": False,
            },
        ),
    ],
)
def test_build_body(api_format: str, request_: WireRequest, expected: dict[str, Any]) -> None:
    body = FORMATS[api_format].build_body("m", request_, True)
    assert body == expected
    json.dumps(body)  # JSON-serialisable


def test_top_n_omitted_when_none_never_zero() -> None:
    for fmt in FORMATS.values():
        body = fmt.build_body("m", REQ, False)
        assert "top_n" not in body


def test_tei_truncate_flag_follows_argument() -> None:
    assert FORMATS["tei"].build_body("m", REQ, False)["truncate"] is False


def test_builders_are_pure() -> None:
    before = (REQ.documents, REQ.metadata)
    FORMATS["contextual"].build_body("m", FULL, True)["documents"].append("x")
    assert (REQ.documents, REQ.metadata) == before
    assert FULL.documents == ("a", "b")


def test_capabilities_and_defaults() -> None:
    c = FORMATS["contextual"]
    assert (c.supports_instruction, c.supports_metadata, c.supports_top_n) == (True, True, True)
    assert c.default_base_url == "https://api.contextual.ai/v1"
    assert c.api_key_env == ("CONTEXTUAL_API_KEY",)
    assert (c.max_tokens_per_request, c.max_tokens_per_document) == (400_000, 8_000)
    assert FORMATS["jina"].default_base_url == "https://api.jina.ai/v1"
    assert FORMATS["cohere"].default_base_url == "https://api.cohere.com/v2"
    assert FORMATS["cohere"].api_key_env == ("COHERE_API_KEY", "CO_API_KEY")
    assert FORMATS["tei"].default_base_url is None and FORMATS["tei"].api_key_env == ()
    assert FORMATS["vllm"].default_base_url is None and FORMATS["vllm"].api_key_env == ()
    assert FORMATS["tei"].max_documents_per_request == 32
    assert not FORMATS["tei"].supports_top_n
    for name in ("jina", "infinity", "cohere", "tei"):
        assert not FORMATS[name].supports_instruction and not FORMATS[name].supports_metadata
    # vLLM's rerank request has an instruction field (issue 10), still no metadata field
    assert FORMATS["vllm"].supports_instruction and not FORMATS["vllm"].supports_metadata


def test_unknown_format_names_the_field() -> None:
    with pytest.raises(RerankInputError) as info:
        get_format("voyage")
    assert info.value.field == "api_format"


GOOD = {"results": [{"index": 2, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}


@pytest.mark.parametrize("api_format", ["contextual", "jina", "vllm", "cohere"])
def test_parse_relevance_results(api_format: str) -> None:
    request = WireRequest("q", ("a", "b", "c"), (0, 1, 2), top_n=2)
    payload = {**GOOD, "usage": {"total_tokens": 5}}
    assert FORMATS[api_format].parse_response(payload, request) == [(2, 0.9), (0, 0.1)]


def test_parse_tei_bare_list() -> None:
    payload = [{"index": 1, "score": 0.7}, {"index": 0, "score": 0.2}]
    request = WireRequest("q", ("a", "b"), (0, 1))
    assert FORMATS["tei"].parse_response(payload, request) == [(1, 0.7), (0, 0.2)]


def _items(*pairs: tuple[Any, Any]) -> dict[str, Any]:
    return {"results": [{"index": i, "relevance_score": s} for i, s in pairs]}


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ([{"index": 0, "relevance_score": 1.0}], "expected a JSON object"),
        ({"data": []}, "no 'results'"),
        ({"results": {"index": 0}}, "expected a list"),
        ({"results": [1, 2, 3]}, "not an object"),
        (_items((0, 0.5), (1, 0.5), (3, 0.1)), "out of range"),
        (_items((0, 0.5), (-1, 0.5), (2, 0.1)), "out of range"),
        (_items((0, 0.5), (0, 0.4), (1, 0.1)), "more than once"),
        (_items((0, 0.5), ("1", 0.4), (2, 0.1)), "integer 'index'"),
        (_items((0, 0.5), (True, 0.4), (2, 0.1)), "integer 'index'"),
        ({"results": [{"index": 0}, {"index": 1, "relevance_score": 0.2}]}, "numeric"),
        (_items((0, "0.9"), (1, 0.4), (2, 0.1)), "numeric"),
        (_items((0, math.nan), (1, 0.4), (2, 0.1)), "non-finite"),
        (_items((0, math.inf), (1, 0.4), (2, 0.1)), "non-finite"),
        (_items((0, 0.5), (1, 0.4)), "returned 2 results for 3 documents"),
    ],
)
def test_parse_rejects_malformed(payload: Any, match: str) -> None:
    with pytest.raises(RemoteResponseError, match=match):
        FORMATS["contextual"].parse_response(payload, REQ)


def test_fewer_results_allowed_when_top_n_asked() -> None:
    request = WireRequest("q", ("a", "b", "c"), (0, 1, 2), top_n=1)
    assert FORMATS["jina"].parse_response(_items((1, 0.3)), request) == [(1, 0.3)]
    with pytest.raises(RemoteResponseError, match="expected 1"):
        FORMATS["jina"].parse_response({"results": []}, request)


@pytest.mark.parametrize("text", ["<html>Bad gateway</html>", '{"results": [{"index": 0, "rel', ""])
def test_decode_json_rejects_non_json(text: str) -> None:
    with pytest.raises(RemoteResponseError, match="not valid JSON"):
        decode_json(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"detail": "Invalid model"}', "Invalid model"),
        (  # pydantic's loc says which field (issue 10)
            '{"detail": [{"loc": ["body", "query"], "msg": "field required"}]}',
            "body.query: field required",
        ),
        ('{"message": "invalid api token"}', "invalid api token"),
        ('{"error": "batch size 64 > 32", "error_type": "Validation"}', "batch size 64 > 32"),
        ('{"error": {"message": "too long", "type": "BadRequest"}}', "too long"),
        ("upstream\n  connect error", "upstream connect error"),
        ("", "(empty body)"),
    ],
)
def test_error_message(text: str, expected: str) -> None:
    assert error_message(text) == expected


def test_error_message_is_capped() -> None:
    assert len(error_message("x" * 5000)) == 500


@pytest.mark.parametrize(("score", "relevance"), [(0.3, 0.3), (-2.0, 0.0), (1.5, 1.0), (1.0, 1.0)])
def test_to_relevance_clips(score: float, relevance: float) -> None:
    assert to_relevance(score) == relevance

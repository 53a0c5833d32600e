"""Every RemoteReranker constructor argument under the one rule: a wrong type raises
RerankTypeError, a right type with a bad value RerankInputError, both naming the field, and
nothing reaches the server (the loopback server records every request)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers.remote_server import RerankTestServer

from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.errors import RerankInputError, RerankTypeError

SECRET = "sk-test-3f9a1c0d5e7b42"
TE, IE = RerankTypeError, RerankInputError


class Make:
    """A value built inside the test (e.g. an httpx client)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build


# (argument, bad value, exact error class, field)
CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("model", 3, TE, "model"),
    ("model", None, TE, "model"),
    ("model", "", IE, "model"),
    ("model", "  ", IE, "model"),
    ("model", "model-\udcff", IE, "model"),
    ("api_format", 1, TE, "api_format"),
    ("api_format", None, TE, "api_format"),
    ("api_format", "voyage", IE, "api_format"),
    ("api_format", "Contextual", IE, "api_format"),
    ("base_url", 8000, TE, "base_url"),
    ("base_url", b"http://127.0.0.1:9/v1", TE, "base_url"),
    ("base_url", "", IE, "base_url"),
    ("base_url", "not a url", IE, "base_url"),
    ("base_url", "localhost:8000/v1", IE, "base_url"),
    ("base_url", "ftp://127.0.0.1/v1", IE, "base_url"),
    ("base_url", "http://", IE, "base_url"),
    ("base_url", "http://127.0.0.1:port/v1", IE, "base_url"),
    ("api_key", 123, TE, "api_key"),
    ("api_key", "", IE, "api_key"),
    ("api_key", "   ", IE, "api_key"),
    ("api_key", "sk-abc\ndef-0123456789", IE, "api_key"),
    ("api_key", "sk-abc def-0123456789", IE, "api_key"),
    ("api_key", "sk-abc\x00def-0123456789", IE, "api_key"),
    ("api_key", "sk-abc\u00e9def-0123456789", IE, "api_key"),
    ("api_key_env", 1, TE, "api_key_env"),
    ("api_key_env", "", IE, "api_key_env"),
    ("api_key_env", "SURELY_UNSET_RERANK_VAR", IE, "api_key"),
    ("timeout", "3", TE, "timeout"),
    ("timeout", None, TE, "timeout"),
    ("timeout", True, TE, "timeout"),
    ("timeout", 0, IE, "timeout"),
    ("timeout", -1.5, IE, "timeout"),
    ("timeout", math.inf, IE, "timeout"),
    ("timeout", math.nan, IE, "timeout"),
    ("connect_timeout", "5", TE, "connect_timeout"),
    ("connect_timeout", False, TE, "connect_timeout"),
    ("connect_timeout", 0.0, IE, "connect_timeout"),
    ("connect_timeout", -math.inf, IE, "connect_timeout"),
    ("deadline", "10", TE, "deadline"),
    ("deadline", True, TE, "deadline"),
    ("deadline", 0, IE, "deadline"),
    ("deadline", -1.0, IE, "deadline"),
    ("deadline", math.inf, IE, "deadline"),
    ("deadline", math.nan, IE, "deadline"),
    ("max_retries", 1.5, TE, "max_retries"),
    ("max_retries", "2", TE, "max_retries"),
    ("max_retries", True, TE, "max_retries"),
    ("max_retries", None, TE, "max_retries"),
    ("max_retries", -1, IE, "max_retries"),
    ("max_concurrency", 2.0, TE, "max_concurrency"),
    ("max_concurrency", None, TE, "max_concurrency"),
    ("max_concurrency", 0, IE, "max_concurrency"),
    ("max_documents_per_request", "10", TE, "max_documents_per_request"),
    ("max_documents_per_request", True, TE, "max_documents_per_request"),
    ("max_documents_per_request", 10.0, TE, "max_documents_per_request"),
    ("max_documents_per_request", 0, IE, "max_documents_per_request"),
    ("max_tokens_per_request", True, TE, "max_tokens_per_request"),
    ("max_tokens_per_request", 1e5, TE, "max_tokens_per_request"),
    ("max_tokens_per_request", -5, IE, "max_tokens_per_request"),
    ("max_tokens_per_document", "8000", TE, "max_tokens_per_document"),
    ("max_tokens_per_document", 0, IE, "max_tokens_per_document"),
    ("max_response_bytes", None, TE, "max_response_bytes"),
    ("max_response_bytes", 1e6, TE, "max_response_bytes"),
    ("max_response_bytes", "16MiB", TE, "max_response_bytes"),
    ("max_response_bytes", 0, IE, "max_response_bytes"),
    ("on_error", 1, TE, "on_error"),
    ("on_error", None, TE, "on_error"),
    ("on_error", "ignore", IE, "on_error"),
    ("on_oversize", False, TE, "on_oversize"),
    ("on_oversize", "drop", IE, "on_oversize"),
    ("fold_unsupported", 1, TE, "fold_unsupported"),
    ("fold_unsupported", "yes", TE, "fold_unsupported"),
    ("fold_unsupported", None, TE, "fold_unsupported"),
    ("http_client", object(), TE, "http_client"),
    ("http_client", Make(httpx.AsyncClient), TE, "http_client"),
    ("async_http_client", object(), TE, "async_http_client"),
    ("async_http_client", Make(httpx.Client), TE, "async_http_client"),
    ("_sleep", 0.5, TE, "_sleep"),
    ("_async_sleep", "sleep", TE, "_async_sleep"),
    ("_random", 0.0, TE, "_random"),
    ("_now", 1_700_000_000.0, TE, "_now"),
]

# Public hosts, no key anywhere: an input error naming api_key, also before any request.
NO_KEY_CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"api_format": "contextual", "base_url": None}, IE, "api_key"),
    ({"api_format": "jina", "base_url": None}, IE, "api_key"),
    ({"api_format": "cohere", "base_url": "https://api.cohere.com/v2/"}, IE, "api_key"),
    ({"api_format": "vllm", "base_url": None}, IE, "base_url"),
    ({"api_format": "tei", "base_url": None}, IE, "base_url"),
]


@pytest.fixture
def server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as s:
        yield s


def _base_kwargs(server: RerankTestServer) -> dict[str, Any]:
    return {"model": "m", "base_url": server.base_url("contextual"), "api_key": SECRET}


def test_the_table_covers_every_constructor_argument() -> None:
    params = set(inspect.signature(RemoteReranker.__init__).parameters) - {"self"}
    covered = {argument for argument, *_ in CASES}
    assert covered == params
    for argument in params:  # every argument has a wrong-type row
        assert any(a == argument and e is TE for a, _, e, _ in CASES), argument


@pytest.mark.parametrize(
    ("argument", "value", "error", "field"),
    CASES,
    ids=[f"{a}={v!r}" for a, v, _, _ in CASES],
)
def test_bad_argument(
    server: RerankTestServer, argument: str, value: Any, error: type[Exception], field: str
) -> None:
    built = value.build() if isinstance(value, Make) else value
    kwargs = _base_kwargs(server)
    if argument == "api_key_env":
        kwargs.pop("api_key")
    kwargs[argument] = built
    try:
        with pytest.raises(Exception) as info:
            RemoteReranker(**kwargs)
    finally:
        if isinstance(built, httpx.Client):
            built.close()
    assert type(info.value) is error, info.value
    assert info.value.field == field  # type: ignore[attr-defined]
    assert SECRET not in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize(("kwargs", "error", "field"), NO_KEY_CASES)
def test_missing_key_or_host(
    server: RerankTestServer,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    error: type[Exception],
    field: str,
) -> None:
    for name in ("CONTEXTUAL_API_KEY", "JINA_API_KEY", "COHERE_API_KEY", "CO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception) as info:
        RemoteReranker("m", **kwargs)
    assert type(info.value) is error
    assert info.value.field == field  # type: ignore[attr-defined]
    assert server.requests == []


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("timeout", 1),
        ("timeout", 0.001),
        ("deadline", None),
        ("deadline", 0.5),
        ("max_response_bytes", 1),
        ("connect_timeout", 30),
        ("max_retries", 0),
        ("max_concurrency", 1),
        ("max_documents_per_request", 1),
        ("max_tokens_per_request", None),
        ("on_error", "passthrough"),
        ("on_oversize", "error"),
        ("fold_unsupported", True),
        ("base_url", "HTTP://127.0.0.1:9/v1/"),
        ("api_format", "vllm"),
    ],
)
def test_good_boundary_values_are_accepted(
    server: RerankTestServer, argument: str, value: Any
) -> None:
    reranker = RemoteReranker(**{**_base_kwargs(server), argument: value})
    assert reranker.to_config()[argument] == value
    assert server.requests == []  # construction sends nothing

"""Item 7: the API key and URL credentials never appear in an exception, a log line,
``repr`` or ``to_config()``, whatever a server echoes back.

Each scenario collects every text a caller can see (the exception's ``str``, ``repr``, its
fields, its ``__cause__``/``__context__``, and every log record at DEBUG, httpx's included)
and checks that no piece of 8 characters or more of the secret is in any of them."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from helpers.bounded import bounded
from helpers.hostile_server import Act, HostileServer

from rerank_integrations.backends.remote import RemoteReranker, is_passthrough
from rerank_integrations.errors import (
    RemoteConnectionError,
    RemoteResponseError,
    RemoteStatusError,
    RerankInputError,
    UnpicklableRerankerError,
)

Build = Callable[..., RemoteReranker]
KEY = "sk-live-7Hq2vX9pL4mN8rT1wZ6yB3cF5"
PASSWORD = "pw-Zr8Kx2Lq9Vt4Mn7Bd"
DOCS = ["alpha", "beta", "gamma", "delta"]
MODES = ["sync", "async"]


def pieces(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_clean(texts: Iterable[str], secret: str = KEY) -> None:
    for text in texts:
        for piece in pieces(secret):
            assert piece not in text, f"{piece!r} of the secret leaked in {text!r}"


def visible(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), repr(error.__cause__), repr(error.__context__)]
    texts += [str(v) for v in vars(error).values()]
    return texts


def run(reranker: RemoteReranker, mode: str) -> Any:
    if mode == "sync":
        return bounded(lambda: reranker.rerank("q", DOCS), 10)
    return bounded(lambda: asyncio.run(reranker.arerank("q", DOCS)), 10)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("act", "error"),
    [
        (Act.echo(200), RemoteResponseError),  # a non-JSON 200 that quotes the headers
        (Act.echo_json("index"), RemoteResponseError),  # the key put in a field
        (Act.echo_json("relevance_score"), RemoteResponseError),
        (Act.echo(401), RemoteStatusError),  # an error page that quotes the headers
        (Act.echo(500), RemoteStatusError),  # retried, then the same
    ],
    ids=["echo-200", "in-index", "in-score", "echo-401", "echo-500"],
)
def test_an_echoed_key_is_redacted(
    hostile: HostileServer,
    build: Build,
    logs: pytest.LogCaptureFixture,
    mode: str,
    act: Act,
    error: type[Exception],
) -> None:
    hostile.default = act
    reranker = build(api_key=KEY, _sleep=lambda s: None, _async_sleep=_no_wait)
    outcome = run(reranker, mode)
    raised = outcome.raised(error)
    assert_clean(visible(raised))
    assert_clean(r.getMessage() for r in logs.records)
    assert hostile.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_the_fail_open_warning_is_redacted(
    hostile: HostileServer, build: Build, logs: pytest.LogCaptureFixture
) -> None:
    hostile.default = Act.echo(200)
    reranker = build(api_key=KEY, on_error="passthrough")
    results = run(reranker, "sync").value
    assert all(is_passthrough(r) for r in results)
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert any("passthrough" in w for w in warnings)
    assert_clean(r.getMessage() for r in logs.records)


@pytest.mark.parametrize("offset", [480, 490, 495, 497, 499, 500, 505])
def test_a_key_straddling_the_500_character_cut_does_not_leak(
    hostile: HostileServer, build: Build, offset: int
) -> None:
    hostile.default = Act.error(400, {"detail": "x" * offset + KEY + " and more text" * 20})
    raised = run(build(api_key=KEY), "sync").raised(RemoteStatusError)
    assert len(raised.message) <= 500
    assert_clean(visible(raised))


def test_a_key_the_server_cut_itself_is_redacted(hostile: HostileServer, build: Build) -> None:
    hostile.default = Act.error(401, {"detail": f"invalid token 'Bearer {KEY[:14]}...'"})
    raised = run(build(api_key=KEY), "sync").raised(RemoteStatusError)
    assert_clean(visible(raised))
    assert "***" in raised.message


def test_an_echoed_request_id_is_redacted(hostile: HostileServer, build: Build) -> None:
    hostile.default = Act.error(400, headers={"x-request-id": f"req {KEY}"})
    raised = run(build(api_key=KEY), "sync").raised(RemoteStatusError)
    assert raised.request_id is not None and "***" in raised.request_id
    assert_clean(visible(raised))


@pytest.mark.parametrize("bad", ["\n", "\r\n", " ", "\t", "\x00", "\x7f", "\u00e9", "\u2028"])
def test_a_key_that_cannot_be_a_header_is_refused_without_echo(
    hostile: HostileServer, build: Build, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    key = KEY[:10] + bad + KEY[10:]
    with pytest.raises(RerankInputError) as info:
        build(api_key=key)
    assert info.value.field == "api_key"
    assert_clean([str(info.value), repr(info.value)])
    if bad == "\x00":
        return  # an environment variable cannot hold a NUL
    monkeypatch.setenv("MY_RERANK_KEY", key)
    with pytest.raises(RerankInputError) as info:
        build(api_key_env="MY_RERANK_KEY")
    assert info.value.field == "api_key" and "MY_RERANK_KEY" in str(info.value)
    assert_clean([str(info.value)])
    assert hostile.requests == []


def test_url_credentials_never_show(
    hostile: HostileServer, build: Build, logs: pytest.LogCaptureFixture
) -> None:
    url = f"http://robot:{PASSWORD}@127.0.0.1:{hostile.port}/v1"
    reranker = build(base_url=url)
    results = run(reranker, "sync").value
    assert len(results) == 4
    # sent as basic auth, as httpx would
    import base64

    sent = hostile.requests[0].headers["authorization"]
    assert base64.b64decode(sent.split()[1]).decode() == f"robot:{PASSWORD}"
    config = reranker.to_config()
    assert config["base_url"] == f"http://127.0.0.1:{hostile.port}/v1"
    texts = [repr(reranker), json.dumps(config), reranker.url]
    texts += [r.getMessage() for r in logs.records]  # httpx's "HTTP Request: POST ..." too
    assert_clean(texts, PASSWORD)
    assert "***@" in repr(reranker) and "***@" in reranker.url
    with pytest.raises(UnpicklableRerankerError) as info:
        pickle.dumps(reranker)
    assert_clean([str(info.value)], PASSWORD)


def test_url_credentials_are_not_in_errors(build: Build, logs: pytest.LogCaptureFixture) -> None:
    reranker = build(base_url=f"http://robot:{PASSWORD}@127.0.0.1:9/v1", max_retries=0)
    raised = run(reranker, "sync").raised(RemoteConnectionError)
    assert_clean(visible(raised), PASSWORD)
    assert_clean((r.getMessage() for r in logs.records), PASSWORD)


def test_a_token_as_url_user_is_a_secret_too(build: Build) -> None:
    token = "tok-Qw3Er5Ty7Ui9Op1As"
    reranker = build(base_url=f"https://{token}@example.invalid/v1")
    assert_clean([repr(reranker), json.dumps(reranker.to_config()), reranker.url], token)


async def _no_wait(seconds: float) -> None:
    return None

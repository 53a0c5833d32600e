"""Hostile answers and hostile settings (remote core, round 2): compression bombs, JSON that
breaks parsers, echoed basic-auth headers, a base_url with a query string, absurd timeouts.

Every malformed answer is a RemoteResponseError (or, for an error status, that status's
error, retried as such), sync and async; the size cap bounds memory, not only the result."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.bounded import bounded
from helpers.hostile_server import Act, HostileServer

from rerank_integrations.backends.remote import RemoteReranker, is_passthrough
from rerank_integrations.errors import (
    RemoteResponseError,
    RemoteStatusError,
    RerankInputError,
)

Build = Callable[..., RemoteReranker]
DOCS = ["alpha", "beta", "gamma", "delta"]
TESTS = Path(__file__).resolve().parents[1]


def run(reranker: RemoteReranker, mode: str) -> Any:
    if mode == "sync":
        return bounded(lambda: reranker.rerank("q", DOCS), 20)
    return bounded(lambda: asyncio.run(reranker.arerank("q", DOCS)), 20)


def answer(scores: list[float]) -> bytes:
    items = [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]
    return json.dumps({"results": items}).encode()


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_decode(
    hostile: HostileServer, build: Build, mode: str, encoding: str
) -> None:
    body = answer([0.1, 0.9, 0.5, 0.3])
    if encoding == "gzip":
        data = gzip.compress(body)
    elif encoding == "deflate":
        data = zlib.compress(body)
    else:  # some servers send deflate without the zlib header
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = packer.compress(body) + packer.flush()
    name = "deflate" if encoding == "raw-deflate" else encoding
    hostile.default = Act.raw_bytes(data, headers={"Content-Encoding": name})
    results = run(build(), mode).value
    assert [r.index for r in results] == [1, 2, 3, 0]
    assert hostile.requests[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
def test_unasked_encodings_are_refused(
    hostile: HostileServer, build: Build, mode: str, encoding: str
) -> None:
    hostile.default = Act.raw_bytes(b"\x28\xb5\x2f\xfd" * 4, headers={"Content-Encoding": encoding})
    error = run(build(), mode).raised(RemoteResponseError)
    assert "Content-Encoding" in str(error)
    assert len(hostile.requests) == 1  # a malformed 2xx answer is final


def test_an_unreadable_error_body_is_still_the_status_error(
    hostile: HostileServer, build: Build
) -> None:
    hostile.default = Act.raw_bytes(b"garbage", status=503, headers={"Content-Encoding": "br"})
    reranker = build(max_retries=2, _sleep=lambda s: None)
    error = run(reranker, "sync").raised(RemoteStatusError)
    assert error.status == 503 and len(hostile.requests) == 3  # retried as a 503


BOMB = textwrap.dedent(
    """
    import resource, sys, zlib
    sys.path.insert(0, sys.argv[2])
    from helpers.hostile_server import Act, HostileServer
    from rerank_integrations.backends.remote import RemoteReranker
    from rerank_integrations.errors import RemoteResponseTooLargeError

    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    data = b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()  # 256 MiB
    with HostileServer() as server:
        server.default = Act.raw_bytes(data, headers={"Content-Encoding": "gzip"})
        reranker = RemoteReranker("m", base_url=server.url(), max_response_bytes=1 << 20)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            if sys.argv[1] == "sync":
                reranker.rerank("q", ["a", "b"])
            else:
                import asyncio
                asyncio.run(reranker.arerank("q", ["a", "b"]))
        except RemoteResponseTooLargeError:
            pass
        else:
            raise SystemExit("no RemoteResponseTooLargeError")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(data), (after - before) // 1024)
    """
)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_compression_bomb_costs_no_more_memory_than_the_cap(mode: str) -> None:
    """A ~250 KB gzip answer that inflates to 256 MiB, with max_response_bytes=1 MiB: the
    process grows by a few MiB at most (before round 2: by the whole inflated chunk)."""
    proc = subprocess.run(
        [sys.executable, "-c", BOMB, mode, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    compressed, grown_mib = map(int, proc.stdout.split())
    assert compressed < 400_000
    assert grown_mib < 32, grown_mib


# --------------------------------------------------------------------------- JSON


DEEP = "[" * 100_000 + "]" * 100_000
HUGE_SCORE = '{"results": [{"index": 0, "relevance_score": 1' + "0" * 400 + "}]}"
LONG_NUMBER = '{"results": [{"index": 0, "relevance_score": ' + "7" * 5000 + "}]}"
HUGE_INDEX = '{"results": [{"index": ' + "1" * 5000 + ', "relevance_score": 0.5}]}'


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "body", [DEEP, '{"results": ' + DEEP + "}", HUGE_SCORE, LONG_NUMBER, HUGE_INDEX, "NaN"]
)
def test_malformed_json_is_a_response_error(
    hostile: HostileServer, build: Build, mode: str, body: str
) -> None:
    hostile.default = Act.raw(body)
    run(build(), mode).raised(RemoteResponseError)
    assert len(hostile.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("body", [DEEP, '{"detail": ' + DEEP + "}", LONG_NUMBER])
def test_an_error_status_with_such_a_body_is_retried_and_can_fail_open(
    hostile: HostileServer, build: Build, mode: str, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.default = Act.raw(body, status=503)

    async def no_wait(seconds: float) -> None:
        return None

    reranker = build(max_retries=1, _sleep=lambda s: None, _async_sleep=no_wait)
    error = run(reranker, mode).raised(RemoteStatusError)
    assert error.status == 503 and len(hostile.requests) == 2
    passthrough = build(max_retries=0, on_error="passthrough")
    with caplog.at_level(logging.WARNING):
        results = run(passthrough, mode).value
    assert [r.index for r in results] == [0, 1, 2, 3] and all(map(is_passthrough, results))


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_echoed_basic_auth_header_is_redacted(
    hostile: HostileServer, build: Build, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pa55-w0rd-9f8e7d6c"
    token = base64.b64encode(f"robot:{password}".encode()).decode()
    hostile.default = Act.echo(status=401)  # the request's headers, Authorization included
    url = f"http://robot:{password}@127.0.0.1:{hostile.port}/v1"
    error = run(build(base_url=url), mode).raised(RemoteStatusError)
    assert hostile.requests[0].headers["authorization"] == f"Basic {token}"
    with caplog.at_level(logging.WARNING):
        run(build(base_url=url, on_error="passthrough"), mode)
    shown = [str(error), error.message, *(r.getMessage() for r in caplog.records)]
    assert "authorization" in str(error).lower()  # the echo did come back
    for text in shown:
        for secret in (token, password, f"robot:{password}"):
            assert secret not in text
            assert all(secret[i : i + 8] not in text for i in range(len(secret) - 7))


def test_a_query_string_is_kept_after_the_path(hostile: HostileServer, build: Build) -> None:
    reranker = build(base_url=hostile.url() + "?api-version=2024-01-01")
    assert len(reranker.rerank("q", DOCS)) == 4
    assert hostile.requests[0].path == "/v1/rerank?api-version=2024-01-01"
    assert reranker.url.endswith("/v1/rerank?api-version=2024-01-01")
    full = build(base_url=hostile.url() + "/rerank/?api-version=2024-01-01")
    full.rerank("q", DOCS)
    assert hostile.requests[-1].path == "/v1/rerank?api-version=2024-01-01"


def test_a_credential_in_the_query_is_never_shown(hostile: HostileServer, build: Build) -> None:
    code = "func-key-Zx81Yq72Wp63"
    hostile.default = Act.echo(status=403)
    reranker = build(base_url=hostile.url() + f"?api-version=1&code={code}", max_retries=0)
    error = run(reranker, "sync").raised(RemoteStatusError)
    assert hostile.requests[0].path == f"/v1/rerank?api-version=1&code={code}"
    for text in (reranker.url, repr(reranker), str(error)):
        assert code not in text
    assert reranker.url.endswith("?api-version=1&code=***")


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("field", ["timeout", "connect_timeout", "deadline"])
@pytest.mark.parametrize("value", [1e10, 10**400], ids=["1e10", "10**400"])
def test_absurd_times_are_refused_at_construction(
    hostile: HostileServer, field: str, value: float
) -> None:
    with pytest.raises(RerankInputError) as info:
        RemoteReranker("m", base_url=hostile.url(), **{field: value})
    assert info.value.field == field


def test_many_retries_keep_the_default_deadline_bounded(hostile: HostileServer) -> None:
    reranker = RemoteReranker("m", base_url=hostile.url(), timeout=1e6, max_retries=10**6)
    assert reranker.deadline == 1e6
    assert len(reranker.rerank("q", DOCS)) == 4
    reranker.close()

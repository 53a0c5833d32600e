"""Item 8: pickling and copying a RemoteReranker.

Pickling carries the settings (``to_config()``) and the learnt limits, never a key or a
client: a key from an environment variable is read again where the reranker is unpickled;
a reranker given an explicit key (or URL credentials, or its own clients) refuses with
``UnpicklableRerankerError``, without the secret. ``copy.copy``/``copy.deepcopy`` build an
independent reranker from the same settings in the same process, key included."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable

import httpx
import pytest
from helpers.hostile_server import HostileServer

from rerank_integrations.backends.remote import RemoteReranker
from rerank_integrations.backends.remote.limits import StatedLimit
from rerank_integrations.errors import UnpicklableRerankerError

Build = Callable[..., RemoteReranker]
KEY = "sk-live-7Hq2vX9pL4mN8rT1wZ6yB3cF5"
OTHER = "sk-live-Other0000000000000001"
DOCS = ["alpha", "beta", "gamma", "delta"]


def used(reranker: RemoteReranker) -> RemoteReranker:
    """Make sure the reranker has its clients, pool and locks (what used to break pickle)."""
    reranker.rerank("q", DOCS)
    return reranker


def test_a_key_from_the_environment_is_read_again(
    hostile: HostileServer, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_RERANK_KEY", KEY)
    reranker = used(build(api_key_env="MY_RERANK_KEY", max_documents_per_request=2))
    data = pickle.dumps(reranker)
    assert KEY.encode() not in data
    monkeypatch.setenv("MY_RERANK_KEY", OTHER)  # "another process": its own environment
    clone = pickle.loads(data)
    assert isinstance(clone, RemoteReranker) and clone.to_config() == reranker.to_config()
    assert len(clone.rerank("q", DOCS)) == 4
    assert hostile.requests[-1].headers["authorization"] == f"Bearer {OTHER}"


def test_the_public_hosts_variable_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTUAL_API_KEY", KEY)
    data = pickle.dumps(RemoteReranker())
    assert KEY.encode() not in data
    monkeypatch.setenv("CONTEXTUAL_API_KEY", OTHER)
    assert pickle.loads(data)._endpoint.api_key == OTHER


def test_an_explicit_key_is_never_pickled(build: Build) -> None:
    reranker = used(build(api_key=KEY))
    with pytest.raises(UnpicklableRerankerError) as info:
        pickle.dumps(reranker)
    assert isinstance(info.value, pickle.PicklingError)
    assert "api_key_env" in str(info.value) and KEY not in str(info.value)


def test_own_clients_are_never_pickled(build: Build) -> None:
    with httpx.Client() as client, pytest.raises(UnpicklableRerankerError, match="http_client"):
        pickle.dumps(build(http_client=client))


def test_learnt_limits_travel_with_the_settings(hostile: HostileServer, build: Build) -> None:
    reranker = used(build())
    assert reranker._limits.learn(StatedLimit("documents", 7))
    for clone in (pickle.loads(pickle.dumps(reranker)), copy.deepcopy(reranker)):
        assert clone.limits.max_documents_per_request == 7
        assert clone.to_config()["max_documents_per_request"] is None  # still runtime state


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_a_copy_is_independent_and_keeps_the_key(
    hostile: HostileServer, build: Build, how: Callable[[RemoteReranker], RemoteReranker]
) -> None:
    reranker = used(build(api_key=KEY, max_documents_per_request=2))
    clone = how(reranker)
    assert clone is not reranker and clone._clients is not reranker._clients
    assert clone.rerank("q", DOCS) == reranker.rerank("q", DOCS)
    assert hostile.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    clone.close()  # closing the copy leaves the original working
    assert len(reranker.rerank("q", DOCS)) == 4


def test_a_copy_shares_the_users_client(build: Build) -> None:
    with httpx.Client() as client:
        clone = copy.deepcopy(build(http_client=client))
        assert clone._clients.sync_client() is client


def test_unpickled_in_another_process(
    hostile: HostileServer, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_RERANK_KEY", KEY)
    data = pickle.dumps(used(build(api_key_env="MY_RERANK_KEY")))
    script = textwrap.dedent(
        """
        import pickle, sys
        reranker = pickle.loads(sys.stdin.buffer.read())
        print(len(reranker.rerank("q", ["a", "b"])))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().strip() == "2"
    assert hostile.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def _errors() -> list[BaseException]:
    from rerank_integrations import errors as e

    return [
        e.RerankError("plain"),
        e.RerankInputError("top_n", "must be >= 1"),
        e.RerankTypeError("documents[3]", "must be a str"),
        e.MissingExtraError("ray", "--engine ray", "ray"),
        e.ModelLoadError("./m: no such directory"),
        e.NonFiniteScoreError("NaN scores", model="m", indices=[1, 4]),
        e.RemoteStatusError(400, "model 'm' does not exist", request_id="req-1"),
        e.RemoteResponseTooLargeError("over 1 MiB", limit=1 << 20),
        e.RerankerClosedError("closed"),
        UnpicklableRerankerError("holds an explicit api_key"),
    ]


@pytest.mark.parametrize("error", _errors(), ids=lambda e: type(e).__name__)
def test_every_error_unpickles_as_itself(error: BaseException) -> None:
    """An error raised in a worker process (Ray, multiprocessing) reaches the caller as itself:
    most take other constructor arguments than their message, which plain exception pickling
    cannot rebuild (Ray answered "Failed to deserialize exception" before)."""
    copy_ = pickle.loads(pickle.dumps(error))
    assert type(copy_) is type(error)
    assert str(copy_) == str(error) and copy_.args == error.args
    assert copy_.__dict__ == error.__dict__  # field, status, request_id, limit, ...

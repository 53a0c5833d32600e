"""``run``/``eval --engine ray`` and ``RerankScorer`` in users' Ray Data pipelines, on a real
local Ray cluster (2 CPUs, tests/scale_out/conftest.py) and real text: the Medline subset in
tests/ir/data/medline-150 (6 judged queries, BM25 top 20).

What docs/scale-out.md promises and these tests hold:
- the Ray engine writes the byte-identical run file and sidecar of the in-process engine, for a
  cross-encoder and for a causal format (ctxl-v2), on 2 actors; ``eval``'s table too;
- a killed worker costs time, not data: Ray restarts the actor and retries its batch, and the
  file holds every query once, identical to the in-process one;
- a killed driver resumes with the same command: kept queries are not sent again and the final
  file is byte-identical;
- a worker's error is the command's error (exit 2, its message), not a Ray traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.remote_server import Fault, RerankTestServer

from rerank_integrations import LocalReranker
from rerank_integrations.cli import main
from rerank_integrations.errors import MissingExtraError
from rerank_integrations.ir.ray_engine import RayOptions, on_ray

MEDLINE = Path(__file__).parents[1] / "ir" / "data" / "medline-150"
K = 20
QUERIES = 6


def _run_args(out: Path, *reranker: str) -> list[str]:
    return ["run", "--data", str(MEDLINE), *reranker, "-o", str(out), "--first-stage-k", str(K)]


def _run(out: Path, *args: str) -> int:
    return main([*_run_args(out, *args), "-q"])


@pytest.mark.parametrize("model", ["xlmr", "ctxl"])
def test_ray_writes_the_in_process_bytes(
    model: str, ray_cluster: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model_dir = str(request.getfixturevalue(f"tiny_{model}_dir"))
    base = tmp_path / "in-process.trec"
    assert _run(base, "--model", model_dir, "--device", "cpu") == 0
    assert len(base.read_text().splitlines()) == QUERIES * K
    # 2 actors: each query may land on either (1 actor: the fault tests and the benchmark)
    out = tmp_path / "ray.trec"
    args = ["--model", model_dir, "--device", "cpu", "--engine", "ray", "--ray-actors", "2"]
    assert _run(out, *args) == 0
    assert out.read_bytes() == base.read_bytes()
    assert Path(f"{out}.meta.json").read_bytes() == Path(f"{base}.meta.json").read_bytes()


def test_eval_with_ray_prints_the_same_table(
    ray_cluster: Any, tiny_xlmr_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--data", str(MEDLINE), "--model", str(tiny_xlmr_dir), "--device", "cpu"]
    argv += ["--first-stage-k", str(K), "--json", "-q"]
    assert main(argv) == 0
    in_process = json.loads(capsys.readouterr().out)
    assert main([*argv, "--engine", "ray", "--ray-actors", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == in_process
    assert in_process["queries"] == QUERIES


def test_users_own_pipeline_gets_the_rerankers_scores(
    ray_cluster: Any, tiny_xlmr_dir: Path
) -> None:
    """The documented ``ds.map_batches(RerankScorer, fn_constructor_kwargs={"config": ...})``."""
    from rerank_integrations.ray_data import RerankScorer

    reranker = LocalReranker(str(tiny_xlmr_dir), device="cpu")
    rows = [
        {"query_id": f"q{i}", "query": f"query number {i}", "documents": docs}
        for i, docs in enumerate(
            [["alpha beta", "gamma"], ["delta"] * 3, ["one", "two words", "three more words"]] * 3
        )
    ]
    ds = ray_cluster.data.from_items(rows).map_batches(
        RerankScorer,
        fn_constructor_kwargs={"config": reranker.to_config(), "trusted": True},
        batch_size=2,
        compute=ray_cluster.data.ActorPoolStrategy(size=2),
        num_cpus=1,
    )
    out = {row["query_id"]: row for row in ds.take_all()}
    assert sorted(out) == sorted(r["query_id"] for r in rows)
    for row in rows:
        got = out[row["query_id"]]
        assert list(got["documents"]) == row["documents"] and got["query"] == row["query"]
        expected = {r.index: r.raw_score for r in reranker.rerank(row["query"], row["documents"])}
        assert list(got["scores"]) == [expected[i] for i in range(len(row["documents"]))]
    reranker.close()


def _assert_one_error_line(err: str, words: str) -> None:
    """The command's one ``error:`` line is the worker's own error, not Ray's wrapper (Ray's
    log lines about the failure, with its stack traces, come around it in any order)."""
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert words in line, err[-2000:]
    assert "ray::" not in line and "ActorDiedError" not in line


def test_a_workers_error_is_the_commands_error(
    ray_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RerankTestServer() as server:
        server.script.extend([Fault.error(400, {"detail": "model 'm' does not exist"})] * 8)
        rc = _run(tmp_path / "out.trec", *_remote(server), "--engine", "ray")
    assert rc == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err, "does not exist")


def test_a_model_an_actor_cannot_load_is_the_commands_error(
    ray_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Built on the actor (a path may exist on one node and not another): its ModelLoadError
    is the command's error, not Ray's ActorDiedError text and traceback."""
    rc = _run(tmp_path / "out.trec", "--model", str(tmp_path / "no-model"), "--engine", "ray")
    assert rc == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err, "no such directory")


def test_an_address_beside_an_initialised_ray_is_reported(
    ray_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from rerank_integrations.ir.ray_engine import ray_session

    with caplog.at_level("WARNING"), ray_session(RayOptions(address="10.0.0.9:6379")) as ray:
        assert ray.is_initialized()
    assert "--ray-address 10.0.0.9:6379 is not used" in caplog.text
    assert ray_cluster.is_initialized()  # a connection it did not open is left open


def test_options_are_checked_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.trec"
    assert _run(out, "--model", "m", "--ray-actors", "2") == 2
    assert "--ray-actors needs --engine ray" in capsys.readouterr().err
    assert _run(out, "--model", "m", "--engine", "ray", "--ray-actors", "0") == 2
    assert "ray_actors" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError):
        RayOptions(cpus_per_actor=float("nan"))
    # without the extra: MissingExtraError naming the pip command, before anything is sent
    monkeypatch.setitem(sys.modules, "ray.data", None)
    engine = on_ray(
        {"backend": "rerank_integrations._testing:FakeReranker"}, RayOptions(), concurrency=1
    )
    with pytest.raises(MissingExtraError, match=r'pip install "rerank-integrations\[ray\]"'):
        engine([], lambda job, scores: None)


# ----------------------------------------------------------------------------- faults


def _map_workers() -> list[int]:
    """PIDs of the Ray Data map actors (their process title names them; this cluster is ours)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::MapWorker(MapBatches("):
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def slow_server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as server:
        server.latency = 0.4
        yield server


def _remote(server: RerankTestServer) -> list[str]:
    url = server.base_url("vllm")
    return ["--backend", "remote", "--api-format", "vllm", "--base-url", url, "--model", "m"]


def _reference(server: RerankTestServer, tmp_path: Path) -> bytes:
    """The in-process run against the same server (its scores are a function of the text)."""
    base = tmp_path / "in-process.trec"
    assert _run(base, *_remote(server), "--concurrency", "1") == 0
    with server._lock:
        server.requests.clear()
    return base.read_bytes()


def test_a_killed_worker_costs_time_not_data(
    ray_cluster: Any, slow_server: RerankTestServer, tmp_path: Path
) -> None:
    expected = _reference(slow_server, tmp_path)
    killed: list[int] = []

    def kill_mid_batch() -> None:  # once the third query is on the server, mid-request
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(slow_server.bodies()) < 3:
            time.sleep(0.02)
        for pid in _map_workers():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_mid_batch)
    killer.start()
    out = tmp_path / "ray.trec"
    rc = _run(out, *_remote(slow_server), "--concurrency", "1", "--engine", "ray")
    killer.join()
    assert killed, "no Ray Data map worker was found to kill"
    assert rc == 0
    assert out.read_bytes() == expected  # nothing lost, nothing twice
    queries = [body["query"] for body in slow_server.bodies()]
    assert len(set(queries)) == QUERIES
    assert len(queries) > QUERIES  # the killed worker's query was sent again: a retry


def test_a_killed_driver_resumes_with_the_same_command(
    ray_cluster: Any, slow_server: RerankTestServer, tmp_path: Path
) -> None:
    expected = _reference(slow_server, tmp_path)
    out = tmp_path / "ray.trec"
    argv = _run_args(out, *_remote(slow_server), "--concurrency", "1", "--engine", "ray")
    address = ray_cluster.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-m", "rerank_integrations", *argv, "-q", "--ray-address", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            if out.exists() and len(out.read_text().splitlines()) >= 2 * K:
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the driver finished before it could be killed"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
    kept = {line.split()[0] for line in out.read_text().splitlines() if len(line.split()) == 6}
    assert 2 <= len(kept) < QUERIES
    with slow_server._lock:
        slow_server.requests.clear()
    assert main([*argv, "-q"]) == 0  # the same command, resumed (Ray already connected here)
    assert out.read_bytes() == expected
    resent = {body["query"] for body in slow_server.bodies()}
    assert len(resent) <= QUERIES - len(kept) + 1  # kept queries (all but a cut one) not re-sent

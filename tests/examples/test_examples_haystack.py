"""examples/haystack_rerank.py runs offline: a tiny local model, and the loopback rerank server.

One run is a real ``python examples/haystack_rerank.py`` subprocess; the others call the
example's ``main()`` in-process (same code, without paying the interpreter start-up again).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/haystack_rerank.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, EXAMPLE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False"},
    )


def _tables(stdout: str) -> list[list[list[str]]]:
    """The printed tables: rows split into (rank, score, raw, date, source...) columns."""
    tables: list[list[list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith(("Without instruction", "With instruction")):
            tables.append([])
        elif tables and line[:4].strip().isdigit():
            tables[-1].append(line.split())
    return tables


def _example() -> Any:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import haystack_rerank

        return haystack_rerank
    finally:
        sys.path.remove(str(ROOT / "examples"))


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = _example().main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _corpus() -> list[tuple[str, str, str]]:
    return list(_example().CORPUS)


def test_example_with_a_tiny_local_model(tiny_ctxl_dir: Path) -> None:
    out = _run("--model", str(tiny_ctxl_dir), "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert f"model: {tiny_ctxl_dir}" in out.stdout
    plain, guided = _tables(out.stdout)
    dates = sorted(date for date, _, _ in _corpus())
    for table in (plain, guided):
        assert [row[0] for row in table] == [str(i) for i in range(1, len(dates) + 1)]
        assert sorted(row[3] for row in table) == dates  # every document, with its metadata
        scores = [float(row[1]) for row in table]
        assert scores == sorted(scores, reverse=True)
    # The instruction reached the model: the scores change (a random tiny model, so only that).
    assert {(r[3], r[1]) for r in plain} != {(r[3], r[1]) for r in guided}
    assert "YAML round trip (allow-listed load, async run): same ranking" in out.stdout


def test_example_top_k(tiny_ctxl_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(capsys, "--model", str(tiny_ctxl_dir), "--device", "cpu", "--top-k", "3")
    assert code == 0, err
    assert [len(t) for t in _tables(out)] == [3, 3]
    assert "same ranking" in out


def test_example_against_the_loopback_server(capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.remote_server import RerankTestServer

    corpus = _corpus()
    with RerankTestServer() as server:
        # Newest first, so the expected order is known in advance.
        for rank, (_, _, text) in enumerate(sorted(corpus, reverse=True)):
            server.scores[text] = round(0.9 - rank / 10, 2)
        code, out, err = _main(
            capsys,
            "--remote", "--api-format", "contextual", "--base-url", server.base_url("contextual"),
        )  # fmt: skip
        bodies = server.bodies()
    assert code == 0, err
    plain, guided = _tables(out)
    newest_first = sorted((d for d, _, _ in corpus), reverse=True)
    assert [row[3] for row in plain] == newest_first
    assert [row[3] for row in guided] == newest_first
    assert [float(row[1]) for row in guided] == [round(0.9 - i / 10, 2) for i in range(len(corpus))]
    assert len(bodies) == 3  # without instruction, with it, and the YAML-loaded copy
    assert "instruction" not in bodies[0]  # instruction="" per call switches it off
    assert bodies[1]["instruction"] == bodies[2]["instruction"] == "prefer the most recent source"
    assert bodies[1]["model"] == "ctxl-rerank-v2-instruct-multilingual"
    date, source, text = corpus[0]
    sent = dict(zip(bodies[1]["documents"], bodies[1]["metadata"], strict=True))
    assert sent[text] == f"date: {date}\nsource: {source}"
    assert "Authorization" not in server.requests[0].headers  # custom base_url: no env key sent


def test_example_without_hub_explains(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(capsys)  # the default hub id; the hub is unreachable (offline)
    assert code == 1
    assert "Could not load the model" in err
    assert "--model" in err


def test_example_remote_without_key_explains(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTEXTUAL_API_KEY", raising=False)
    code, _, err = _main(capsys, "--remote")  # the Contextual API needs a key: none is set
    assert code == 1
    assert "CONTEXTUAL_API_KEY" in err


def test_example_self_hosted_format_sends_haystacks_text_and_the_instruction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from helpers.remote_server import RerankTestServer

    with RerankTestServer() as server:
        code, out, err = _main(
            capsys, "--remote", "--api-format", "vllm", "--base-url", server.base_url("vllm"),
            "--model", "BAAI/bge-reranker-v2-m3", "--top-k", "2",
        )  # fmt: skip
        bodies = server.bodies()
    assert code == 0, err
    assert [len(t) for t in _tables(out)] == [2, 2]
    assert bodies[0]["query"] == _example().QUERY
    instruction = "prefer the most recent source"
    # vLLM's own instruction field where the remote format has it, else the shared folding
    # rule (the instruction before the query)
    assert bodies[1].get("instruction") == instruction or (
        bodies[1]["query"] == f"{instruction} {_example().QUERY}" and "instruction" not in bodies[1]
    )
    # no metadata slot: Haystack's own text, meta_fields_to_embed values joined by "\n"
    date, source, text = _corpus()[0]
    assert f"{date}\n{source}\n{text}" in bodies[1]["documents"]
    assert "metadata" not in bodies[1]

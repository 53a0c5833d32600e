"""The README's main job (examples/quickstart.py) and the CLI, end to end on a tiny local model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "sample_docs.jsonl"


def _run(args: list[str], stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )


def test_quickstart_with_a_local_model_directory(tiny_ctxl_dir: Path) -> None:
    out = _run(["examples/quickstart.py", "--model", str(tiny_ctxl_dir), "--device", "cpu"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "Without instruction" in lines
    assert any(line.startswith("With instruction: 'Prefer documents published") for line in lines)
    n_docs = sum(1 for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip())
    ranks = [line.split()[0] for line in lines if line[:4].strip().isdigit()]
    assert ranks == [str(i) for i in range(1, n_docs + 1)] * 2, "two full tables, ranks 1..N"


def test_quickstart_model_env_var_and_top_n(tiny_ctxl_dir: Path) -> None:
    out = _run(["examples/quickstart.py", "--top-n", "3"], RERANK_MODEL=str(tiny_ctxl_dir))
    assert out.returncode == 0, out.stderr
    assert f"model: {tiny_ctxl_dir}" in out.stdout
    ranks = [line.split()[0] for line in out.stdout.splitlines() if line[:4].strip().isdigit()]
    assert ranks == ["1", "2", "3"] * 2


def test_quickstart_without_hub_explains_instead_of_traceback() -> None:
    out = _run(["examples/quickstart.py"])  # default hub id, hub unreachable (offline)
    assert out.returncode == 1
    assert "Could not load the model" in out.stderr
    assert 'make demo ARGS="--model ./ctxl-1b"' in out.stderr  # how it is run through make
    assert "hf download" in out.stderr and "huggingface-cli" not in out.stderr  # the current CLI
    assert "Traceback" not in out.stderr


def test_demo_and_tests_use_separate_environments() -> None:
    """`make demo` builds .venv-demo; `make test` (.ci/run) builds .venv with the pinned CPU
    torch: neither can swap the other's torch."""
    dry = subprocess.run(
        ["make", "-n", "-B", "demo", "env"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout  # -B: every command, whatever is already installed here
    demo = [line for line in dry.splitlines() if "pip install" in line and "local,remote" in line]
    tests = [ln for ln in dry.splitlines() if "constraints-test.txt" in ln and "[dev]" in ln]
    assert demo and all(line.startswith(".venv-demo/") for line in demo)
    assert tests and all(line.startswith(".venv/") for line in tests)


def test_cli_reranks_jsonl(tiny_ctxl_dir: Path) -> None:
    stdin = SAMPLE.read_text(encoding="utf-8")
    out = _run(
        ["-m", "rerank_integrations", "rerank", "--model", str(tiny_ctxl_dir), "--query",
         "rerankers", "--instruction", "prefer recent", "--top-n", "5"],
        stdin,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 5
    texts = [json.loads(line)["text"] for line in stdin.splitlines() if line.strip()]
    scores = [r["relevance_score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for r in rows:
        assert set(r) == {"index", "relevance_score", "raw_score", "text"}
        assert r["text"] == texts[r["index"]]
        assert 0.0 <= r["relevance_score"] <= 1.0

"""The LangChain and LlamaIndex examples, run as users run them, on a tiny local model and
against the loopback rerank server (so they never rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.remote_server import RerankTestServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["examples/langchain_rerank.py", "examples/llama_index_rerank.py"]
LINE = re.compile(r"^\s*(\d+)\. (\d\.\d{4})  (\d{4}-\d\d-\d\d)  ", re.M)


def run(args: list[str]) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("CONTEXTUAL_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def check_two_rankings(out: str, top_n: int) -> None:
    assert "What is the current price of a solar module?" in out
    blocks = out.split("\n\n")[1:]
    assert len(blocks) == 2, out
    assert "Prefer the most recent source" in blocks[1]
    for block in blocks:
        rows = LINE.findall(block)
        assert [int(r[0]) for r in rows] == list(range(1, top_n + 1)), block
        scores = [float(r[1]) for r in rows]
        assert scores == sorted(scores, reverse=True), block


@pytest.fixture
def server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as s:
        yield s


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_on_tiny_local_model(example: str, tiny_ctxl_dir: Path) -> None:
    out = run([example, "--model", str(tiny_ctxl_dir), "--device", "cpu", "--top-n", "3"])
    check_two_rankings(out, 3)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_against_loopback_server(example: str, server: RerankTestServer) -> None:
    url = server.base_url("contextual")
    out = run([example, "--backend", "remote", "--base-url", url, "--model", "m", "--top-n", "4"])
    check_two_rankings(out, 4)
    # the instruction and the metadata reached the wire in the second (instructed) request
    bodies = [b for b in server.bodies() if isinstance(b, dict)]
    assert len(bodies) == 2
    text = repr(bodies[-1])
    assert "Prefer the most recent source" in text and "2025-02-03" in text
    assert "Prefer the most recent source" not in repr(bodies[0])
    assert "file_name" not in repr(bodies)  # excluded/unsent keys never reach the server


QUERY = "What is the current price of a solar module?"
INSTRUCTION = "Prefer the most recent source"


@pytest.mark.parametrize("example", EXAMPLES)
def test_documented_vllm_command_against_loopback_server(
    example: str, server: RerankTestServer
) -> None:
    """The docstring's ``--backend remote --api-format vllm`` command (it used to crash: the
    example passed an instruction the vllm format refuses); vLLM has no instruction or
    metadata field, so the instruction is folded before the query and the documents are the
    framework's own text (no metadata field)."""
    doc = (ROOT / example).read_text()
    assert "--backend remote --api-format vllm" in doc  # the command the docs show
    url = server.base_url("vllm")
    out = run(
        [example, "--backend", "remote", "--api-format", "vllm", "--base-url", url,
         "--model", "BAAI/bge-reranker-v2-m3", "--top-n", "4"]
    )  # fmt: skip
    check_two_rankings(out, 4)
    bodies = [b for b in server.bodies() if isinstance(b, dict)]
    assert len(bodies) == 2
    assert bodies[0]["query"] == QUERY and "instruction" not in bodies[0]
    # the instruction reaches the server: vLLM's own ``instruction`` field where the remote
    # format has it, else folded before the query (the shared rule)
    assert bodies[1].get("instruction") == INSTRUCTION or (
        bodies[1]["query"] == f"{INSTRUCTION} {QUERY}" and "instruction" not in bodies[1]
    )
    for body in bodies:
        assert "metadata" not in body
        assert body["model"] == "BAAI/bge-reranker-v2-m3"
    texts = bodies[1]["documents"]
    if "langchain" in example:  # CrossEncoderReranker's text: page_content only
        assert "Module prices fell to roughly $0.11 per watt." in texts
    else:  # LlamaIndex's text: get_content(MetadataMode.EMBED), file_name excluded
        assert "source: BloombergNEF\ndate: 2024-11-20\n\nModule prices fell to roughly $0.11 " \
            "per watt." in texts  # fmt: skip
        assert "file_name" not in repr(bodies)

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import pytest

from rerank_integrations import RerankInputError
from rerank_integrations._testing import FakeReranker
from rerank_integrations.cli import read_jsonl_documents, write_ranked


def test_read_jsonl_documents_with_metadata() -> None:
    lines = [
        json.dumps({"text": "a", "metadata": {"source": "wiki", "year": 2024, "emb": [0.1]}}),
        "",
        json.dumps({"text": "b"}),
        json.dumps({"text": "c", "metadata": "raw meta"}),
    ]
    texts, metas = read_jsonl_documents(lines)
    assert texts == ["a", "b", "c"]
    assert metas == ["source: wiki\nyear: 2024", "", "raw meta"]


def test_no_metadata_means_none() -> None:
    assert read_jsonl_documents(['{"text": "a"}', '{"text": "b", "metadata": {}}']) == (
        ["a", "b"],
        None,
    )


@pytest.mark.parametrize(
    ("bad", "line"),
    [
        ('{"text": "a"}\n{"text": ', 2),
        ('{"text": "a"}\n["a"]', 2),
        ('{"txt": "a"}', 1),
        ('{"text": 5}', 1),
        ('{"text": "a"}\n\n{"text": "b", "metadata": [1]}', 3),
        # hostile: json.loads raised RecursionError / ValueError (exit 1, a traceback)
        ('{"text": "a"}\n{"text": "b", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}", 2),
        ('{"text": "a", "metadata": {"n": ' + "9" * 5_000 + "}}", 1),
    ],
)
def test_malformed_line_is_named(bad: str, line: int) -> None:
    with pytest.raises(RerankInputError) as info:
        read_jsonl_documents(bad.splitlines())
    assert info.value.field == f"line {line}"
    assert len(str(info.value)) < 300  # the reason, not the line


def test_hostile_json_lines_say_why() -> None:
    with pytest.raises(RerankInputError, match=r"^line 1: not valid JSON \(nested too deeply\)$"):
        read_jsonl_documents(['{"text": ' + "[" * 5_000])
    digits = r"^line 1: not valid JSON \(an integer of more than 4300 digits"
    with pytest.raises(RerankInputError, match=digits):
        read_jsonl_documents(['{"text": "a", "n": -' + "1" * 4_301 + "}"])
    # up to the limit an integer is read (format_metadata decides how to render it)
    big = '{"text": "a", "metadata": {"n": ' + "1" * 4_300 + ', "s": "x"}}'
    texts, metas = read_jsonl_documents([big])
    assert texts == ["a"] and metas is not None and metas[0].endswith("\ns: x")


def test_write_ranked_outputs_best_first() -> None:
    reranker = FakeReranker({"a": 0.2, "b": 0.9, "c": 0.5})
    args = argparse.Namespace(query="q", instruction="prefer b", top_n=2)
    out = io.StringIO()
    write_ranked(reranker, args, ["a", "b", "c"], ["m", "", ""], out)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rows == [
        {"index": 1, "relevance_score": 0.9, "raw_score": 0.9, "text": "b"},
        {"index": 2, "relevance_score": 0.5, "raw_score": 0.5, "text": "c"},
    ]
    assert reranker.calls[0].instruction == "prefer b"
    assert reranker.calls[0].metadata == ("m", "", "")


def _cli(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rerank_integrations", "rerank", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_malformed_line_fails_before_loading_a_model() -> None:
    out = _cli('{"text": "ok"}\nnot json\n', "--model", "/nonexistent/model", "--query", "q")
    assert out.returncode == 2
    assert "line 2" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_bad_query_fails_before_loading_a_model() -> None:
    out = _cli('{"text": "ok"}\n', "--model", "/nonexistent/model", "--query", "  ")
    assert out.returncode == 2
    assert "query" in out.stderr


def test_non_finite_raw_score_is_written_as_null() -> None:
    reranker = FakeReranker({"a": float("-inf")})
    args = argparse.Namespace(query="q", instruction=None, top_n=None)
    out = io.StringIO()
    write_ranked(reranker, args, ["a"], None, out)
    assert json.loads(out.getvalue()) == {
        "index": 0, "relevance_score": 0.0, "raw_score": None, "text": "a"
    }
    assert "Infinity" not in out.getvalue()

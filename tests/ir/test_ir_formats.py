"""BEIR / TREC readers and the run writer: content, ranking order, malformed lines named."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerank_integrations import RerankInputError
from rerank_integrations.ir.formats import (
    beir_paths,
    format_run_block,
    ranked,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_run,
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_the_beir_folder(beir_dir: Path) -> None:
    paths = beir_paths(beir_dir)
    corpus = read_corpus(paths.corpus)
    assert len(corpus) == 12 and corpus["d0"].title == "Paris"
    assert corpus["d0"].fields["metadata"] == {"source": "source-d0"}
    queries = read_queries(paths.queries)
    assert list(queries) == ["q1", "q2", "q3", "q4", "q5"]
    qrels = read_qrels(paths.qrels)
    assert qrels["q1"] == {"d0": 1, "d6": 2, "d8": 0}
    assert set(read_corpus(paths.corpus, keep={"d3", "d4"})) == {"d3", "d4"}


def test_trec_qrels_int_ids_and_no_header(tmp_path: Path) -> None:
    qrels = _write(tmp_path, "q.txt", "1 0 a 1\n1 0 b 0\n\n2 0 c 2\n")
    assert read_qrels(qrels) == {"1": {"a": 1, "b": 0}, "2": {"c": 2}}
    corpus = _write(tmp_path, "c.jsonl", '{"_id": 7, "text": "x"}\n')
    assert list(read_corpus(corpus)) == ["7"]


def test_read_run_keeps_scores_and_query_order(tmp_path: Path) -> None:
    run = _write(tmp_path, "r.trec", "q2 Q0 a 1 3.5 t\nq1 Q0 b 1 2 t\nq2 Q0 c 2 -1e-3 t\n")
    assert read_run(run) == {"q2": {"a": 3.5, "c": -0.001}, "q1": {"b": 2.0}}
    assert list(read_run(run)) == ["q2", "q1"]


@pytest.mark.parametrize(
    ("name", "text", "line", "reader"),
    [
        ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "text": ', 2, read_corpus),
        ("corpus.jsonl", '["a"]\n', 1, read_corpus),
        ("corpus.jsonl", '{"text": "x"}\n', 1, read_corpus),
        ("corpus.jsonl", '{"_id": "a", "text": 3}\n', 1, read_corpus),
        ("corpus.jsonl", '{"_id": "a", "text": "x", "title": 1}\n', 1, read_corpus),
        (
            "corpus.jsonl",
            '{"_id": "a", "text": "x"}\n\n{"_id": "a", "text": "y"}\n',
            3,
            read_corpus,
        ),
        ("queries.jsonl", '{"_id": "q", "text": "  "}\n', 1, read_queries),
        ("qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\n", 2, read_qrels),
        ("qrels.tsv", "q1\td1\tyes\n", 1, read_qrels),
        ("qrels.tsv", "q1\td1\t1\nq1\td1\t0\n", 2, read_qrels),
        ("run.trec", "q1 Q0 d1 1 0.5\n", 1, read_run),
        ("run.trec", "q1 Q0 d1 1 0.5 t\nq1 Q0 d2 x 0.4 t\n", 2, read_run),
        ("run.trec", "q1 Q0 d1 1 high t\n", 1, read_run),
        ("run.trec", "q1 Q0 d1 1 nan t\n", 1, read_run),
        ("run.trec", "q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n", 2, read_run),
        # hostile: RecursionError / ValueError escaped json.loads; a relevance past 32 bits
        # overflowed in trec_eval (silently wrong metrics, or SystemError)
        ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": ' + "[" * 50_000, 2, read_corpus),
        ("queries.jsonl", '{"_id": ' + "7" * 5_000 + ', "text": "x"}\n', 1, read_queries),
        ("qrels.tsv", "q1\td1\t1\nq1\td2\t2147483648\n", 2, read_qrels),
        ("qrels.tsv", "q1\td1\t" + "9" * 5_000 + "\n", 1, read_qrels),
        ("run.trec", "q1 Q0 d1 " + "1" * 5_000 + " 0.5 t\n", 1, read_run),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, reader: object
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(RerankInputError) as info:
        reader(path)  # type: ignore[operator]
    assert info.value.field == f"{path}:{line}"
    assert len(str(info.value)) < len(str(path)) + 200  # the reason, not the whole value


def test_undecodable_bytes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(RerankInputError) as info:
        read_corpus(path)
    assert info.value.field == f"{path}:2"


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(RerankInputError, match="no such file"):
        read_run(tmp_path / "nope.trec")
    with pytest.raises(RerankInputError, match="empty"):
        read_run(_write(tmp_path, "empty.trec", "\n"))
    with pytest.raises(RerankInputError, match="not a BEIR folder"):
        beir_paths(tmp_path)


def test_ranked_is_trec_eval_order() -> None:
    # score descending, ties by docid DESCENDING (trec_eval's comparison)
    assert ranked({"a": 1.0, "c": 1.0, "b": 2.0, "d": 0.5}) == [
        ("b", 2.0),
        ("c", 1.0),
        ("a", 1.0),
        ("d", 0.5),
    ]


def test_run_block_ranks_agree_with_scores_and_read_back(tmp_path: Path) -> None:
    block = format_run_block("q1", {"a": 0.1, "b": 0.30000000000000004, "c": 0.1}, "tag")
    assert block.splitlines() == [
        "q1 Q0 b 1 0.30000000000000004 tag",
        "q1 Q0 c 2 0.1 tag",
        "q1 Q0 a 3 0.1 tag",
    ]
    path = tmp_path / "r.trec"
    write_run(path, {"q2": {"x": 1}, "q1": {"a": 0.1}}, "tag", order=["q1", "q2", "q9"])
    assert read_run(path) == {"q1": {"a": 0.1}, "q2": {"x": 1.0}}
    assert list(read_run(path)) == ["q1", "q2"]


@pytest.mark.parametrize(
    ("qid", "doc", "tag"), [("q 1", "a", "t"), ("q", "a b", "t"), ("q", "a", "my tag")]
)
def test_whitespace_ids_cannot_be_written(qid: str, doc: str, tag: str) -> None:
    with pytest.raises(RerankInputError, match="whitespace"):
        format_run_block(qid, {doc: 1.0}, tag)

"""BEIR folders and TREC files: readers and the run writer.

- **BEIR folder**: ``corpus.jsonl`` (``{"_id", "title", "text", ...}``), ``queries.jsonl``
  (``{"_id", "text", ...}``) and ``qrels/<split>.tsv`` (``query-id  corpus-id  score``, with
  or without that header line).
- **TREC qrels**: ``qid  iteration  docid  relevance`` (four columns) is read too.
- **TREC run**: ``qid Q0 docid rank score tag``, one line per retrieved document.

Every malformed line raises :class:`~rerank_integrations.errors.RerankInputError` whose field
is ``"<file>:<line>"``, hostile ones included (JSON nested too deeply for the parser, an
integer longer than Python's int-string limit, a relevance or rank outside 32 bits): never a
traceback. A UTF-8 byte-order mark at the start of a file (Windows tools write one) is
dropped, never read as part of the first id. Ids are strings (an int ``_id`` in a JSONL file
is read as its decimal text); ids written to a TREC file must not contain whitespace.
:func:`write_run` replaces its file atomically (:mod:`.outputs`).

**Ranking order.** :func:`ranked` is the one order of a query's documents used everywhere:
score descending, ties by docid descending, the order trec_eval evaluates a run in. The run
writer numbers ranks in that order, so a file's rank column always agrees with its scores.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_integrations.errors import RerankInputError
from rerank_integrations.ir.outputs import replacing
from rerank_integrations.validation import text_value

__all__ = [
    "BeirPaths",
    "parse_json",
    "parse_json_object",
    "Document",
    "Qrels",
    "Query",
    "Run",
    "RunLine",
    "beir_paths",
    "format_run_block",
    "iter_jsonl",
    "parse_run_line",
    "ranked",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_run",
    "write_run",
]

Run = dict[str, dict[str, float]]
"""``query id -> {doc id: score}``; query order is the order of first appearance."""
Qrels = dict[str, dict[str, int]]
"""``query id -> {doc id: relevance}``."""

_HEADER_NAMES = frozenset({"score", "relevance", "rel", "label", "grade"})


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus entry; ``fields`` is the whole JSON record (for metadata fields)."""

    doc_id: str
    title: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Query:
    """One query; ``fields`` is the whole JSON record (for an instruction field)."""

    query_id: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class BeirPaths:
    """The three files of a BEIR folder for one split (``qrels`` may not exist)."""

    corpus: Path
    queries: Path
    qrels: Path


def beir_paths(folder: str | os.PathLike[str], split: str = "test") -> BeirPaths:
    """The file paths of a BEIR folder; raises when the folder lacks corpus or queries."""
    root = Path(folder)
    if not root.is_dir():
        raise RerankInputError("data", f"{root} is not a directory")
    qrels = root / "qrels" / f"{split}.tsv"
    paths = BeirPaths(root / "corpus.jsonl", root / "queries.jsonl", qrels)
    for name in ("corpus", "queries"):
        if not getattr(paths, name).is_file():
            raise RerankInputError("data", f"{root} has no {name}.jsonl (not a BEIR folder)")
    return paths


# --------------------------------------------------------------------------------- reading


def _where(path: Path, number: int) -> str:
    return f"{path}:{number}"


def _open_lines(path: str | os.PathLike[str]) -> tuple[Path, Iterator[tuple[int, str]]]:
    p = Path(path)
    if not p.is_file():
        raise RerankInputError(str(p), "no such file")

    def lines() -> Iterator[tuple[int, str]]:
        # utf-8-sig: a byte-order mark at the start (Windows tools write one) is dropped
        with p.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
            yield from enumerate(fh, start=1)

    return p, lines()


def _text(where: str, value: str) -> str:
    text_value(where, value)  # undecodable bytes arrive as lone surrogates: named, not sent
    return value


def _id_value(where: str, record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise RerankInputError(where, f"{key!r} must be a non-empty string")
    return _text(where, value)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("<file>:<line>", record)`` for each non-blank line; records must be objects."""
    p, lines = _open_lines(path)
    for number, line in lines:
        if not line.strip():
            continue
        where = _where(p, number)
        yield where, parse_json_object(line, where)


def _number_problem(exc: ValueError) -> str:
    if "integer string conversion" in str(exc):
        return (
            f"an integer of more than {sys.get_int_max_str_digits()} digits, Python's limit "
            "(the PYTHONINTMAXSTRDIGITS environment variable raises it)"
        )
    return str(exc).split("\n", 1)[0][:200]


def parse_json(text: str, where: str, *, whole_file: bool = False) -> Any:
    """``json.loads`` for untrusted text: every failure is a ``RerankInputError`` naming
    ``where`` (plus the line of a syntax error when ``text`` is a ``whole_file``), never a
    traceback: malformed JSON, nesting deeper than the parser's recursion limit (about 1,000
    levels: ``RecursionError``), an integer longer than Python's int-string limit
    (``sys.get_int_max_str_digits()``, 4,300 digits by default: ``ValueError``). Such a
    number is refused rather than read: no field of these files needs one."""
    try:
        return json.loads(text.removeprefix("\ufeff"))  # a byte-order mark is not an error
    except json.JSONDecodeError as exc:
        place = f"{where}:{exc.lineno}" if whole_file else where
        raise RerankInputError(place, f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise RerankInputError(where, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise RerankInputError(where, f"not valid JSON ({_number_problem(exc)})") from None


def parse_json_object(line: str, where: str, *, expected: str = "a JSON object") -> dict[str, Any]:
    """One JSON line that must hold an object; a ``RerankInputError`` naming ``where`` (e.g.
    ``"corpus.jsonl:3"`` or ``"line 3"``) otherwise (:func:`parse_json`). Shared by every
    JSONL reader."""
    record = parse_json(line, where)
    if not isinstance(record, dict):
        raise RerankInputError(where, f"must be {expected}")
    return record


def read_corpus(
    path: str | os.PathLike[str], *, keep: set[str] | None = None
) -> dict[str, Document]:
    """``doc id -> Document``; with ``keep``, only those ids are kept (every line is checked)."""
    corpus: dict[str, Document] = {}
    for where, record in iter_jsonl(path):
        doc_id = _id_value(where, record, "_id")
        text = record.get("text")
        if not isinstance(text, str):
            raise RerankInputError(where, "'text' must be a string")
        title = record.get("title")
        if title is None:
            title = ""
        if not isinstance(title, str):
            raise RerankInputError(where, "'title' must be a string or null")
        if doc_id in corpus:
            raise RerankInputError(where, f"duplicate _id {doc_id!r}")
        if keep is None or doc_id in keep:
            corpus[doc_id] = Document(doc_id, _text(where, title), _text(where, text), record)
    if not corpus and keep is None:
        raise RerankInputError(str(path), "the corpus is empty")
    return corpus


def read_queries(path: str | os.PathLike[str]) -> dict[str, Query]:
    """``query id -> Query`` in file order; a blank query text is an error."""
    queries: dict[str, Query] = {}
    for where, record in iter_jsonl(path):
        query_id = _id_value(where, record, "_id")
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RerankInputError(where, "'text' must be a non-empty string")
        if query_id in queries:
            raise RerankInputError(where, f"duplicate _id {query_id!r}")
        queries[query_id] = Query(query_id, _text(where, text), record)
    if not queries:
        raise RerankInputError(str(path), "no queries")
    return queries


_INT32_MAX = 2**31 - 1


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"


def _int_field(where: str, name: str, value: str) -> int:
    """A relevance or a rank: an integer that fits trec_eval's 32-bit ``int`` (a larger
    relevance used to overflow there: silently wrong metrics, or a ``SystemError``)."""
    if len(value) > 20:  # never handed to int(): no int-string limit error, no huge int
        number = None
    else:
        try:
            number = int(value)
        except ValueError:
            message = f"{name} must be an integer, got {_shown(value)}"
            raise RerankInputError(where, message) from None
    if number is None or not -_INT32_MAX - 1 <= number <= _INT32_MAX:
        raise RerankInputError(
            where,
            f"{name} must be an integer from {-_INT32_MAX - 1} to {_INT32_MAX}, "
            f"got {_shown(value)}",
        )
    return number


def read_qrels(path: str | os.PathLike[str]) -> Qrels:
    """BEIR ``qid docid rel`` (header optional) or TREC ``qid iter docid rel`` lines."""
    p, lines = _open_lines(path)
    qrels: Qrels = {}
    for number, line in lines:
        parts = line.split()
        if not parts:
            continue
        where = _where(p, number)
        if len(parts) == 3:
            qid, docid, rel = parts
            if number == 1 and rel.lower() in _HEADER_NAMES:
                continue  # the BEIR header "query-id corpus-id score"
        elif len(parts) == 4:
            qid, _, docid, rel = parts
        else:
            raise RerankInputError(
                where,
                f"expected 'qid docid relevance' or 'qid 0 docid relevance', got {len(parts)} "
                "columns",
            )
        judged = qrels.setdefault(_text(where, qid), {})
        if docid in judged:
            raise RerankInputError(where, f"document {docid!r} judged twice for query {qid!r}")
        judged[_text(where, docid)] = _int_field(where, "relevance", rel)
    if not qrels:
        raise RerankInputError(str(p), "no judgements")
    return qrels


@dataclass(frozen=True, slots=True)
class RunLine:
    """One parsed line of a TREC run file."""

    query_id: str
    doc_id: str
    rank: int
    score: float
    tag: str


def parse_run_line(where: str, line: str) -> RunLine:
    """Parse ``qid Q0 docid rank score tag``; raise naming ``where`` when malformed."""
    parts = line.split()
    if len(parts) != 6:
        raise RerankInputError(
            where, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}"
        )
    qid, _, docid, rank, score, tag = parts
    try:
        value = float(score)
    except ValueError:
        raise RerankInputError(where, f"score must be a number, got {score!r}") from None
    if not math.isfinite(value):
        raise RerankInputError(where, f"score must be finite, got {score!r}")
    return RunLine(
        _text(where, qid), _text(where, docid), _int_field(where, "rank", rank), value, tag
    )


def read_run(path: str | os.PathLike[str]) -> Run:
    """``qid -> {docid: score}`` (the rank column is checked, the score sets the order)."""
    p, lines = _open_lines(path)
    run: Run = {}
    for number, line in lines:
        if not line.strip():
            continue
        where = _where(p, number)
        row = parse_run_line(where, line)
        scores = run.setdefault(row.query_id, {})
        if row.doc_id in scores:
            raise RerankInputError(
                where, f"document {row.doc_id!r} listed twice for query {row.query_id!r}"
            )
        scores[row.doc_id] = row.score
    if not run:
        raise RerankInputError(str(p), "the run file is empty")
    return run


# --------------------------------------------------------------------------------- writing


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """A query's ``(docid, score)`` pairs best first: score descending, ties by docid
    descending (trec_eval's order)."""
    by_docid = sorted(scores.items(), key=lambda item: item[0], reverse=True)
    return sorted(by_docid, key=lambda item: -item[1])  # stable: ties keep docid descending


def _trec_id(kind: str, value: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise RerankInputError(kind, f"{value!r} cannot be written to a TREC file (whitespace)")
    return value


def format_run_block(query_id: str, scores: Mapping[str, float], tag: str) -> str:
    """The TREC lines of one query, ranks 1..n in :func:`ranked` order (scores as ``repr``,
    which reads back to the same float)."""
    _trec_id("query id", query_id)
    _trec_id("tag", tag)
    lines = []
    for rank, (doc_id, score) in enumerate(ranked(scores), start=1):
        value = float(score)
        if not math.isfinite(value):
            raise RerankInputError("score", f"{score} for {doc_id!r} is not finite")
        lines.append(f"{query_id} Q0 {_trec_id('doc id', doc_id)} {rank} {value!r} {tag}\n")
    return "".join(lines)


def write_run(
    path: str | os.PathLike[str],
    run: Mapping[str, Mapping[str, float]],
    tag: str,
    *,
    order: Sequence[str] | None = None,
) -> None:
    """Write ``run`` atomically (:func:`.outputs.replacing`: a new temporary file renamed over
    ``path``; folders created), queries in ``order`` (default: the run's own order), blocks
    from :func:`format_run_block`. If writing fails, ``path`` is left as it was."""
    qids = list(run) if order is None else [q for q in order if q in run]
    with replacing(path) as fh:
        for qid in qids:
            fh.write(format_run_block(qid, run[qid], tag))

"""One rerank call per query: the candidates' texts, metadata and the query's instruction.

:func:`build_jobs` is pure: it turns queries, a corpus and candidate lists into
:class:`QueryJob` values and a :class:`JobReport` that counts everything it could not use
(never silently dropped): candidate query ids missing from the queries file, candidate doc
ids missing from the corpus, queries with no candidates, queries without the instruction
field, documents without any of the metadata fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rerank_integrations.errors import RerankInputError
from rerank_integrations.ir import MAX_EXAMPLE_IDS, example_ids
from rerank_integrations.ir.first_stage import document_text
from rerank_integrations.ir.formats import Document, Query, Run, ranked
from rerank_integrations.metadata import format_metadata
from rerank_integrations.validation import (
    optional_str,
    optional_str_sequence,
    validate_instruction,
)

__all__ = ["JobReport", "QueryJob", "build_jobs", "record_field"]


@dataclass(frozen=True, slots=True)
class QueryJob:
    """One query's rerank call; ``doc_ids[i]`` is the id of ``documents[i]``."""

    query_id: str
    query: str
    doc_ids: tuple[str, ...]
    documents: tuple[str, ...]
    metadata: tuple[str, ...] | None = None
    instruction: str | None = None


@dataclass(slots=True)
class JobReport:
    """What :func:`build_jobs` could not use, with a few example ids of each kind."""

    unknown_query_ids: list[str] = field(default_factory=list)
    unknown_doc_ids: int = 0
    unknown_doc_examples: list[str] = field(default_factory=list)
    queries_without_candidates: list[str] = field(default_factory=list)
    queries_without_instruction: list[str] = field(default_factory=list)
    documents_without_metadata: int = 0

    def warnings(self) -> list[str]:
        """One human-readable line per non-zero count."""
        out = []
        if self.unknown_query_ids:
            out.append(
                f"{len(self.unknown_query_ids)} candidate query ids are not in the queries "
                f"file and were skipped (e.g. {example_ids(self.unknown_query_ids)})"
            )
        if self.unknown_doc_ids:
            out.append(
                f"{self.unknown_doc_ids} candidates name doc ids that are not in the corpus "
                f"and were skipped (e.g. {example_ids(self.unknown_doc_examples)})"
            )
        if self.queries_without_candidates:
            out.append(
                f"{len(self.queries_without_candidates)} queries have no candidates and "
                f"are not in the output run (e.g. {example_ids(self.queries_without_candidates)})"
            )
        if self.queries_without_instruction:
            out.append(
                f"{len(self.queries_without_instruction)} queries have no instruction "
                f"field and were reranked without one "
                f"(e.g. {example_ids(self.queries_without_instruction)})"
            )
        if self.documents_without_metadata:
            out.append(
                f"{self.documents_without_metadata} candidates have none of the "
                "metadata fields (sent with empty metadata)"
            )
        return out


def record_field(record: Mapping[str, Any], name: str) -> Any:
    """A field of a JSONL record: top level first, then inside its ``"metadata"`` object."""
    if name in record:
        return record[name]
    nested = record.get("metadata")
    return nested.get(name) if isinstance(nested, Mapping) else None


def _metadata_text(doc: Document, fields: Sequence[str]) -> str:
    values = {name: record_field(doc.fields, name) for name in fields}
    if "title" in values and values["title"] is None:
        values["title"] = doc.title
    return format_metadata(values, keys=fields)


def build_jobs(
    queries: Mapping[str, Query],
    corpus: Mapping[str, Document],
    candidates: Run,
    *,
    query_ids: Sequence[str] | None = None,
    instruction: str | None = None,
    instruction_field: str | None = None,
    metadata_fields: Sequence[str] = (),
) -> tuple[list[QueryJob], JobReport]:
    """The rerank jobs for ``query_ids`` (default: the candidates' queries, in their order).

    Each job's documents are the query's candidates in :func:`~.formats.ranked` order, as
    ``title + " " + text`` (just ``text`` when ``"title"`` is a metadata field). With
    ``metadata_fields``, each document's metadata is those fields (top level or inside the
    record's ``"metadata"``) rendered by :func:`~rerank_integrations.metadata.format_metadata`.
    The instruction is ``instruction`` for every query, or each query's ``instruction_field``.
    """
    instruction = validate_instruction(instruction)
    optional_str("instruction_field", instruction_field)
    metadata_fields = optional_str_sequence("metadata_fields", metadata_fields) or ()
    query_ids = optional_str_sequence("query_ids", query_ids)
    if instruction is not None and instruction_field is not None:
        raise RerankInputError("instruction", "give a fixed instruction or a field, not both")
    with_title = "title" not in metadata_fields
    report = JobReport()
    order = list(candidates) if query_ids is None else list(query_ids)
    report.unknown_query_ids = [q for q in candidates if q not in queries]
    jobs = []
    for qid in order:
        if qid not in queries:
            continue
        query = queries[qid]
        doc_ids, texts, metas = [], [], []
        for doc_id, _ in ranked(candidates.get(qid, {})):
            doc = corpus.get(doc_id)
            if doc is None:
                report.unknown_doc_ids += 1
                if len(report.unknown_doc_examples) < MAX_EXAMPLE_IDS:
                    report.unknown_doc_examples.append(doc_id)
                continue
            doc_ids.append(doc_id)
            texts.append(document_text(doc, with_title=with_title))
            if metadata_fields:
                metas.append(_metadata_text(doc, metadata_fields))
                report.documents_without_metadata += not metas[-1]
        if not doc_ids:
            report.queries_without_candidates.append(qid)
            continue
        query_instruction = instruction
        if instruction_field is not None:
            value = record_field(query.fields, instruction_field)
            if value is not None and not isinstance(value, str):
                raise RerankInputError(
                    f"query {qid!r}", f"field {instruction_field!r} must be a string"
                )
            query_instruction = validate_instruction(value)
            if query_instruction is None:
                report.queries_without_instruction.append(qid)
        jobs.append(
            QueryJob(
                qid,
                query.text,
                tuple(doc_ids),
                tuple(texts),
                tuple(metas) if metadata_fields else None,
                query_instruction,
            )
        )
    return jobs, report

"""First-stage candidates: BM25 over a corpus (bm25s), or the top k of a given run.

BM25 is bm25s' default Lucene variant (k1 1.5, b 0.75) over lower-cased ``\\w\\w+`` tokens with
English stop words removed, indexing ``title + " " + text`` (BEIR's convention). A document
whose BM25 score is 0 (no query term) is not a candidate: a query that matches nothing gets
no candidates, and the caller reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from rerank_integrations.extras import import_extra
from rerank_integrations.ir import EVAL_EXTRA
from rerank_integrations.ir.formats import Document, Query, Run, ranked
from rerank_integrations.validation import int_value

logger = logging.getLogger(__name__)

__all__ = ["bm25_run", "document_text", "top_k"]


def document_text(doc: Document, *, with_title: bool = True) -> str:
    """The text a document is retrieved and reranked by: ``title + " " + text`` (BEIR)."""
    if with_title and doc.title.strip():
        return f"{doc.title} {doc.text}".strip()
    return doc.text


def top_k(run: Run, k: int) -> Run:
    """The ``k`` best documents of every query of ``run`` (in :func:`~.formats.ranked` order)."""
    int_value("first_stage_k", k, minimum=1)
    return {qid: dict(ranked(scores)[:k]) for qid, scores in run.items()}


def bm25_run(corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> Run:
    """BM25 candidates: for each query, up to ``k`` documents with a score above 0."""
    int_value("first_stage_k", k, minimum=1)
    bm25s = import_extra("bm25s", extra=EVAL_EXTRA, feature="the BM25 first stage")
    # bm25s sets its own logger to DEBUG on import; let the application's level decide
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    doc_ids = list(corpus)
    texts = [document_text(corpus[d]) for d in doc_ids]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(
        [q.text for q in queries], stopwords="en", show_progress=False, return_ids=False
    )
    depth = min(k, len(doc_ids))
    found, scores = retriever.retrieve(query_tokens, k=depth, show_progress=False)
    run: Run = {}
    for query, rows, values in zip(queries, found, scores, strict=True):
        hits = {doc_ids[int(i)]: float(s) for i, s in zip(rows, values, strict=True) if s > 0}
        if hits:
            run[query.query_id] = hits
    logger.info(
        "BM25: %d documents indexed, %d of %d queries matched", len(doc_ids), len(run), len(queries)
    )
    return run

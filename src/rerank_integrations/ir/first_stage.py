"""First-stage candidates: BM25 over a corpus (bm25s), or the top k of a given run.

BM25 is the standard one IR papers report: Lucene's formula (bm25s ``method="lucene"``:
``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` times ``tf / (tf + k1 (1 - b + b dl / avgdl))``,
with exact document lengths), k1 1.2 and b 0.75 (Lucene's and Terrier's defaults), over an
English analyzer: lower-cased ``\\w\\w+`` tokens, bm25s' English stop words removed, then the
Snowball English stemmer (PyStemmer). The index holds ``title + " " + text`` (BEIR's
convention). :class:`BM25Settings` sets the stemmer (``"none"`` is the unstemmed analyzer this
package used before), k1 and b; :meth:`BM25Settings.to_json` is what a run's meta.json records.

A document whose BM25 score is 0 (no query term) is not a candidate: a query that matches
nothing gets no candidates, and the caller reports it. The cut at ``k`` is made in the one
documented order (:func:`~.formats.ranked`: score descending, ties by docid descending): every
document tied with the k-th score is scored and the cut falls in that order, never in the
order bm25s happens to return ties in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rerank_integrations.errors import RerankInputError
from rerank_integrations.extras import import_extra
from rerank_integrations.ir import EVAL_EXTRA
from rerank_integrations.ir.formats import Document, Query, Run, ranked
from rerank_integrations.validation import int_value

logger = logging.getLogger(__name__)

__all__ = ["STEMMERS", "BM25Settings", "bm25_run", "document_text", "top_k"]

STEMMERS = ("english", "none")
"""The analyzers ``--bm25-stemmer`` accepts: the Snowball English stemmer, or none."""


@dataclass(frozen=True, slots=True)
class BM25Settings:
    """The BM25 first stage: the analyzer's stemmer (:data:`STEMMERS`), k1 and b."""

    stemmer: str = "english"
    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        if self.stemmer not in STEMMERS:
            raise RerankInputError(
                "bm25_stemmer", f"must be one of {', '.join(STEMMERS)}, got {self.stemmer!r}"
            )
        k1, b = self.k1, self.b
        if isinstance(k1, bool) or not isinstance(k1, int | float) or not 0 <= k1 < math.inf:
            raise RerankInputError("bm25_k1", f"must be a finite number >= 0, got {k1!r}")
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0 <= b <= 1:
            raise RerankInputError("bm25_b", f"must be a number from 0 to 1, got {b!r}")

    def describe(self) -> str:
        """One line for titles and reports, e.g. ``BM25 (english stemmer, k1 1.2, b 0.75)``."""
        analyzer = "no stemmer" if self.stemmer == "none" else f"{self.stemmer} stemmer"
        return f"BM25 ({analyzer}, k1 {self.k1:g}, b {self.b:g})"

    def to_json(self) -> dict[str, Any]:
        """The settings as a run's meta.json records them."""
        return {
            "method": "bm25",
            "implementation": "bm25s, method lucene",
            "tokens": "lower-cased \\w\\w+",
            "stopwords": "en (bm25s)",
            "stemmer": self.stemmer,
            "k1": self.k1,
            "b": self.b,
            "fields": "title + text",
        }


def document_text(doc: Document, *, with_title: bool = True) -> str:
    """The text a document is retrieved and reranked by: ``title + " " + text`` (BEIR)."""
    if with_title and doc.title.strip():
        return f"{doc.title} {doc.text}".strip()
    return doc.text


def top_k(run: Run, k: int) -> Run:
    """The ``k`` best documents of every query of ``run`` (in :func:`~.formats.ranked` order)."""
    int_value("first_stage_k", k, minimum=1)
    return {qid: dict(ranked(scores)[:k]) for qid, scores in run.items()}


def _stemmer(name: str) -> Any:
    if name == "none":
        return None
    stemmer_module = import_extra("Stemmer", extra=EVAL_EXTRA, feature="the BM25 stemmer")
    return stemmer_module.Stemmer(name)


def bm25_run(
    corpus: Mapping[str, Document],
    queries: Sequence[Query],
    k: int,
    settings: BM25Settings | None = None,
) -> Run:
    """BM25 candidates: for each query, up to ``k`` documents with a score above 0, cut in
    :func:`~.formats.ranked` order (ties at the cut by docid descending)."""
    int_value("first_stage_k", k, minimum=1)
    settings = settings or BM25Settings()
    bm25s = import_extra("bm25s", extra=EVAL_EXTRA, feature="the BM25 first stage")
    import numpy as np

    # bm25s sets its own logger to DEBUG on import; let the application's level decide
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    stemmer = _stemmer(settings.stemmer)
    doc_ids = list(corpus)
    texts = [document_text(corpus[d]) for d in doc_ids]
    retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method="lucene")
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    query_tokens = bm25s.tokenize(
        [q.text for q in queries],
        stopwords="en",
        stemmer=stemmer,
        show_progress=False,
        return_ids=False,
    )
    run: Run = {}
    for query, tokens in zip(queries, query_tokens, strict=True):
        token_ids = retriever.get_tokens_ids(tokens)
        if not token_ids:
            continue
        scores = np.asarray(retriever.get_scores(token_ids), dtype=np.float64)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            # the k-th best score; every document scoring at least that is a candidate for
            # the cut, which falls in the documented order (ties by docid descending)
            kth = np.partition(scores[matched], len(matched) - k)[len(matched) - k]
            matched = matched[scores[matched] >= kth]
        hits = {doc_ids[int(i)]: float(scores[i]) for i in matched}
        if hits:
            run[query.query_id] = dict(ranked(hits)[:k])
    logger.info(
        "BM25: %d documents indexed, %d of %d queries matched", len(doc_ids), len(run), len(queries)
    )
    return run

"""One metadata default in the three adapters, side by side (real frameworks).

Documents as a PDF loader and a splitter leave them: the file path in ``source``/``file_path``,
the page, the offset, the PDF producer and dates, next to fields a reader cares about. With
default settings:

- a reranker with a metadata slot receives, in every adapter, the same fields: everything but
  the loaders' bookkeeping (``metadata.LOADER_KEYS``, and a ``source`` that is a file path);
- a reranker without a slot receives no metadata (the text is the framework's own text);
- ``metadata_keys`` names exactly what is sent (loader keys included when named).
"""

from __future__ import annotations

from typing import Any

import pytest
from haystack import Document as HaystackDocument
from langchain_core.documents import Document as LangchainDocument
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from rerank_integrations._testing import FakeReranker
from rerank_integrations.haystack import RerankRanker
from rerank_integrations.langchain import RerankCompressor
from rerank_integrations.llama_index import RerankPostprocessor
from rerank_integrations.metadata import LOADER_KEYS, without_loader_noise

PDF_META: list[dict[str, Any]] = [
    {
        "source": "/data/reports/annual-2024.pdf",  # LangChain's PyPDFLoader: the path
        "file_path": "/data/reports/annual-2024.pdf",
        "page": 3,
        "page_label": "4",
        "total_pages": 40,
        "producer": "pdfTeX-1.40.25",
        "creator": "LaTeX",
        "creationdate": "2024-05-02T10:00:00+00:00",
        "moddate": "2024-05-03T10:00:00+00:00",
        "start_index": 1200,
        "title": "Annual report",
        "published": "2024-05-01",
    },
    {"source": "Reuters", "page_number": 1, "split_id": 0, "published": "2023-01-09"},
]
TEXTS = ["Revenue grew by a tenth.", "Markets closed higher."]
EXPECTED = ("title: Annual report\npublished: 2024-05-01", "source: Reuters\npublished: 2023-01-09")


class NoSlot(FakeReranker):
    """A reranker that accepts metadata but folds it into the text (no slot of its own)."""

    @property
    def has_metadata_slot(self) -> bool:
        return False


def run_all(reranker: FakeReranker, **options: Any) -> list[Any]:
    """Rerank the same documents through the three adapters; the metadata each sent."""
    lc = [
        LangchainDocument(page_content=t, metadata=m) for t, m in zip(TEXTS, PDF_META, strict=True)
    ]
    RerankCompressor(reranker=reranker, top_n=None, **options).compress_documents(lc, "q")
    nodes = [
        NodeWithScore(node=TextNode(text=t, metadata=m, excluded_embed_metadata_keys=[]), score=1)
        for t, m in zip(TEXTS, PDF_META, strict=True)
    ]
    li = RerankPostprocessor(
        reranker=reranker, top_n=None, metadata_mode=MetadataMode.ALL, **options
    )
    li.postprocess_nodes(nodes, QueryBundle("q"))
    hs = [HaystackDocument(content=t, meta=m) for t, m in zip(TEXTS, PDF_META, strict=True)]
    RerankRanker(reranker, top_k=None, **options).run("q", hs)
    assert len(reranker.calls) == 3
    return [call.metadata for call in reranker.calls]


def test_a_slot_gets_the_same_fields_without_loader_bookkeeping_in_all_three() -> None:
    sent = run_all(FakeReranker())
    assert sent == [EXPECTED, EXPECTED, EXPECTED]


def test_no_slot_gets_no_metadata_in_all_three() -> None:
    reranker = NoSlot()
    sent = run_all(reranker)
    assert sent == [None, None, None]
    assert [call.documents for call in reranker.calls[:1]] == [tuple(TEXTS)]  # LangChain text


@pytest.mark.parametrize("keys", [["page", "title"], ["file_path"]])
def test_named_keys_are_sent_even_loader_keys(keys: list[str]) -> None:
    sent = run_all(FakeReranker(), metadata_keys=keys)
    first = "\n".join(f"{k}: {PDF_META[0][k]}" for k in keys)
    assert {s[0] for s in sent} == {first}


def test_the_noise_rule() -> None:
    assert "page" in LOADER_KEYS and "title" not in LOADER_KEYS
    assert without_loader_noise({"source": "/tmp/a.pdf", "a": 1}) == {"a": 1}
    assert without_loader_noise({"source": "C:\\docs\\a.pdf"}) == {}
    assert without_loader_noise({"source": "https://example.com/a"}) == {
        "source": "https://example.com/a"
    }

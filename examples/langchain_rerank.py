"""Rerank a LangChain retriever's results, with and without an instruction (sync and async).

    python examples/langchain_rerank.py                          # ctxl-rerank-v2 1b (model hub)
    python examples/langchain_rerank.py --model ./ctxl-1b        # a local model directory
    CONTEXTUAL_API_KEY=... python examples/langchain_rerank.py --backend remote
    python examples/langchain_rerank.py --backend remote --api-format vllm \\
        --base-url http://localhost:8000/v1 --model <served model>

The corpus is six short, dated and sourced notes. The retriever here is an in-memory vector
store with a toy embedding (so the example runs offline); put your own retriever in its place.
The compressor sends each note's text as the document and, to a model with a metadata slot
(ctxl-rerank-v2, the Contextual API), its ``source``/``date`` metadata through that slot, so the
instruction "Prefer the most recent source" can move the newest notes up. A vLLM-served model
scores ``page_content`` only (as LangChain's own CrossEncoderReranker) with the instruction
folded before the query.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from rerank_integrations.langchain import RerankCompressor

DEFAULT_LOCAL_MODEL = "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"
QUERY = "What is the current price of a solar module?"
INSTRUCTION = "Prefer the most recent source"

CORPUS = [
    ("Solar modules sold for about $0.40 per watt.", "PV Magazine", "2021-03-02"),
    ("Module prices fell to roughly $0.11 per watt.", "BloombergNEF", "2024-11-20"),
    ("Wind turbines are getting taller every year.", "Wind Europe", "2024-05-10"),
    ("A solar module cost around $0.20 per watt.", "IEA", "2023-06-15"),
    ("Polysilicon shortages pushed panel prices up.", "Reuters", "2022-01-08"),
    ("Spot prices for TOPCon modules reached $0.09 per watt.", "InfoLink", "2025-02-03"),
]


def corpus() -> list[Document]:
    return [
        Document(page_content=text, metadata={"source": source, "date": date}, id=f"doc-{i}")
        for i, (text, source, date) in enumerate(CORPUS)
    ]


def make_compressor(args: argparse.Namespace) -> RerankCompressor:
    if args.backend == "remote":  # model=None: the remote backend's default (Contextual AI)
        # A vLLM / Jina / Cohere / TEI rerank API has no instruction field: fold the
        # instruction into the query (the shared rule: "{instruction} {query}").
        folds = args.api_format not in (None, "contextual")
        return RerankCompressor(
            backend="remote",
            model=args.model,
            base_url=args.base_url,
            api_format=args.api_format,
            top_n=args.top_n,
            reranker_kwargs={"fold_unsupported": True} if folds else {},
        )
    return RerankCompressor(
        backend="local", model=args.model or DEFAULT_LOCAL_MODEL, device=args.device,
        top_n=args.top_n,
    )  # fmt: skip


def show(title: str, docs: list[Document]) -> None:
    print(f"\n{title}")
    for rank, d in enumerate(docs, start=1):
        m = d.metadata
        print(
            f"{rank:>2}. {m['relevance_score']:.4f}  {m['date']}  {m['source']:<13} "
            f"{d.page_content}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "remote"], default="local")
    parser.add_argument("--model", default=None, help="hub id, local directory or API model")
    parser.add_argument("--base-url", default=None, help="remote: server base URL")
    parser.add_argument("--api-format", default=None, help="remote: contextual, vllm, jina, ...")
    parser.add_argument("--device", default=None, help="local: cuda, cpu or mps")
    parser.add_argument("--top-n", type=int, default=4)
    args = parser.parse_args(argv)

    compressor = make_compressor(args)
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=32))
    store.add_documents(corpus())
    # The one-line drop-in: wrap the retriever you already have.
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor,
        base_retriever=store.as_retriever(search_kwargs={"k": len(CORPUS)}),
    )
    print(f"query: {QUERY!r}")
    show(f"top {args.top_n}, no instruction:", retriever.invoke(QUERY)[: args.top_n])

    # A per-call instruction (compress_documents(..., instruction=...)), here asynchronously.
    docs = store.similarity_search(QUERY, k=len(CORPUS))
    ranked = asyncio.run(
        compressor.acompress_documents(docs, QUERY, instruction=INSTRUCTION, top_n=args.top_n)
    )
    show(f"top {args.top_n}, instruction {INSTRUCTION!r} (async):", list(ranked))
    compressor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rerank through a self-hosted rerank server (vLLM, Infinity, TEI) or a hosted API.

Start a server first, for example vLLM with a cross-encoder (see docs/remote.md for every
model family, including mxbai-rerank-v2 and Qwen3-Reranker)::

    vllm serve BAAI/bge-reranker-v2-m3 --port 8000

then::

    python examples/remote_vllm.py --model BAAI/bge-reranker-v2-m3  # localhost:8000 by default
    python examples/remote_vllm.py --api-format tei --base-url http://localhost:8080
    CONTEXTUAL_API_KEY=... python examples/remote_vllm.py --api-format contextual \\
        --model ctxl-rerank-v2-instruct-multilingual --instruction "Prefer recent documents"

Prints the documents best first with their scores.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rerank_integrations import RemoteReranker, RerankError

QUERY = "How do rerankers improve retrieval-augmented generation?"
DOCUMENTS = [
    "A reranker scores each retrieved passage against the query with a cross-encoder.",
    "The Eiffel Tower is 330 metres tall.",
    "Reordering retrieved chunks by relevance puts the best evidence first in the prompt.",
    "Les reclasseurs améliorent la précision des systèmes RAG en triant les passages.",
    "重排序模型可以提高检索增强生成的准确性。",
    "Bananas are rich in potassium.",
]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=None, help="default: localhost:8000/v1 for vllm")
    parser.add_argument("--model", default="BAAI/bge-reranker-v2-m3")
    parser.add_argument(
        "--api-format", default="vllm", help="vllm (default), jina, cohere, tei, contextual"
    )
    parser.add_argument("--instruction", default=None, help="contextual only (or folded)")
    parser.add_argument("--top-n", type=int, default=None)
    args = parser.parse_args(argv)
    base_url = args.base_url
    if base_url is None and args.api_format == "vllm":
        base_url = "http://localhost:8000/v1"

    try:
        with RemoteReranker(
            args.model,
            api_format=args.api_format,
            base_url=base_url,
            fold_unsupported=True,  # an instruction on a format without one: before the query
        ) as reranker:
            results = reranker.rerank(
                QUERY, DOCUMENTS, instruction=args.instruction, top_n=args.top_n
            )
    except RerankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(f"query: {QUERY}")
    for rank, result in enumerate(results, start=1):
        print(f"{rank:2d}. {result.relevance_score:.4f}  {DOCUMENTS[result.index]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

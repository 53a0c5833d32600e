"""Rerank a LlamaIndex query engine's nodes, with and without an instruction (sync and async).

    python examples/llama_index_rerank.py                        # ctxl-rerank-v2 1b (model hub)
    python examples/llama_index_rerank.py --model ./ctxl-1b      # a local model directory
    CONTEXTUAL_API_KEY=... python examples/llama_index_rerank.py --backend remote
    python examples/llama_index_rerank.py --backend remote --api-format vllm \\
        --base-url http://localhost:8000/v1 --model <served model>

The corpus is six short, dated and sourced notes in a ``VectorStoreIndex``. To run offline the
index uses LlamaIndex's ``MockEmbedding`` and the engine ``MockLLM``; use your own models.
A model with a metadata slot (ctxl-rerank-v2, the Contextual API) gets each node's text as the
document and its ``source``/``date`` metadata through that slot (``excluded_embed_metadata_keys``
are honoured), so the instruction "Prefer the most recent source" can move the newest notes up.
Any other model scores ``node.get_content(MetadataMode.EMBED)``, exactly as LlamaIndex's own
rerankers; a vLLM-served model gets the instruction folded before the query.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode

from rerank_integrations.llama_index import RerankPostprocessor

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


def nodes() -> list[TextNode]:
    return [
        TextNode(
            id_=f"node-{i}",
            text=text,
            metadata={"source": source, "date": date, "file_name": f"note-{i}.txt"},
            excluded_embed_metadata_keys=["file_name"],  # never sent to the reranker
        )
        for i, (text, source, date) in enumerate(CORPUS)
    ]


def make_postprocessor(args: argparse.Namespace) -> RerankPostprocessor:
    if args.backend == "remote":  # model=None: the remote backend's default (Contextual AI)
        # A vLLM / Jina / Cohere / TEI rerank API has no instruction field: fold the
        # instruction into the query (the shared rule: "{instruction} {query}").
        folds = args.api_format not in (None, "contextual")
        return RerankPostprocessor(
            backend="remote",
            model=args.model,
            base_url=args.base_url,
            api_format=args.api_format,
            top_n=args.top_n,
            reranker_kwargs={"fold_unsupported": True} if folds else {},
        )
    model = args.model or DEFAULT_LOCAL_MODEL
    return RerankPostprocessor(backend="local", model=model, device=args.device, top_n=args.top_n)


def show(title: str, ranked: list[NodeWithScore]) -> None:
    print(f"\n{title}")
    for rank, n in enumerate(ranked, start=1):
        m = n.node.metadata
        text = n.node.get_content()
        print(f"{rank:>2}. {n.score or 0.0:.4f}  {m['date']}  {m['source']:<13} {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "remote"], default="local")
    parser.add_argument("--model", default=None, help="hub id, local directory or API model")
    parser.add_argument("--base-url", default=None, help="remote: server base URL")
    parser.add_argument("--api-format", default=None, help="remote: contextual, vllm, jina, ...")
    parser.add_argument("--device", default=None, help="local: cuda, cpu or mps")
    parser.add_argument("--top-n", type=int, default=4)
    args = parser.parse_args(argv)

    reranker = make_postprocessor(args)
    index = VectorStoreIndex(nodes(), embed_model=MockEmbedding(embed_dim=16))
    # The one-line drop-in: add it to node_postprocessors.
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=len(CORPUS), node_postprocessors=[reranker]
    )
    print(f"query: {QUERY!r}")
    show("no instruction:", engine.query(QUERY).source_nodes)

    async def with_instruction() -> list[NodeWithScore]:
        # Per-query instruction for LlamaIndex: a `with` block around the query.
        with reranker.instruction_override(INSTRUCTION):
            return (await engine.aquery(QUERY)).source_nodes

    show(f"instruction {INSTRUCTION!r} (async):", asyncio.run(with_instruction()))
    reranker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

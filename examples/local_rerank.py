"""Rerank with a local model: format detection, instruction + metadata, concurrent arerank.

    python examples/local_rerank.py --model ./mxbai-rerank-base-v2        # a local directory
    python examples/local_rerank.py --model Qwen/Qwen3-Reranker-0.6B     # a hub id (downloads)
    python examples/local_rerank.py --model ./my-finetune --model-format mxbai-v2

Prints the format, device and dtype in use, a ranked table with an instruction and per-document
metadata, then scores several queries concurrently with ``arerank`` (one shared model; the
engine batches the concurrent callers together) and prints the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from rerank_integrations import LocalReranker, ModelLoadError, format_metadata
from rerank_integrations.backends.local.formats import FORMATS

DOCS = [
    ("Paris is the capital and largest city of France.", {"source": "encyclopedia", "year": 2024}),
    ("Berlin is the capital of Germany.", {"source": "encyclopedia", "year": 2023}),
    ("Le thé vert est riche en antioxydants.", {"source": "blog", "year": 2021}),
    ("France's capital moved to Versailles in 1682, and back to Paris in 1789.",
     {"source": "history book", "year": 1999}),
    ("How do I bake bread at home? Mix flour, water, salt and yeast.", {"source": "forum"}),
    ("東京は日本の首都です。", {"source": "encyclopedia", "year": 2022}),
]
QUERY = "What is the capital of France?"
INSTRUCTION = "Prefer recent encyclopedic sources."
OTHER_QUERIES = [
    "Which city is Germany's capital?",
    "How to make bread?",
    "Is green tea healthy?",
    "What is the capital of Japan?",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="hub id or local model directory")
    formats = " | ".join(f.name for f in FORMATS)  # the registry, in detection order
    parser.add_argument("--model-format", default=None, help=f"{formats} (default: detect)")
    parser.add_argument("--device", default=None, help="cuda | mps | cpu (default: best)")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--top-n", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        reranker = LocalReranker(
            args.model,
            model_format=args.model_format,
            device=args.device,
            dtype=args.dtype,
            max_length=args.max_length,
            instruction_mode="prepend",  # cross-encoders get the instruction before the query
        )
    except ModelLoadError as exc:
        print(f"Could not load {args.model!r}: {exc}", file=sys.stderr)
        return 1

    with reranker:
        print(f"model: {args.model}")
        print(f"format: {reranker.model_format}  device: {reranker.device}  "
              f"dtype: {reranker.torch_dtype}  max_length: {reranker.max_length}")
        texts = [text for text, _ in DOCS]
        metadata = [format_metadata(meta) for _, meta in DOCS]

        t0 = time.perf_counter()
        results = reranker.rerank(
            QUERY, texts, instruction=INSTRUCTION, metadata=metadata, top_n=args.top_n
        )
        elapsed = time.perf_counter() - t0
        print(f"\nquery: {QUERY!r}\ninstruction: {INSTRUCTION!r}  ({elapsed * 1000:.0f} ms)")
        print(f"{'rank':>4}  {'relevance':>9}  {'raw':>9}  document")
        for rank, r in enumerate(results, 1):
            meta = metadata[r.index].replace("\n", ", ")
            print(f"{rank:>4}  {r.relevance_score:9.4f}  {r.raw_score:9.4f}  "
                  f"{texts[r.index][:60]}  [{meta}]")

        async def concurrent() -> list[int]:
            outs = await asyncio.gather(*(reranker.arerank(q, texts) for q in OTHER_QUERIES))
            return [out[0].index for out in outs]

        t0 = time.perf_counter()
        best = asyncio.run(concurrent())
        elapsed = time.perf_counter() - t0
        n = len(OTHER_QUERIES) * len(texts)
        print(f"\n{len(OTHER_QUERIES)} concurrent arerank calls, {n} documents in "
              f"{elapsed:.2f} s ({n / elapsed:.1f} docs/s)")
        for q, i in zip(OTHER_QUERIES, best, strict=True):
            print(f"  {q!r} -> {texts[i][:60]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Haystack: BM25 retrieval, then RerankRanker with "prefer the most recent source".

    python examples/haystack_rerank.py                          # ctxl-rerank-v2 1b from the hub
    python examples/haystack_rerank.py --model ./ctxl-1b        # a local model directory
    CONTEXTUAL_API_KEY=... python examples/haystack_rerank.py --remote   # Contextual AI API
    python examples/haystack_rerank.py --remote --api-format vllm \\
        --base-url http://localhost:8000/v1 --model BAAI/bge-reranker-v2-m3  # self-hosted

Builds the pipeline InMemoryBM25Retriever -> RerankRanker over a tiny corpus of dated, sourced
documents (illustrative, not a source of facts) and prints the ranking without and with the
instruction: a capable instruction-following model moves the newest report up. Then it saves
the pipeline as YAML, loads it back (allow-listing this package, as Haystack 3 requires), runs
the loaded copy asynchronously and checks that it ranks the same.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
import uuid
from typing import Any

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import PipelineRuntimeError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import ComponentDevice, Secret

from rerank_integrations import MissingExtraError, ModelLoadError, RerankError
from rerank_integrations.haystack import RAW_SCORE_KEY, RerankRanker

DEFAULT_LOCAL_MODEL = "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"
DEFAULT_REMOTE_MODEL = "ctxl-rerank-v2-instruct-multilingual"
QUERY = "What is the record efficiency of a perovskite-silicon tandem solar cell?"
INSTRUCTION = "prefer the most recent source"

CORPUS = [
    (
        "2016-02-10",
        "Solar Weekly",
        "A perovskite-silicon tandem solar cell reached 23.6% "
        "efficiency, a record for the tandem solar cell design at the time.",
    ),
    (
        "2019-12-20",
        "PV Archive",
        "Researchers report a perovskite-silicon tandem cell with a "
        "record efficiency of 29.15%, overtaking the best silicon-only solar cell.",
    ),
    (
        "2022-07-07",
        "Energy Lab News",
        "A new record: perovskite-silicon tandem solar cells "
        "now convert 31.3% of sunlight into electricity.",
    ),
    (
        "2024-06-05",
        "Renewables Today",
        "The perovskite-silicon tandem solar cell efficiency "
        "record now stands at 34.6%, certified by an independent lab.",
    ),
    (
        "2020-01-15",
        "Tech Blog",
        "Silicon-only solar cells are close to their theoretical "
        "efficiency limit of about 29%, which is why tandem designs matter.",
    ),
    (
        "2021-09-30",
        "Science Desk",
        "Stability, not efficiency, is the main obstacle before "
        "perovskite tandem solar cells reach the market.",
    ),
    (
        "2023-03-01",
        "Grid Report",
        "Wind turbine capacity factors improved across Europe; "
        "record output was reported in the North Sea.",
    ),
]

NO_HUB_HELP = """\
Could not load the model {model!r}. A hub id is downloaded from the Hugging Face hub on first
use, and the hub could not be reached from this machine (or the id/path is wrong). Download the
model elsewhere (`hf download {model} --local-dir ./ctxl-1b`) and pass
`--model ./ctxl-1b`, or use the hosted API: `CONTEXTUAL_API_KEY=... python {prog} --remote`.
Details: {error}"""


def documents() -> list[Document]:
    return [
        Document(id=f"doc-{i}", content=text, meta={"date": date, "source": source})
        for i, (date, source, text) in enumerate(CORPUS)
    ]


def make_ranker(args: argparse.Namespace) -> RerankRanker:
    settings: dict[str, Any] = {
        "top_k": args.top_k,
        "instruction": INSTRUCTION,
        # Haystack's meaning: these values are joined with the content for a plain model; a
        # model with a metadata slot (ctxl-rerank-v2, the Contextual API) gets them there instead
        "meta_fields_to_embed": ["date", "source"],
    }
    if args.remote:
        if args.api_format not in (None, "contextual"):
            # An API without an instruction field: fold the instruction before the query.
            settings["reranker_kwargs"] = {"fold_unsupported": True}
        return RerankRanker(
            backend="remote",
            model=args.model or DEFAULT_REMOTE_MODEL,
            base_url=args.base_url,
            api_format=args.api_format,
            # None: the backend's policy (CONTEXTUAL_API_KEY for the Contextual API only).
            api_key=Secret.from_env_var(args.api_key_env) if args.api_key_env else None,
            **settings,
        )
    return RerankRanker(
        backend="local",
        model=args.model or DEFAULT_LOCAL_MODEL,
        device=ComponentDevice.from_str(args.device) if args.device else None,
        **settings,
    )


def build_pipeline(ranker: RerankRanker) -> Pipeline:
    # A shared in-memory store: a pipeline loaded from YAML in this process sees the same
    # documents through the index name (the YAML holds the store's settings, not its documents).
    store = InMemoryDocumentStore(index=f"haystack-rerank-example-{uuid.uuid4().hex}")
    store.write_documents(documents())
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=10))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def inputs(**ranker_args: Any) -> dict[str, Any]:
    return {"retriever": {"query": QUERY}, "ranker": {"query": QUERY, **ranker_args}}


def print_table(title: str, docs: list[Document]) -> None:
    print(f"\n{title}")
    print(f"{'rank':>4}  {'score':>7}  {'raw':>8}  {'date':<10}  {'source':<16}  text")
    for rank, doc in enumerate(docs, start=1):
        text = textwrap.shorten(doc.content or "", width=60, placeholder="...")
        print(
            f"{rank:>4}  {doc.score or 0.0:7.4f}  {doc.meta[RAW_SCORE_KEY]:8.3f}  "
            f"{doc.meta['date']:<10}  {doc.meta['source']:<16}  {text}"
        )


def ranking(docs: list[Document]) -> list[tuple[str, float]]:
    return [(d.id, round(d.score or 0.0, 5)) for d in docs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub id / local dir, or API model name")
    parser.add_argument("--device", default=None, help="local: cpu, cuda, mps (default: best)")
    parser.add_argument("--remote", action="store_true", help="use a rerank API")
    parser.add_argument("--base-url", default=None, help="with --remote: the API base URL")
    parser.add_argument("--api-format", default=None, help="with --remote: contextual, vllm, ...")
    parser.add_argument("--api-key-env", default=None, help="with --remote: key env var name")
    parser.add_argument("--top-k", type=int, default=None, help="rows to show (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    ranker = make_ranker(args)
    pipeline = build_pipeline(ranker)
    try:
        # "" switches the configured instruction off for this one call.
        plain = pipeline.run(inputs(instruction=""))["ranker"]["documents"]
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ModelLoadError, OSError) as exc:
        model = args.model or DEFAULT_LOCAL_MODEL
        print(NO_HUB_HELP.format(model=model, prog=sys.argv[0], error=exc), file=sys.stderr)
        return 1
    except RerankError as exc:  # raised by warm-up (e.g. a missing API key)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PipelineRuntimeError as exc:  # raised while running: the cause is the RerankError
        print(f"error: {exc.__cause__ or exc}", file=sys.stderr)
        return 1
    print(f"model: {ranker.model or '(reranker default)'}\nquery: {QUERY}")
    print_table("Without instruction", plain)
    guided = pipeline.run(inputs())["ranker"]["documents"]
    print_table(f"With instruction: {INSTRUCTION!r}", guided)

    yaml_text = pipeline.dumps()
    pipeline.close()  # release the model / HTTP client before the copy loads its own
    loaded = Pipeline.loads(yaml_text, allowed_modules=["rerank_integrations"])
    again = asyncio.run(loaded.run_async(inputs()))["ranker"]["documents"]
    loaded.close()
    if ranking(again) != ranking(guided):
        print("YAML round trip: DIFFERENT ranking", file=sys.stderr)
        return 1
    print("\nYAML round trip (allow-listed load, async run): same ranking")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

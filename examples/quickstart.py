"""Rerank a bundled multilingual sample, with and without an instruction.

    python examples/quickstart.py                         # ctxl-rerank-v2 1b from the model hub
    python examples/quickstart.py --model /path/to/model  # a local model directory
    RERANK_MODEL=mixedbread-ai/mxbai-rerank-base-v2 python examples/quickstart.py
    CONTEXTUAL_API_KEY=... python examples/quickstart.py --remote

Prints a ranked table of the 20 sample documents (text, source, date) for the query, first
without and then with the instruction "Prefer documents published after 2024-01-01".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import textwrap
from pathlib import Path

from rerank_integrations import (
    MissingExtraError,
    ModelLoadError,
    Reranker,
    RerankResult,
    format_metadata,
)
from rerank_integrations.backends.local.formats import FORMATS  # the registry (no torch import)

DEFAULT_LOCAL_MODEL = "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b"
DEFAULT_REMOTE_MODEL = "ctxl-rerank-v2-instruct-multilingual"
SAMPLE = Path(__file__).parent / "data" / "sample_docs.jsonl"
QUERY = "How do rerankers improve retrieval-augmented generation?"
INSTRUCTION = "Prefer documents published after 2024-01-01"

NO_HUB_HELP = """\
Could not load the model {model!r}. Loading a hub id downloads the model from the Hugging Face
hub on first use, and the hub could not be reached from this machine (or the id/path is wrong).
Either run this where https://huggingface.co is reachable, or download the model elsewhere
(for example `hf download {model} --local-dir ./ctxl-1b`), copy the directory here and pass
it with `make demo ARGS="--model ./ctxl-1b"` (or RERANK_MODEL=./ctxl-1b make demo). With a
Contextual AI key, `CONTEXTUAL_API_KEY=... make demo ARGS=--remote` uses the hosted API instead.
Details: {error}"""


def load_sample(path: Path = SAMPLE) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine gets the explanation in seconds, not after
    the hub client's retries."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def build_reranker(args: argparse.Namespace) -> Reranker:
    if args.remote:
        from rerank_integrations import RemoteReranker

        return RemoteReranker(args.model or DEFAULT_REMOTE_MODEL, base_url=args.base_url)
    from rerank_integrations import LocalReranker

    model = args.model or os.environ.get("RERANK_MODEL") or DEFAULT_LOCAL_MODEL
    if not Path(model).exists() and not hub_reachable():
        # Only a copy already in the local hub cache can load now; don't wait on retries.
        os.environ["HF_HUB_OFFLINE"] = "1"
    return LocalReranker(model, model_format=args.model_format, device=args.device)


def print_table(title: str, results: list[RerankResult], docs: list[dict[str, object]]) -> None:
    print(f"\n{title}")
    print(f"{'rank':>4}  {'score':>7}  {'raw':>8}  {'published':<10}  {'source':<18}  text")
    for rank, r in enumerate(results, start=1):
        meta = docs[r.index]["metadata"]
        assert isinstance(meta, dict)
        text = textwrap.shorten(str(docs[r.index]["text"]), width=60, placeholder="...")
        print(
            f"{rank:>4}  {r.relevance_score:7.4f}  {r.raw_score:8.3f}  "
            f"{meta.get('published', ''):<10}  {str(meta.get('source', ''))[:18]:<18}  {text}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub id or local directory (or RERANK_MODEL)")
    formats = ", ".join(f.name for f in FORMATS)  # the registry, in detection order
    parser.add_argument("--model-format", default=None, help=f"{formats} (default: detect)")
    parser.add_argument("--device", default=None, help="cuda, cpu or mps (default: best)")
    parser.add_argument("--remote", action="store_true", help="use the Contextual AI API")
    parser.add_argument("--base-url", default=None, help="with --remote: another API base URL")
    parser.add_argument("--top-n", type=int, default=None, help="rows to show (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    docs = load_sample()
    texts = [str(d["text"]) for d in docs]
    metadata = [format_metadata(d["metadata"]) for d in docs]  # type: ignore[arg-type]
    try:
        reranker = build_reranker(args)
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ModelLoadError, OSError) as exc:
        model = args.model or os.environ.get("RERANK_MODEL") or DEFAULT_LOCAL_MODEL
        print(NO_HUB_HELP.format(model=model, error=exc), file=sys.stderr)
        return 1
    with reranker:
        print(f"model: {reranker.model_name}\nquery: {QUERY}")
        plain = reranker.rerank(QUERY, texts, metadata=metadata, top_n=args.top_n)
        print_table("Without instruction", plain, docs)
        guided = reranker.rerank(
            QUERY, texts, instruction=INSTRUCTION, metadata=metadata, top_n=args.top_n
        )
        print_table(f"With instruction: {INSTRUCTION!r}", guided, docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

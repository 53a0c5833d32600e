"""``python -m rerank_integrations rerank``: rerank JSONL documents from stdin.

Input: one JSON object per line, ``{"text": "...", "metadata": {...}}`` (``metadata`` optional:
a dict rendered with :func:`~rerank_integrations.metadata.format_metadata`, or a str sent as is).
Output: one JSON object per line, best first: ``index``, ``relevance_score``, ``raw_score``,
``text`` (``raw_score`` is ``null`` for a remote fail-open placeholder). A malformed line
stops the run with an error naming its line number (exit code 2).

``run`` and ``eval`` (whole query sets over BEIR / TREC files, docs/evaluation.md) are
registered here and live in :mod:`rerank_integrations.ir.commands`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from rerank_integrations.base import Reranker
from rerank_integrations.config import reranker_from_config
from rerank_integrations.errors import RerankError, RerankInputError
from rerank_integrations.ir.commands import COMMANDS as IR_COMMANDS
from rerank_integrations.ir.commands import add_commands as add_ir_commands
from rerank_integrations.ir.commands import run_command as run_ir_command
from rerank_integrations.ir.commands import settings_from_args
from rerank_integrations.ir.formats import parse_json_object
from rerank_integrations.metadata import format_metadata
from rerank_integrations.validation import validate_request

logger = logging.getLogger(__name__)


def read_jsonl_documents(lines: Iterable[str]) -> tuple[list[str], list[str] | None]:
    """Parse JSONL lines into texts and metadata strings (``None`` when no line has metadata).

    Blank lines are skipped; any other malformed line raises :class:`RerankInputError` whose
    field names the 1-based line number.
    """
    texts: list[str] = []
    metas: list[str] = []
    any_metadata = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        field = f"line {number}"
        record = parse_json_object(line, field, expected="a JSON object with a 'text' key")
        text = record.get("text")
        if not isinstance(text, str):
            raise RerankInputError(field, "'text' must be a string")
        meta = record.get("metadata")
        if meta is None:
            rendered = ""
        elif isinstance(meta, dict):
            rendered = format_metadata(meta)
        elif isinstance(meta, str):
            rendered = meta
        else:
            raise RerankInputError(field, "'metadata' must be an object, a string or null")
        any_metadata = any_metadata or bool(rendered)
        texts.append(text)
        metas.append(rendered)
    return texts, (metas if any_metadata else None)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rerank_integrations")
    commands = parser.add_subparsers(dest="command", required=True)
    rerank = commands.add_parser("rerank", help="rerank JSONL documents read from stdin")
    rerank.add_argument("--model", required=True, help="hub id, local directory or API model")
    rerank.add_argument("--query", required=True)
    rerank.add_argument("--instruction", default=None)
    rerank.add_argument("--top-n", type=int, default=None)
    rerank.add_argument(
        "--backend", choices=["local", "remote"], default="local", help="default: local"
    )
    from rerank_integrations.backends.local.formats import FORMATS  # no torch: the registry

    local_formats = ", ".join(f.name for f in FORMATS)
    rerank.add_argument(
        "--model-format", default=None, help=f"local: {local_formats} (default: detected)"
    )
    rerank.add_argument("--device", default=None, help="local: cuda, cpu, mps")
    rerank.add_argument("--api-format", default=None, help="remote: contextual, jina, ...")
    rerank.add_argument("--base-url", default=None, help="remote: server base URL")
    add_ir_commands(commands)  # run, eval: rerank_integrations/ir/commands.py
    return parser


def write_ranked(
    reranker: Reranker,
    args: argparse.Namespace,
    texts: list[str],
    metadata: list[str] | None,
    stdout: TextIO,
) -> None:
    """Rerank ``texts`` and write one JSON line per result, best first."""
    results = reranker.rerank(
        args.query, texts, instruction=args.instruction, metadata=metadata, top_n=args.top_n
    )
    for r in results:
        record = {
            "index": r.index,
            "relevance_score": r.relevance_score,
            # a fail-open placeholder (remote on_error="passthrough") has raw_score -inf,
            # which JSON cannot hold: it is written as null
            "raw_score": r.raw_score if math.isfinite(r.raw_score) else None,
            "text": texts[r.index],
        }
        stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _build_parser().parse_args(argv)
    if args.command in IR_COMMANDS:
        return run_ir_command(args)
    try:
        # Parse and validate the input before loading a model or opening a connection.
        texts, metadata = read_jsonl_documents(sys.stdin)
        validate_request(
            args.query, texts, instruction=args.instruction, metadata=metadata, top_n=args.top_n
        )
        with reranker_from_config(settings_from_args(args, args.model)) as reranker:
            write_ranked(reranker, args, texts, metadata, sys.stdout)
    except RerankError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

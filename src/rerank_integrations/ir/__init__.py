"""Reranking and evaluating whole query sets over standard IR formats.

Behind ``rerank-integrations run`` and ``rerank-integrations eval`` (see docs/evaluation.md).
One job per module:

- :mod:`.formats`: BEIR folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)
  and TREC run files: readers and the run writer.
- :mod:`.first_stage`: a BM25 first stage (bm25s) and top-k cuts of a given run.
- :mod:`.jobs`: one rerank call per query (document text, metadata, instruction).
- :mod:`.bulk`: many queries reranked concurrently into a run file that resumes.
- :mod:`.progress`: the progress bar on stderr.
- :mod:`.metrics`: metrics through ir-measures (trec_eval) and paired significance tests.
- :mod:`.report`: the table and the JSON of an evaluation.
- :mod:`.plot`: the evaluation chart (matplotlib, Agg).
- :mod:`.pipeline` / :mod:`.commands`: the two CLI commands.

The package itself holds what they share: :data:`EVAL_EXTRA` and :func:`example_ids` (the few
ids a warning or an error names).

Importing this package imports nothing heavy: bm25s, ir-measures, scipy and matplotlib are
loaded when used and raise :class:`~rerank_integrations.errors.MissingExtraError` naming
``pip install "rerank-integrations[eval]"`` when missing.
"""

from __future__ import annotations

from collections.abc import Sequence

EVAL_EXTRA = "eval"
"""The extra that brings the optional dependencies of this subpackage."""

MAX_EXAMPLE_IDS = 5
"""How many example ids a warning or an error names."""


def example_ids(ids: Sequence[str]) -> str:
    """The first :data:`MAX_EXAMPLE_IDS` ids, quoted, for a message (``, ...`` when there are
    more): the one way every ``run``/``eval`` warning shows what it counted."""
    shown = ", ".join(repr(i) for i in ids[:MAX_EXAMPLE_IDS])
    return shown + (", ..." if len(ids) > MAX_EXAMPLE_IDS else "")

"""How an instruction or metadata is put into the text for a model or API without a slot for it.

One rule for both backends (the local cross-encoder format with ``instruction_mode="prepend"``,
the remote formats with ``fold_unsupported=True``), so the same model scores the same text
whether it runs here or behind a server:

- the instruction goes BEFORE the query, separated by one space: ``f"{instruction} {query}"``;
- a document's metadata goes before its text, on its own line(s): ``f"{metadata}\\n{document}"``.

Folding is always opt-in; without it an instruction/metadata the model cannot take raises
:class:`~rerank_integrations.errors.UnsupportedFeatureError`.
"""

from __future__ import annotations

__all__ = ["fold_instruction", "fold_metadata"]


def fold_instruction(query: str, instruction: str | None) -> str:
    """``f"{instruction} {query}"``; ``None`` or ``""`` leaves the query unchanged."""
    return f"{instruction} {query}" if instruction else query


def fold_metadata(document: str, metadata: str | None) -> str:
    """``f"{metadata}\\n{document}"``; ``None`` or ``""`` leaves the document unchanged."""
    return f"{metadata}\n{document}" if metadata else document

"""The limits a rerank server states, in one leaf module: what a "too many / too long" answer
means, which per-request or per-document limit its message states, and the limits one
reranker plans with (configured, published, lowered by what servers stated).

Pure parsing plus one small thread-safe holder (:class:`LearnedLimits`); imported by
``planning`` (which splits and truncates under them) and ``outcomes`` (which classifies
answers), and it imports neither: no import circle.

A request-level limit (``"at most 100 documents"``, ``"9000 tokens exceeds the maximum of
8000"``) is answered by splitting the sub-request; a limit on ONE document (vLLM's
``"maximum context length is 512 tokens"``, Infinity's ``"String should have at most N
characters"``) by truncating the over-long documents (splitting cannot help).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Literal

from rerank_integrations.forking import reset_after_fork

__all__ = [
    "DocumentLimit",
    "LearnedLimits",
    "Limits",
    "StatedLimit",
    "is_document_too_long",
    "is_too_long",
    "parse_document_limit",
    "parse_stated_limit",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective limits of one reranker (``None`` = unlimited)."""

    max_documents_per_request: int | None = None
    max_tokens_per_request: int | None = None
    max_tokens_per_document: int | None = None
    max_chars_per_document: int | None = None
    """Characters of one document; only a limit a server stated (Infinity's pydantic
    ``String should have at most N characters``) or the format's published one."""

    @property
    def per_document(self) -> int | None:
        """The per-pair token limit: one document must also fit in a request on its own."""
        limits = [x for x in (self.max_tokens_per_document, self.max_tokens_per_request) if x]
        return min(limits) if limits else None


class LearnedLimits:
    """The limits one reranker plans with: its configured ones (or the format's), lowered by
    any per-request limit a server stated in a "too many / too long" answer.

    Only ever lowers a limit. One per reranker (not in ``to_config()``; carried by pickling
    and copying); thread-safe, since sync calls may share a reranker across threads.
    """

    __slots__ = ("__weakref__", "_limits", "_lock", "configured")

    def __init__(self, configured: Limits) -> None:
        self.configured = configured
        self._limits = configured
        self._lock = threading.Lock()
        reset_after_fork(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another parent thread may have held it at fork

    def restore(self, learnt: Limits) -> None:
        """Take over limits learnt by another instance (a copy or an unpickled reranker),
        still only ever lowering the configured ones."""
        for field in _FIELDS.values():
            value = getattr(learnt, field)
            if value is not None:
                self._lower(field, value)

    @property
    def current(self) -> Limits:
        """The limits in force now (an immutable snapshot)."""
        return self._limits

    def learn(self, stated: StatedLimit | DocumentLimit) -> bool:
        """Lower the limit a server stated (per request: documents or tokens; per document:
        estimated tokens per query+document, or characters) to its value; False when the
        limit in force is already at or below it (nothing changes)."""
        scope = "document" if isinstance(stated, DocumentLimit) else "request"
        return self._lower(_FIELDS[scope, stated.kind], stated.value)

    def _lower(self, field: str, value: int) -> bool:
        with self._lock:
            known = getattr(self._limits, field)
            if known is not None and value >= known:
                return False
            self._limits = replace(self._limits, **{field: value})
        return True


_FIELDS = {
    ("request", "documents"): "max_documents_per_request",
    ("request", "tokens"): "max_tokens_per_request",
    ("document", "tokens"): "max_tokens_per_document",
    ("document", "characters"): "max_chars_per_document",
}
"""Which :class:`Limits` field a stated limit lowers, by its scope and kind."""


@dataclass(frozen=True, slots=True)
class StatedLimit:
    """A per-request limit the server stated in a "too many / too long" answer."""

    kind: Literal["documents", "tokens"]
    value: int


_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)"
# Words allowed between a limit word and its number ("maximum allowed batch size 32",
# "maximum of 100 documents", "max_client_batch_size=100", "limit is 100"). A whitelist, so
# that "exceeds the limit, you sent 2000" never reads 2000 as the limit.
_FILLER = (
    r"(?:[\s:=(]|\b(?:of|is|are|was|the|a|allowed|permitted|supported|batch|client|size|"
    r"number|documents?|docs?|texts?|inputs?|items?|passages?|tokens?|per(?:\s+request)?|limit|"
    r"maximum|max|to|set|at|most|up|no|more|than|configured|currently|submitted|in)\b)*"
)
_LIMIT_WORD = (
    r"\b(?:maximum|max(?:_\w+)?|limit|at\s+most|up\s+to|no\s+more\s+than|"
    r"(?:is|are)\s+allowed|allowed)"
)
# "2000 > 100", "9000 tokens exceeds the maximum of 8000", "batch size 2000 > maximum
# allowed batch size 32": the number after the comparison is the limit.
_COMPARISON = re.compile(
    _NUMBER
    + r"\s*(?:[a-z]+\s+){0,2}?(?:>|exceeds?|exceeding|is\s+(?:greater|more|larger)\s+than)"
    + _FILLER
    + _NUMBER
    + r"(?!\d)",
    re.IGNORECASE,
)
_LIMIT_THEN_NUMBER = re.compile(_LIMIT_WORD + _FILLER + _NUMBER + r"(?!\d)", re.IGNORECASE)
_NUMBER_IS_LIMIT = re.compile(
    _NUMBER + r"\s+(?:\w+\s+)?(?:is|are)\s+the\s+(?:maximum|max|limit)\b", re.IGNORECASE
)
_TOKEN_WORD = re.compile(r"\btokens?\b", re.IGNORECASE)
_COUNT_WORD = re.compile(
    r"\b(?:documents?|docs?|texts?|inputs?|items?|passages?|batch|too\s+many)\b|batch_size",
    re.IGNORECASE,
)
# A limit on ONE document / sequence: splitting a request into smaller ones cannot help.
_PER_SEQUENCE = re.compile(
    r"context\s+(?:length|window)|max_model_len|sequence\s+length|max_length|"
    r"\b(?:per|each|any|single|one)\s+(?:document|input|text|pair|sequence)\b|"
    r"\b(?:document|input|text|sequence|pair)\s+(?:is\s+)?too\s+long",
    re.IGNORECASE,
)


def _to_int(text: str) -> int:
    return int(text.replace(",", ""))


def parse_stated_limit(message: str) -> StatedLimit | None:
    """The per-request document or token limit a "too many / too long" message states.

    Conservative: only a number tied to a limit word counts — after a comparison
    (``"too many documents: 2000 > 100"``, ``"9000 tokens exceeds the maximum of 8000"``,
    TEI's ``"batch size 2000 > maximum allowed batch size 32"``), after a limit word
    (``"at most 100 documents"``, ``"maximum of 100"``, ``"max_client_batch_size 100"``,
    ``"limit is 100"``) or before one (``"100 is the maximum"``). The kind is ``"tokens"``
    when the message speaks of tokens, ``"documents"`` when it speaks of documents / texts /
    inputs / a batch / "too many"; otherwise ``None``. A token limit on one document or
    sequence (``"maximum context length is 8192 tokens"``, ``"document too long"``) is not a
    per-request limit — splitting cannot help — and gives ``None``, as does any message
    without such a number.
    """
    limit: int | None = None
    span = ""
    match = _COMPARISON.search(message)
    if match is not None:
        sent, stated = _to_int(match.group(1)), _to_int(match.group(2))
        if stated >= sent:  # "100 > 2000" makes no sense: trust no number in it
            return None
        limit, span = stated, match.group(0)
    if limit is None:
        for pattern in (_LIMIT_THEN_NUMBER, _NUMBER_IS_LIMIT):
            match = pattern.search(message)
            if match is not None:
                limit, span = _to_int(match.group(1)), match.group(0)
                break
    if limit is None or limit < 1:
        return None
    # The unit: first from the words around the number, then from the whole message.
    after = message[match.end() : match.end() + 12] if match is not None else ""
    for text in (span + after, message):
        if _TOKEN_WORD.search(text):
            if _PER_SEQUENCE.search(message):
                return None
            return StatedLimit("tokens", limit)
        if _COUNT_WORD.search(text):
            return StatedLimit("documents", limit)
    return None


@dataclass(frozen=True, slots=True)
class DocumentLimit:
    """A limit on ONE document (with its query) that a server stated."""

    kind: Literal["tokens", "characters"]
    value: int


_CONTEXT_LENGTH = re.compile(
    r"maximum\s+(?:context|model|sequence)\s+length\s+(?:is|of)\s+" + _NUMBER + r"\s+tokens",
    re.IGNORECASE,
)
_CHARACTERS = re.compile(
    r"\b(?:string|text|document|input|query)s?\s+should\s+have\s+at\s+most\s+"
    + _NUMBER
    + r"\s+characters?",
    re.IGNORECASE,
)


def parse_document_limit(message: str) -> DocumentLimit | None:
    """The per-document limit an error message states, or ``None``.

    ``"This model's maximum context length is 512 tokens. ..."`` (vLLM, OpenAI-style) ->
    ``DocumentLimit("tokens", 512)``; ``"String should have at most 122880 characters"``
    (pydantic, Infinity) -> ``DocumentLimit("characters", 122880)``.
    """
    for pattern, kind in ((_CONTEXT_LENGTH, "tokens"), (_CHARACTERS, "characters")):
        match = pattern.search(message)
        if match is not None:
            value = int(match.group(1).replace(",", ""))
            if value >= 1:
                return DocumentLimit("tokens" if kind == "tokens" else "characters", value)
    return None


def is_document_too_long(status: int, message: str) -> bool:
    """Whether an error answer (400, 413 or 422) says that one document is over a stated
    per-document limit: the sub-request is re-planned, never retried as it is."""
    return status in (400, 413, 422) and parse_document_limit(message) is not None


_TOO_LONG = re.compile(
    r"too (long|many|large|big)|exceed|maximum|max[_ ]|limit|context length|batch size|tokens|"
    r"at most [\d,]+ (documents?|items?|texts?|inputs?|passages?)",
    re.IGNORECASE,
)


def is_too_long(status: int, message: str) -> bool:
    """Whether an error answer means "this request is too big": split it and try again.

    413 always; 422 only when the server's message speaks of a size (too long / too many /
    exceeds / maximum / limit / tokens / batch size / "at most N documents|items", the
    wording of pydantic's list-length check), so that a 422 for a bad field is not retried in
    ever smaller pieces. A 400 or 422 that states a limit on one document (vLLM's "maximum
    context length is N tokens", pydantic's "String should have at most N characters":
    :mod:`~rerank_integrations.backends.remote.document_limits`) is "too long" too.
    """
    if status == 413 or is_document_too_long(status, message):
        return True
    return status == 422 and _TOO_LONG.search(message) is not None

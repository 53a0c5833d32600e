"""Keeping secrets out of every text the remote backend shows: a pure :class:`Redactor`.

A reranker's secrets are its API key and any credentials in its ``base_url`` (``user:pass@``).
Every text that quotes a server (error messages, a non-JSON body, a request id) and every
exception message the backend builds passes through the reranker's redactor, which

- replaces every occurrence of a secret with ``***``;
- also replaces every run of :data:`MIN_PARTIAL` (8) or more characters that is a substring
  of a secret at least that long: a server that echoes a key it cut itself
  (``"Bearer sk-abc123..."``), or a text cut in the middle of a key, shows no part of it
  longer than 7 characters;
- redacts BEFORE cutting: :meth:`Redactor.cut` redacts the kept window plus a margin as long
  as the longest secret, then cuts, so a key straddling the cut cannot leak in part.

Nothing here does I/O; the redactor is immutable and shared by the sync and async paths.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MARK", "MIN_PARTIAL", "Redactor"]

MARK = "***"
"""What a redacted secret (or part of one) is replaced with."""

MIN_PARTIAL = 8
"""Substrings of a secret this long or longer are redacted too (for secrets at least this
long; a shorter secret is only redacted whole)."""


class Redactor:
    """Redacts a fixed set of secrets from texts (see the module docstring).

    >>> Redactor(["sk-0123456789"])("key sk-0123456789, cut sk-01234567...")
    'key ***, cut ***...'
    """

    __slots__ = ("_grams", "_longest", "_secrets")

    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = {s for s in secrets if s}
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets: tuple[str, ...] = tuple(sorted(unique, key=lambda s: (-len(s), s)))
        self._longest = max((len(s) for s in self._secrets), default=0)
        grams: set[str] = set()
        for secret in self._secrets:
            if len(secret) >= MIN_PARTIAL:
                grams.update(
                    secret[i : i + MIN_PARTIAL] for i in range(len(secret) - MIN_PARTIAL + 1)
                )
        self._grams = frozenset(grams)

    def __repr__(self) -> str:  # never the secrets
        return f"Redactor({len(self._secrets)} secret(s))"

    @property
    def active(self) -> bool:
        """Whether there is anything to redact."""
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        """``text`` with every secret and every 8+ character piece of one replaced by ``***``."""
        if not self._secrets or not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MARK)
        if not self._grams or len(text) < MIN_PARTIAL:
            return text
        return self._drop_pieces(text)

    def _drop_pieces(self, text: str) -> str:
        """Replace maximal runs of ``text`` that are substrings (8+ long) of a secret."""
        out: list[str] = []
        i = start = 0
        n = len(text)
        while i <= n - MIN_PARTIAL:
            if text[i : i + MIN_PARTIAL] not in self._grams:
                i += 1
                continue
            j = i + MIN_PARTIAL
            while j < n and any(text[i : j + 1] in s for s in self._secrets):
                j += 1
            out.append(text[start:i])
            out.append(MARK)
            i = start = j
        out.append(text[start:])
        return "".join(out)

    def cut(self, text: str, limit: int, *, ellipsis: str = "...") -> str:
        """``text`` redacted, then cut to at most ``limit`` characters (``ellipsis`` marks a
        cut). Only the kept window and a margin as long as the longest secret are redacted,
        so a huge text costs no more than a short one."""
        window = text[: limit + self._longest + len(ellipsis)]
        clean = self(window)
        if len(window) == len(text) and len(clean) <= limit:
            return clean
        if limit <= len(ellipsis):
            return clean[: max(0, limit)]
        return clean[: limit - len(ellipsis)] + ellipsis

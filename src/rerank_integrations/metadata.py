"""Turning a framework's metadata dict into the reranker's per-document metadata string.

:func:`format_metadata` is the only place that does this; adapters call it (or a
user-supplied callable with the same shape, see :data:`MetadataFormatter`).
"""

from __future__ import annotations

import datetime as _dt
import enum
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MetadataFormatter = Callable[[Mapping[str, Any]], str]
"""A user-supplied replacement for :func:`format_metadata`: ``meta -> str``."""


def _render_value(value: object) -> str | None:
    """The text of one value, or ``None`` when the value is left out."""
    if value is None or isinstance(value, bytes | bytearray | memoryview | Mapping):
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = " ".join(value.split())  # one line per key: fold newlines and runs of spaces
        return text or None
    if isinstance(value, numbers.Real):  # int, float and NumPy scalars; NaN is left out
        return None if value != value else str(value)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, Sequence | set | frozenset):
        items = list(value)
        if items and all(isinstance(item, str) for item in items):
            joined = ", ".join(" ".join(item.split()) for item in items if item.strip())
            return joined or None
        return None  # numeric lists (embeddings), mixed or empty lists are left out
    return None  # arrays, tensors and other objects


def format_metadata(meta: Mapping[str, Any] | None, *, keys: Sequence[str] | None = None) -> str:
    """Render ``meta`` as ``key: value`` lines.

    - Scalars (str, int, float, bool, enum) are rendered with ``str`` (whitespace in strings,
      newlines included, folded to single spaces so each field stays one line); bools as
      ``true``/``false``; ``date``/``datetime``/``time`` as ISO 8601.
    - Lists of strings (tags, authors) are joined with ``", "``.
    - Left out: ``None``, empty strings, numeric lists and arrays (embedding vectors),
      nested dicts, bytes, other objects, and keys starting with ``_``.
    - ``keys`` selects and orders the fields; without it the dict's own order is used.
      A key in ``keys`` that is missing from ``meta`` is skipped.

    Returns ``""`` when nothing is left.
    """
    if not meta:
        return ""
    names = list(meta) if keys is None else [k for k in keys if k in meta]
    lines = []
    for name in names:
        if not isinstance(name, str) or name.startswith("_"):
            continue
        rendered = _render_value(meta[name])
        if rendered is not None:
            lines.append(f"{name}: {rendered}")
    return "\n".join(lines)

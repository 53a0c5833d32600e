"""Turning a framework's metadata dict into the reranker's per-document metadata string.

:func:`format_metadata` is the only place that does this; adapters call it (or a
user-supplied callable with the same shape, see :data:`MetadataFormatter`).
"""

from __future__ import annotations

import datetime as _dt
import enum
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MetadataFormatter = Callable[[Mapping[str, Any]], str]
"""A user-supplied replacement for :func:`format_metadata`: ``meta -> str``."""

LOADER_KEYS: frozenset[str] = frozenset(
    {
        # LangChain loaders and splitters (PyPDFLoader, Unstructured, text splitters)
        "page", "page_label", "total_pages", "producer", "creator", "creationdate", "moddate",
        "start_index", "filename", "file_directory", "filetype", "last_modified", "languages",
        "element_id", "parent_id", "coordinates",
        # LlamaIndex readers and nodes (SimpleDirectoryReader)
        "file_path", "file_name", "file_type", "file_size", "creation_date",
        "last_modified_date", "last_accessed_date", "doc_id", "ref_doc_id", "document_id",
        # Haystack converters and splitters
        "page_number", "split_id", "split_idx_start", "source_id",
    }
)  # fmt: skip
"""Keys that document loaders of the three frameworks write as bookkeeping (file paths, pages,
offsets, PDF producer and dates, ids): never what an instruction should weigh. Adapters leave
them out of the metadata they send by default (:func:`without_loader_noise`); name them in
``metadata_keys`` to send them anyway."""

_LOCATION = re.compile(r"^(?:/|\./|\.\./|~|file:|[A-Za-z]:[\\/])")


def without_loader_noise(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without :data:`LOADER_KEYS`, and without a ``source`` that is a file path
    (LangChain loaders put the path there; a ``source`` such as ``"Reuters"`` or a URL stays)."""
    return {
        k: v
        for k, v in meta.items()
        if k not in LOADER_KEYS
        and not (k == "source" and isinstance(v, str) and _LOCATION.match(v) is not None)
    }


MAX_INT_DIGITS = 30
"""Integers with more digits are rendered in scientific notation (7 significant digits)."""


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace, line breaks included (``\n``, ``\r``, U+2028,
    U+2029, U+0085, ...: everything ``str.split`` splits on), folded to one space."""
    return " ".join(text.split())


def _render_int(number: int) -> str:
    """``str(number)``, or for more than :data:`MAX_INT_DIGITS` digits a bounded scientific
    form (``1.000000e+5000``): never the ValueError of ``str`` past 4,300 digits."""
    size = abs(number)
    if size < 10**MAX_INT_DIGITS:
        return str(number)
    exponent = max(0, int(size.bit_length() * 0.30102999566398120) - 7)
    head = size // 10**exponent  # 7 or 8 digits
    while head >= 10**7:
        head //= 10
        exponent += 1
    digits = str(head)
    exponent += len(digits) - 1
    sign = "-" if number < 0 else ""
    return f"{sign}{digits[0]}.{digits[1:]:0<6}e+{exponent}"


def _render_value(value: object) -> str | None:
    """The text of one value, or ``None`` when the value is left out."""
    if value is None or isinstance(value, bytes | bytearray | memoryview | Mapping):
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _one_line(value) or None  # one line per key: fold newlines and runs of spaces
    if isinstance(value, numbers.Integral):  # int and NumPy integers, of any size
        return _render_int(int(value))
    if isinstance(value, numbers.Real):  # float and NumPy floats; NaN is left out
        if value != value:
            return None
        try:
            return _one_line(str(value))
        except (ValueError, OverflowError):  # a Fraction too large to print
            return None
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, Sequence | set | frozenset):
        items = list(value)
        if items and all(isinstance(item, str) for item in items):
            joined = ", ".join(_one_line(item) for item in items if item.strip())
            return joined or None
        return None  # numeric lists (embeddings), mixed or empty lists are left out
    return None  # arrays, tensors and other objects


def format_metadata(meta: Mapping[str, Any] | None, *, keys: Sequence[str] | None = None) -> str:
    """Render ``meta`` as ``key: value`` lines.

    - One field per line, whatever the data holds: keys AND values have every run of
      whitespace, line breaks included (``\n``, ``\r``, U+2028, U+2029, U+0085...), folded to
      one space, so a document cannot forge an extra ``date:`` or ``source:`` line.
    - Scalars (str, int, float, bool, enum) are rendered with ``str``; integers of more than
      :data:`MAX_INT_DIGITS` digits in a bounded scientific form (``1.000000e+5000``); bools as
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
        if not isinstance(name, str) or name.startswith("_") or not _one_line(name):
            continue
        rendered = _render_value(meta[name])
        if rendered is not None:
            lines.append(f"{_one_line(name)}: {rendered}")
    return "\n".join(lines)

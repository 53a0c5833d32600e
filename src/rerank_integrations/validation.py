"""The one place that checks arguments, done before any model or network work.

One rule, everywhere (core, both backends, the adapters, the CLI):

- a value of the WRONG TYPE raises :class:`~rerank_integrations.errors.RerankTypeError`;
- a value of the right type that is out of range or malformed raises
  :class:`~rerank_integrations.errors.RerankInputError`;

and both name the field (``err.field``). ``bool`` is never accepted where a number is asked
for. Text that reaches a model or the network must be encodable as UTF-8 (a lone surrogate
such as ``"\\udcff"`` is a malformed value).

:func:`validate_request` is the single gate of a rerank call (via :meth:`Reranker.rerank`). It
copies the caller's sequences into tuples, so nothing a backend does can mutate them.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from rerank_integrations.errors import RerankInputError, RerankTypeError

__all__ = [
    "RerankRequest",
    "bool_value",
    "choice_value",
    "int_value",
    "mapping_value",
    "number_value",
    "optional_callable",
    "optional_int",
    "optional_mapping",
    "optional_number",
    "optional_str",
    "optional_str_sequence",
    "sequence_of",
    "str_value",
    "text_value",
    "validate_documents",
    "validate_instruction",
    "validate_metadata",
    "validate_query",
    "validate_request",
    "validate_score_threshold",
    "validate_top_n",
]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """A validated rerank call. ``metadata`` is ``None`` or one string per document."""

    query: str
    documents: tuple[str, ...]
    instruction: str | None = None
    metadata: tuple[str, ...] | None = None
    top_n: int | None = None


# --------------------------------------------------------------------------- primitives


def _type_name(value: object) -> str:
    return type(value).__name__


def text_value(field: str, value: object, *, blank_ok: bool = True) -> str:
    """A str that encodes as UTF-8 (no lone surrogates); ``blank_ok=False`` rejects blanks."""
    if not isinstance(value, str):
        raise RerankTypeError(field, f"must be a str, got {_type_name(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RerankInputError(
                field,
                f"is not valid Unicode text (a lone surrogate at character {exc.start}); "
                "decode your input with errors='replace' or fix its encoding",
            ) from None
    if not blank_ok and not value.strip():
        raise RerankInputError(field, "must not be empty or whitespace")
    return value


def str_value(field: str, value: object, *, blank_ok: bool = False) -> str:
    """A str setting (model id, URL, device, ...); blank is rejected unless ``blank_ok``."""
    if not isinstance(value, str):
        raise RerankTypeError(field, f"must be a str, got {_type_name(value)}")
    if not blank_ok and not value.strip():
        raise RerankInputError(field, "must be a non-empty str")
    return value


def optional_str(field: str, value: object, *, blank_ok: bool = False) -> str | None:
    """``None`` or :func:`str_value`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RerankTypeError(field, f"must be a str or None, got {_type_name(value)}")
    return str_value(field, value, blank_ok=blank_ok)


def bool_value(field: str, value: object) -> bool:
    """Exactly ``True`` or ``False`` (``0``/``1``/``"yes"`` are wrong types)."""
    if not isinstance(value, bool):
        raise RerankTypeError(field, f"must be a bool, got {_type_name(value)}")
    return value


def int_value(field: str, value: object, *, minimum: int | None = None) -> int:
    """An int (not a bool), ``>= minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RerankTypeError(field, f"must be an int, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise RerankInputError(field, f"must be >= {minimum}, got {value}")
    return value


def optional_int(field: str, value: object, *, minimum: int | None = None) -> int | None:
    """``None`` or :func:`int_value`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RerankTypeError(field, f"must be an int or None, got {_type_name(value)}")
    return int_value(field, value, minimum=minimum)


def number_value(
    field: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    """A finite int/float (not a bool); ``> 0`` when ``positive``, within ``minimum`` /
    ``maximum`` when given. An int too large for a float is a bad value, not an OverflowError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RerankTypeError(field, f"must be a number, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise RerankInputError(field, "must be a finite number")
    if positive and number <= 0:
        raise RerankInputError(field, f"must be > 0, got {value}")
    if minimum is not None and number < minimum:
        raise RerankInputError(field, f"must be >= {minimum}, got {value}")
    if maximum is not None and number > maximum:
        raise RerankInputError(field, f"must be <= {maximum:g}, got {number:g}")
    return number


def optional_number(
    field: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float | None:
    """``None`` or :func:`number_value`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RerankTypeError(field, f"must be a number or None, got {_type_name(value)}")
    return number_value(field, value, minimum=minimum, maximum=maximum, positive=positive)


def choice_value(field: str, value: object, choices: Collection[str]) -> str:
    """One of ``choices`` (a non-str is a wrong type, an unknown str a bad value)."""
    if not isinstance(value, str):
        raise RerankTypeError(field, f"must be one of {list(choices)}, got {_type_name(value)}")
    if value not in choices:
        raise RerankInputError(field, f"must be one of {list(choices)}, got {value!r}")
    return value


def optional_callable(field: str, value: object) -> Callable[..., Any] | None:
    """``None`` or a callable."""
    if value is not None and not callable(value):
        raise RerankTypeError(field, f"must be callable or None, got {_type_name(value)}")
    return value


def mapping_value(field: str, value: object) -> Mapping[str, Any]:
    """A mapping with str keys."""
    if not isinstance(value, Mapping):
        raise RerankTypeError(field, f"must be a mapping, got {_type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise RerankTypeError(f"{field}[{key!r}]", f"keys must be str, got {_type_name(key)}")
    return value


def optional_mapping(field: str, value: object) -> Mapping[str, Any] | None:
    """``None`` or :func:`mapping_value`."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RerankTypeError(field, f"must be a mapping or None, got {_type_name(value)}")
    return mapping_value(field, value)


def optional_str_sequence(field: str, value: object) -> tuple[str, ...] | None:
    """``None`` or a list/tuple of str (a bare str is a wrong type: it is not a list of names)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise RerankTypeError(field, f"must be a list of str or None, got {_type_name(value)}")
    items = tuple(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise RerankTypeError(f"{field}[{i}]", f"must be a str, got {_type_name(item)}")
    return items


def sequence_of(field: str, value: object, item_type: type[T], item_name: str) -> list[T]:
    """A list/tuple (not a str or a mapping) whose items are all ``item_type``; copied into a
    list. ``item_name`` names the type in the error (e.g. ``"Document"``)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise RerankTypeError(field, f"must be a sequence of {item_name}, got {_type_name(value)}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, item_type):
            raise RerankTypeError(f"{field}[{i}]", f"must be a {item_name}, got {_type_name(item)}")
    return items


# --------------------------------------------------------------------------- a rerank call


def validate_top_n(top_n: object, *, field: str = "top_n") -> int | None:
    """``None`` or an int >= 1 (``bool`` is a wrong type)."""
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int):
        raise RerankTypeError(field, f"must be a positive int or None, got {_type_name(top_n)}")
    return int_value(field, top_n, minimum=1)


def validate_score_threshold(threshold: object, *, field: str = "score_threshold") -> float | None:
    """``None`` or a finite real number (``0`` and ``0.0`` are real thresholds)."""
    return optional_number(field, threshold)


def validate_instruction(instruction: object, *, field: str = "instruction") -> str | None:
    """``None`` or a str. An empty/whitespace instruction is the same as none."""
    if instruction is None:
        return None
    if not isinstance(instruction, str):
        raise RerankTypeError(field, f"must be a str or None, got {_type_name(instruction)}")
    text_value(field, instruction)
    return instruction if instruction.strip() else None


def validate_query(query: object) -> str:
    """A non-blank str."""
    return text_value("query", query, blank_ok=False)


def validate_documents(documents: object) -> tuple[str, ...]:
    """A sequence (not a str) of str; copied into a tuple."""
    if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
        raise RerankTypeError(
            "documents", f"must be a sequence of str, got {_type_name(documents)}"
        )
    docs = tuple(documents)
    for i, doc in enumerate(docs):
        text_value(f"documents[{i}]", doc)
    return docs


def validate_metadata(metadata: object, n_documents: int) -> tuple[str, ...] | None:
    """``None`` or one str per document; copied into a tuple."""
    if metadata is None:
        return None
    if isinstance(metadata, str | bytes) or not isinstance(metadata, Sequence):
        raise RerankTypeError(
            "metadata", f"must be a sequence of str or None, got {_type_name(metadata)}"
        )
    meta = tuple(metadata)
    if len(meta) != n_documents:
        raise RerankInputError(
            "metadata", f"has {len(meta)} entries but there are {n_documents} documents"
        )
    for i, entry in enumerate(meta):
        text_value(f"metadata[{i}]", entry)
    return meta


def validate_request(
    query: object,
    documents: object,
    *,
    instruction: object = None,
    metadata: object = None,
    top_n: object = None,
) -> RerankRequest:
    """Validate every argument of a rerank call; raise a typed error naming the field."""
    valid_query = validate_query(query)
    docs = validate_documents(documents)
    return RerankRequest(
        query=valid_query,
        documents=docs,
        instruction=validate_instruction(instruction),
        metadata=validate_metadata(metadata, len(docs)),
        top_n=validate_top_n(top_n),
    )


NAMES_ELSEWHERE: Mapping[str, str] = MappingProxyType(
    {"top_k": "top_n", "top_n": "top_k", "model_name": "model", "threshold": "score_threshold"}
)
"""What other rerankers call an argument (LangChain's and LlamaIndex's ``top_n`` is Haystack's
``top_k``, ...): suggested first when the name the caller used is one of these."""


def unknown_name(
    name: str, known: Iterable[str], *, field: str | None = None, of: str = ""
) -> RerankTypeError:
    """``name`` is not an argument: a :class:`RerankTypeError` (as Python's own "unexpected
    keyword argument") naming ``field`` (default ``name``) and suggesting the closest valid
    name: the other frameworks' spelling first (:data:`NAMES_ELSEWHERE`), else the nearest by
    spelling. ``of`` names what takes the arguments (``"RemoteReranker"``)."""
    valid = sorted(set(known))
    hint = NAMES_ELSEWHERE.get(name)
    if hint not in valid:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = close[0] if close else None
    suggestion = f"; did you mean {hint!r}?" if hint else ""
    owner = f" of {of}" if of else ""
    return RerankTypeError(field or name, f"is not an argument{owner}{suggestion}")


F = TypeVar("F", bound=Callable[..., Any])


def checked_keywords(function: F) -> F:
    """``function`` (sync or async), refusing an unknown keyword argument with
    :func:`unknown_name` (``compress_documents(top_k=1)``: "did you mean 'top_n'?") instead
    of Python's bare TypeError. The signature stays ``function``'s (frameworks inspect it)."""
    params = inspect.signature(function).parameters
    valid = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_POSITIONAL]
    owner = function.__qualname__.replace(".__init__", "")

    def check(kwargs: Mapping[str, Any]) -> None:
        for name in kwargs:
            if name not in params:
                raise unknown_name(name, valid, of=owner)

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            check(kwargs)
            return await function(*args, **kwargs)

        return checked_async  # type: ignore[return-value]

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check(kwargs)
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]

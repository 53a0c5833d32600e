"""The local formats and their registry.

One module per format (:mod:`.ctxl_v2`, :mod:`.mxbai_v2`, :mod:`.qwen3`, :mod:`.cross_encoder`),
each owning its recognition, loading, prompt, scores and length policy; :mod:`.base` defines
:class:`LocalFormat`, :mod:`.prompt` the prompt-text causal formats.

:data:`FORMATS` is the registry: the built-in formats in DETECTION order (the first whose
``matches`` accepts the model wins). Adding a format = one new module here + one line in
:data:`FORMATS` (docs/design.md "Adding a local format"). It is an immutable tuple; a caller
that wants another list passes ``LocalReranker(formats=(MyFormat(), *FORMATS))`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rerank_integrations.backends.local.formats.base import LocalFormat, ModelInfo
from rerank_integrations.backends.local.formats.cross_encoder import CrossEncoderFormat
from rerank_integrations.backends.local.formats.ctxl_v2 import CtxlV2Format
from rerank_integrations.backends.local.formats.mxbai_v2 import MxbaiV2Format
from rerank_integrations.backends.local.formats.qwen3 import Qwen3Format
from rerank_integrations.errors import ModelLoadError, RerankInputError, RerankTypeError
from rerank_integrations.validation import choice_value

__all__ = [
    "FORMATS",
    "CrossEncoderFormat",
    "CtxlV2Format",
    "LocalFormat",
    "MxbaiV2Format",
    "Qwen3Format",
    "detect_format",
    "resolve_format",
    "validate_formats",
]

#: the built-in formats, in detection order.
FORMATS: tuple[LocalFormat, ...] = (
    CtxlV2Format(),
    MxbaiV2Format(),
    Qwen3Format(),
    CrossEncoderFormat(),
)


def detect_format(
    model: str, config: Mapping[str, Any], formats: Sequence[LocalFormat] = FORMATS
) -> LocalFormat:
    """The first of ``formats`` that matches a model id / local path and its raw
    ``config.json`` dict; ``ModelLoadError`` listing the formats when none does."""
    info = ModelInfo(model, config)
    for fmt in formats:
        if fmt.matches(info):
            return fmt
    listed = ", ".join(f"{f.name!r} ({f.summary})" for f in formats)
    raise ModelLoadError(
        f"cannot tell which scoring format {model!r} uses (architectures="
        f"{list(info.architectures) or None}). Pass model_format= one of "
        f"{[f.name for f in formats]}: {listed}."
    )


def validate_formats(value: object, *, field: str = "formats") -> tuple[LocalFormat, ...]:
    """``None`` (the registry) or a non-empty list/tuple of :class:`LocalFormat` with distinct
    names, as a tuple."""
    if value is None:
        return FORMATS
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise RerankTypeError(
            field, f"must be a list of LocalFormat or None, got {type(value).__name__}"
        )
    formats = tuple(value)
    for i, fmt in enumerate(formats):
        if not isinstance(fmt, LocalFormat):
            raise RerankTypeError(
                f"{field}[{i}]", f"must be a LocalFormat, got {type(fmt).__name__}"
            )
    names = [f.name for f in formats]
    if not formats:
        raise RerankInputError(field, "must name at least one format")
    if len(set(names)) != len(names):
        raise RerankInputError(field, f"has formats with the same name: {names}")
    return formats


def resolve_format(
    value: object, formats: Sequence[LocalFormat], *, field: str = "model_format"
) -> LocalFormat | None:
    """``None`` (detect), a :class:`LocalFormat`, or the name of one of ``formats``."""
    if value is None or isinstance(value, LocalFormat):
        return value
    if not isinstance(value, str):
        raise RerankTypeError(
            field, f"must be a format name, a LocalFormat or None, got {type(value).__name__}"
        )
    name = choice_value(field, value, [f.name for f in formats])
    return next(f for f in formats if f.name == name)

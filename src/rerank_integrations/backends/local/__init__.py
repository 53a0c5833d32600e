"""The local backend: :class:`LocalReranker` and the format API.

Modules: :mod:`.reranker` (``LocalReranker``), :mod:`.loading` (device/dtype/attention, format
detection), :mod:`.checkpoint` (:class:`Checkpoint`: what a format's build sees, safe weights),
:mod:`.files` (which model file a load error names, and what is wrong with a JSON one),
:mod:`.tokenizer` (the tokenizer view, the pair template), :mod:`.engine` (batching, one
worker), :mod:`.runners` (the torch code), :mod:`.jina` (jina-reranker-v2 without remote code),
:mod:`.quantize` (opt-in int8) and :mod:`.formats` (one module per model format, and the
registry :data:`FORMATS`).

To add a format, subclass :class:`LocalFormat` (or :class:`CausalFormat`,
:class:`PromptFormat`, one of the built-in formats) and pass it as
``LocalReranker(model_format=MyFormat())`` or ``LocalReranker(formats=(MyFormat(), *FORMATS))``
(docs/design.md "Adding a local format").

Importing this package imports no torch or transformers: they load when a reranker is built.
"""

from __future__ import annotations

from rerank_integrations.backends.local.checkpoint import Checkpoint
from rerank_integrations.backends.local.engine import EncodedInput
from rerank_integrations.backends.local.formats import (
    FORMATS,
    CrossEncoderFormat,
    CtxlV2Format,
    MxbaiV2Format,
    Qwen3Format,
    detect_format,
)
from rerank_integrations.backends.local.formats.base import (
    BuiltModel,
    CausalFormat,
    EncodedDocument,
    EncodedRequest,
    LocalFormat,
    ModelInfo,
    TextEncoder,
)
from rerank_integrations.backends.local.formats.prompt import PromptFormat, PromptParts
from rerank_integrations.backends.local.reranker import DEFAULT_MODEL, LocalReranker

__all__ = [
    "DEFAULT_MODEL",
    "FORMATS",
    "BuiltModel",
    "CausalFormat",
    "Checkpoint",
    "CrossEncoderFormat",
    "CtxlV2Format",
    "EncodedDocument",
    "EncodedInput",
    "EncodedRequest",
    "LocalFormat",
    "LocalReranker",
    "ModelInfo",
    "MxbaiV2Format",
    "PromptFormat",
    "PromptParts",
    "Qwen3Format",
    "TextEncoder",
    "detect_format",
]

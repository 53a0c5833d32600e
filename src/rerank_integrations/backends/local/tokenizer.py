"""The local backend's view of a Hugging Face fast tokenizer (:class:`HFTextEncoder`).

The formats only need "text -> ids" (:class:`~.formats.base.TextEncoder`); this view adds the
special tokens the tokenizer puts around one text and learns its :class:`PairTemplate` (where
the special tokens go around a text pair: the cross-encoders' input layout).
``tokenizers`` is imported when a view is built; importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rerank_integrations.errors import ModelLoadError
from rerank_integrations.extras import import_extra

__all__ = ["HFTextEncoder", "PairTemplate"]


@dataclass(frozen=True, slots=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a text pair:
    ``prefix + A + middle + B + suffix`` with token-type ids ``type_a`` for ``prefix + A +
    middle`` and ``type_b`` for ``B + suffix`` (BERT: ``[CLS] A [SEP] B [SEP]`` types 0/1;
    XLM-R: ``<s> A </s></s> B </s>`` without token types)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    type_a: int = 0
    type_b: int = 1
    uses_token_types: bool = False

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(
        self, a: Sequence[int], b: Sequence[int]
    ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        ids = (*self.prefix, *a, *self.middle, *b, *self.suffix)
        if not self.uses_token_types:
            return ids, None
        n_a = len(self.prefix) + len(a) + len(self.middle)
        return ids, (self.type_a,) * n_a + (self.type_b,) * (len(ids) - n_a)


def _find(seq: Sequence[int], sub: Sequence[int], start: int = 0) -> int:
    n = len(sub)
    for i in range(start, len(seq) - n + 1):
        if list(seq[i : i + n]) == list(sub):
            return i
    return -1


class HFTextEncoder:
    """A :class:`~.formats.base.TextEncoder` over a private copy of a fast tokenizer's Rust
    backend (no truncation, no padding: thread-safe for concurrent callers)."""

    def __init__(self, hf_tokenizer: Any) -> None:
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(
                "the local backend needs a fast (tokenizers-based) tokenizer; this model only "
                "has a slow one"
            )
        tokenizers = import_extra("tokenizers", extra="local", feature="LocalReranker")
        tok = tokenizers.Tokenizer.from_str(backend.to_str())
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        probe_a, probe_b = "hello world", "the answer"
        plain_a = self.encode(probe_a)
        with_specials = tok.encode(probe_a, add_special_tokens=True).ids
        at = _find(with_specials, plain_a)
        if at < 0:
            raise ModelLoadError("could not locate the text inside the tokenizer's special tokens")
        self.special_prefix: tuple[int, ...] = tuple(with_specials[:at])
        self.special_suffix: tuple[int, ...] = tuple(with_specials[at + len(plain_a) :])
        self.model_input_names = tuple(getattr(hf_tokenizer, "model_input_names", ()))
        self._pair_probe = (probe_a, probe_b)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def token_id(self, token: str) -> int | None:
        tid = self._tok.token_to_id(token)
        return int(tid) if tid is not None else None

    def pair_template(self) -> PairTemplate:
        """Learn ``prefix + A + middle + B + suffix`` from the tokenizer's own pair encoding."""
        a_text, b_text = self._pair_probe
        a, b = self.encode(a_text), self.encode(b_text)
        enc = self._tok.encode(a_text, b_text, add_special_tokens=True)
        ids, types = list(enc.ids), list(enc.type_ids)
        i = _find(ids, a)
        j = _find(ids, b, i + len(a)) if i >= 0 else -1
        if i < 0 or j < 0:
            raise ModelLoadError("could not learn the tokenizer's pair template")
        return PairTemplate(
            prefix=tuple(ids[:i]),
            middle=tuple(ids[i + len(a) : j]),
            suffix=tuple(ids[j + len(b) :]),
            type_a=int(types[0]) if types else 0,
            type_b=int(types[-1]) if types else 0,
            uses_token_types="token_type_ids" in self.model_input_names,
        )

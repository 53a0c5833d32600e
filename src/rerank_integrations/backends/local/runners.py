"""The batch runners of the local engine: the only code that touches torch tensors.

:class:`CausalRunner` runs a decoder body and projects the last real token of each input onto
the 1-2 ``lm_head`` rows a causal format reads (:func:`score_rows` copies them out of the loaded
LM); :class:`ClassifierRunner` runs a one-label sequence classifier. Both right-pad a batch and
always pass its attention mask. torch is handed in by the caller (the format's ``build``), so
importing this module is cheap.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rerank_integrations.backends.local.engine import EncodedInput, Rows
from rerank_integrations.errors import ModelLoadError

__all__ = ["CausalRunner", "ClassifierRunner", "score_rows"]


def score_rows(
    torch: Any, lm: Any, token_ids: Sequence[int], *, device: Any, dtype: Any
) -> tuple[Any, Any | None]:
    """Copies of the ``lm_head`` weight rows (and bias entries, if any) of ``token_ids``, on
    ``device`` in ``dtype``: all a causal format needs of the full-vocabulary projection."""
    head = lm.get_output_embeddings()
    ids = list(token_ids)
    vocab = int(head.weight.shape[0])
    if any(i < 0 or i >= vocab for i in ids):
        raise ModelLoadError(f"score token ids {ids} are outside the model's vocabulary ({vocab})")
    with torch.no_grad():
        weight = head.weight[ids].detach().clone().to(device=device, dtype=dtype)
        bias = getattr(head, "bias", None)
        if bias is not None:
            bias = bias[ids].detach().clone().to(device=device, dtype=dtype)
    return weight, bias


class _TorchRunner:
    def __init__(self, torch: Any, module: Any, *, pad_token_id: int, device: Any) -> None:
        self.torch = torch
        self.module: Any = module
        self.pad_token_id = pad_token_id
        self.device = device
        self._pin = device.type == "cuda"

    def _to_device(self, t: Any) -> Any:
        if self._pin:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _pad(self, seqs: Sequence[Sequence[int]], value: int) -> tuple[Any, Any, Any]:
        """Right-padded ``[B, L]`` ids, attention mask and the lengths."""
        width = max(len(s) for s in seqs)
        ids = [[*s, *([value] * (width - len(s)))] for s in seqs]
        mask = [[1] * len(s) + [0] * (width - len(s)) for s in seqs]
        lengths = [len(s) for s in seqs]
        t = self.torch
        return t.tensor(ids, dtype=t.long), t.tensor(mask, dtype=t.long), t.tensor(lengths)

    def is_oom(self, exc: BaseException) -> bool:
        oom_type = getattr(self.torch, "OutOfMemoryError", None) or getattr(
            self.torch.cuda, "OutOfMemoryError", ()
        )
        if oom_type and isinstance(exc, oom_type):
            return True
        return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()

    def clear_cache(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def release(self) -> None:
        self.module = None
        self.clear_cache()


@dataclass
class _Prefix:
    cache: Any
    length: int


def cache_kwarg(module: Any) -> str:
    """The keyword under which ``module``'s forward takes a KV cache object.

    transformers 5 renamed ``past_key_values`` to ``cache`` (the input and output field; the old
    name warns a FutureWarning, resp. logs, until its removal in 5.40); transformers 4 and
    remote-code models that predate the rename only know ``past_key_values``. Asked of the
    signature once, at build: ``inspect.signature`` follows transformers' ``functools.wraps``
    decorators down to the real forward."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):  # a forward without a readable signature: the old name
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class CausalRunner(_TorchRunner):
    """Decoder body + the format's ``lm_head`` rows; reads the last real token of each input."""

    supports_prefix = True

    def __init__(
        self,
        torch: Any,
        module: Any,
        *,
        score_weight: Any,
        score_bias: Any | None,
        pad_token_id: int,
        device: Any,
    ) -> None:
        super().__init__(torch, module, pad_token_id=pad_token_id, device=device)
        self.score_weight = score_weight
        self.score_bias = score_bias
        self.cache_name = cache_kwarg(module)

    def prepare_prefix(self, prefix_ids: Sequence[int]) -> _Prefix:
        t = self.torch
        with t.inference_mode():
            ids = self._to_device(t.tensor([list(prefix_ids)], dtype=t.long))
            out = self.module(input_ids=ids, use_cache=True)
        # The output field has the new name wherever the output class does (a remote-code
        # model's old-style forward still returns a transformers 5 output class).
        fields = getattr(out, "__dataclass_fields__", {})
        cache = out.cache if "cache" in fields else out.past_key_values
        return _Prefix(cache, len(prefix_ids))

    def run(self, items: Sequence[EncodedInput], prefix: _Prefix | None = None) -> list[Rows]:
        t = self.torch
        skip = prefix.length if prefix is not None else 0
        ids, mask, lengths = self._pad([x.input_ids[skip:] for x in items], self.pad_token_id)
        batch = ids.shape[0]
        # Right padding: every row's real tokens sit at positions skip..skip+n-1, which are the
        # model's default position ids, so none are passed. The mask is ALWAYS passed: with an
        # all-ones mask transformers takes SDPA's is_causal fast path; without one, transformers
        # 4.x reads the default position ids as a packed batch and materialises a 4-D mask
        # (~2x slower attention at 8k tokens, docs/benchmarks.md).
        kwargs: dict[str, Any] = {"use_cache": prefix is not None}
        if prefix is not None:
            cache = copy.deepcopy(prefix.cache)
            if batch > 1:
                cache.batch_repeat_interleave(batch)
            kwargs[self.cache_name] = cache
            mask = t.cat([t.ones(batch, skip, dtype=t.long), mask], dim=1)
        kwargs["attention_mask"] = self._to_device(mask)
        with t.inference_mode():
            out = self.module(input_ids=self._to_device(ids), **kwargs)
            hidden = out.last_hidden_state
            last = hidden[t.arange(batch, device=hidden.device), self._to_device(lengths - 1)]
            rows = t.nn.functional.linear(
                last.to(self.score_weight.dtype), self.score_weight, self.score_bias
            )
            values = rows.float().cpu().tolist()
        return [tuple(r) for r in values]


class ClassifierRunner(_TorchRunner):
    """A one-label sequence classifier (cross-encoders); right padding."""

    supports_prefix = False

    def prepare_prefix(self, prefix_ids: Sequence[int]) -> Any:
        raise NotImplementedError("bidirectional encoders cannot reuse a prefix")

    def run(self, items: Sequence[EncodedInput], prefix: Any | None = None) -> list[Rows]:
        t = self.torch
        ids, mask, _ = self._pad([x.input_ids for x in items], self.pad_token_id)
        kwargs: dict[str, Any] = {
            "input_ids": self._to_device(ids),
            "attention_mask": self._to_device(mask),
        }
        if items[0].token_type_ids is not None:
            types, _, _ = self._pad([x.token_type_ids or () for x in items], 0)
            kwargs["token_type_ids"] = self._to_device(types)
        with t.inference_mode():
            logits = self.module(**kwargs).logits
            values = logits[:, 0].float().cpu().tolist()
        return [(v,) for v in values]

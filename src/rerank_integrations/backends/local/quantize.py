"""Opt-in int8 on CPU: ``LocalReranker(..., quantize="int8")``.

What it does: PyTorch's dynamic int8 quantisation of the model body's ``nn.Linear`` layers
(``torch.ao.quantization.quantize_dynamic``, qint8 per-tensor weights, activations quantised per
call): the x86 fbgemm / onednn int8 GEMMs replace the fp32 ones. Everything else stays fp32:
embeddings, norms, attention scores, the cross-encoder's classifier head, the causal formats'
1-2 ``lm_head`` rows (``[B, hidden] x [hidden, k]``: no time to win, and the score is read
there) and the gated MLP's down projection (:data:`FP32_LINEARS`): its input is the product
``silu(gate) * up``, whose outliers the 7-bit dynamic activation range (fbgemm's
``reduce_range``) flattens. Measured on the benchmark's mxbai-v2 model (W1): Spearman with fp32
0.93 -> 0.99 and top-10 overlap 0.8 -> 0.9 when it stays fp32, at the same speed.

Why this path (measured on torch 2.13 CPU, docs/local.md "int8 on CPU"): torchao's
``Int8DynamicActivationInt8WeightConfig`` — the replacement torch's deprecation notice points at
— runs 0.3-0.4x the fp32 speed in eager mode on x86 (and ``Int8WeightOnlyConfig`` 0.6-0.7x); it
is only fast under ``torch.compile``, which compiles per batch shape (85 s for the first one)
and does not fit token-budget batches of changing shapes. ``quantize_dynamic`` is deprecated
(a ``DeprecationWarning`` on import) but present and working on torch 2.13 and is the path that
delivers the 1.4-2.4x; its warnings are silenced here and nowhere else. When a future torch
removes it, ``quantize="int8"`` raises :class:`UnsupportedFeatureError` naming the torch version,
and the fp32 default is unaffected.

CPU only, fp32 only: the quantised GEMMs exist for CPU tensors and take fp32 activations.
:func:`check_quantize_request` refuses other devices / dtypes before any weight is loaded.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Literal

from rerank_integrations.errors import RerankInputError, UnsupportedFeatureError
from rerank_integrations.validation import choice_value

__all__ = [
    "FP32_LINEARS",
    "QUANTIZE_MODES",
    "Quantize",
    "check_quantize_device",
    "check_quantize_request",
    "parse_quantize",
    "quantize_runner",
]

Quantize = Literal["int8"]
QUANTIZE_MODES: tuple[Quantize, ...] = ("int8",)

_DEVICE_TYPE = re.compile(r"[a-z]+")

#: names (last part) of linear layers that stay fp32 under int8: the gated MLP's down projection
#: (Qwen2/Qwen3/Llama/Mistral ``down_proj``; see the module docstring).
FP32_LINEARS = frozenset({"down_proj"})


def parse_quantize(value: object) -> Quantize | None:
    """``None`` (fp32, the default) or ``"int8"`` (a non-str is a wrong type, another str a
    bad value)."""
    if value is None:
        return None
    choice_value("quantize", value, QUANTIZE_MODES)
    return "int8"


def check_quantize_request(quantize: str | None, device: str | None, dtype: str | None) -> None:
    """Refuse, before anything loads, int8 on an explicit non-CPU device or in a non-fp32
    dtype (``RerankInputError`` naming ``quantize``)."""
    if quantize is None:
        return
    if device is not None:
        match = _DEVICE_TYPE.match(device)
        check_quantize_device(quantize, match[0] if match else device)
    if dtype is not None and dtype != "float32":
        raise RerankInputError(
            "quantize",
            f"quantize={quantize!r} runs fp32 activations through int8 GEMMs; it cannot be "
            f"combined with dtype={dtype!r} (drop dtype or pass dtype='float32')",
        )


def check_quantize_device(quantize: str | None, device_type: str) -> None:
    """``RerankInputError`` naming ``quantize`` unless ``device_type`` is ``"cpu"`` (called
    again once the automatic device is known, still before the weights load)."""
    if quantize is not None and device_type != "cpu":
        raise RerankInputError(
            "quantize",
            f"quantize={quantize!r} is CPU only (dynamic int8 GEMMs), but the device is "
            f"{device_type!r}; pass device='cpu', or drop quantize (on an accelerator bf16 is "
            "the fast path)",
        )


def _body(module: Any, torch: Any) -> Any:
    """The part of a runner's module to quantise: a sequence classifier's encoder (its head
    stays fp32), else the module itself (the causal runners already hold the body only)."""
    base = getattr(module, "base_model", None)
    if isinstance(base, torch.nn.Module) and base is not module:
        return base
    return module


def quantize_runner(torch: Any, runner: Any, quantize: str) -> None:
    """Quantise the ``nn.Linear`` layers of ``runner.module`` in place (see the module
    docstring). ``UnsupportedFeatureError`` for a runner without a torch module, or a torch
    without ``quantize_dynamic``."""
    if quantize != "int8":  # parse_quantize admits nothing else
        raise RerankInputError("quantize", f"unknown mode {quantize!r}")
    module = getattr(runner, "module", None)
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedFeatureError(
            f"quantize={quantize!r} needs a runner holding a torch module (.module); "
            f"{type(runner).__name__} has none"
        )
    ao = getattr(getattr(torch, "ao", None), "quantization", None)
    quantize_dynamic = getattr(ao, "quantize_dynamic", None)
    if quantize_dynamic is None:
        raise UnsupportedFeatureError(
            f"quantize={quantize!r} uses torch.ao.quantization.quantize_dynamic, which torch "
            f"{torch.__version__} no longer has; use the fp32 default (quantize=None)"
        )
    with warnings.catch_warnings():
        # torch.ao.quantization and its quantised tensors are deprecated (warned on every
        # call) in favour of torchao, whose CPU int8 path is slower than fp32 in eager mode.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        body = _body(module, torch)
        names = {
            name
            for name, sub in body.named_modules()
            if isinstance(sub, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in FP32_LINEARS
        }
        with torch.no_grad():
            quantize_dynamic(body, names, dtype=torch.qint8, inplace=True)

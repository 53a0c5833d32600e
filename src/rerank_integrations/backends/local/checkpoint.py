"""The checkpoint being loaded, as a format's ``build`` sees it (:class:`Checkpoint`).

:func:`~rerank_integrations.backends.local.loading.load_model` reads the config and the
tokenizer, chooses device, dtype and attention, and hands a :class:`Checkpoint` to the format's
``build``; its methods load the weights under those settings and the safety switches:
``use_safetensors=True`` unless ``allow_pickle=True``, repository code only if
``trust_remote_code=True``, eager attention when the automatic choice is unavailable.

A leaf of the local backend: it imports no format (the formats import it), and torch /
transformers only arrive as the modules the loader put in the :class:`Checkpoint`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_integrations.backends.local.tokenizer import HFTextEncoder, PairTemplate
from rerank_integrations.errors import ModelLoadError
from rerank_integrations.extras import import_extra

logger = logging.getLogger(__name__)

__all__ = ["Checkpoint", "load_error"]

_FEATURE = "LocalReranker"


def _dtype_kwarg(transformers: Any) -> str:
    """``dtype`` (transformers >= 4.56, the only spelling in 5.x) or ``torch_dtype`` (older)."""
    major, minor = (int(p) for p in str(transformers.__version__).split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def load_error(model: str, exc: Exception, *, allow_pickle: bool) -> ModelLoadError:
    """A :class:`ModelLoadError` for a failed load of ``model``, with a hint when the cause is
    the safety switches (pickle weights, repository code)."""
    text = str(exc)
    hint = ""
    if not allow_pickle and ("safetensors" in text or ".bin" in text or "pytorch_model" in text):
        hint = (
            " Only safetensors weights are loaded by default; pass allow_pickle=True to load "
            "pickle (.bin) weights, and only from a source you trust."
        )
    elif "trust_remote_code" in text:
        hint = " Pass trust_remote_code=True only if you trust the repository's code."
    return ModelLoadError(f"could not load {model!r}: {text}{hint}")


def _from_pretrained(
    auto_cls: Any, model: str, kwargs: dict[str, Any], *, allow_pickle: bool, explicit_attn: bool
) -> Any:
    try:
        return auto_cls.from_pretrained(model, **kwargs)
    except (ValueError, ImportError) as exc:
        if (
            explicit_attn
            or kwargs.get("attn_implementation") == "eager"
            or ("attn" not in str(exc).lower() and "attention" not in str(exc).lower())
        ):
            raise load_error(model, exc, allow_pickle=allow_pickle) from exc
        logger.info(
            "attention %s unavailable (%s); using eager", kwargs["attn_implementation"], exc
        )
        return _from_pretrained(
            auto_cls,
            model,
            {**kwargs, "attn_implementation": "eager"},
            allow_pickle=allow_pickle,
            explicit_attn=True,
        )
    except OSError as exc:
        raise load_error(model, exc, allow_pickle=allow_pickle) from exc


def _resolve_weight_files(model: str, revision: str | None, allow_pickle: bool) -> list[Path]:
    """The safetensors files (or, with allow_pickle, .bin files) of a local dir or hub repo."""
    names = ["model.safetensors", "model.safetensors.index.json"]
    if allow_pickle:
        names += ["pytorch_model.bin", "pytorch_model.bin.index.json"]
    if os.path.isdir(model):
        root = Path(model)
        for name in names:
            if (root / name).is_file():
                return _expand_index(root / name, lambda f: root / f)
        raise ModelLoadError(
            f"no {'weights' if allow_pickle else 'safetensors weights'} in {model!r}"
            + ("" if allow_pickle else " (pass allow_pickle=True to load .bin files)")
        )
    hub = import_extra("huggingface_hub", extra="local", feature=_FEATURE)
    errors = []
    for name in names:
        try:
            path = Path(hub.hf_hub_download(model, name, revision=revision))
        except Exception as exc:  # this candidate file is missing: try the next one
            errors.append(f"{name}: {exc}")
            continue
        return _expand_index(path, lambda f: Path(hub.hf_hub_download(model, f, revision=revision)))
    raise ModelLoadError(f"no loadable weights found for {model!r}: " + "; ".join(errors))


def _expand_index(path: Path, fetch: Any) -> list[Path]:
    if not path.name.endswith(".index.json"):
        return [path]
    index = json.loads(path.read_text(encoding="utf-8"))
    return [fetch(f) for f in sorted(set(index["weight_map"].values()))]


def _load_state_dict(files: Sequence[Path]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for f in files:
        if f.suffix == ".safetensors":
            st = import_extra("safetensors.torch", extra="local", feature=_FEATURE)
            state.update(st.load_file(str(f)))
        else:
            torch = import_extra("torch", extra="local", feature=_FEATURE)
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return state


@dataclass(eq=False)
class Checkpoint:
    """A checkpoint being loaded, as a format's ``build`` sees it: what was read from it
    (``config``, the tokenizer view ``encoder``, positions, special ids) and the settings chosen
    for it (``device``, ``dtype``, ``attn_implementation``, the safety switches). Its methods
    load the weights under those settings; ``torch`` and ``transformers`` are the modules."""

    model: str
    config: Mapping[str, Any]
    encoder: HFTextEncoder
    torch: Any
    transformers: Any
    device: Any
    dtype: Any
    attn_implementation: str
    max_positions: int
    tokenizer_max_length: int | None
    pad_token_id: int | None
    eos_token_id: int | None
    revision: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    explicit_attn: bool = False

    def from_pretrained(self, auto_class: str) -> Any:
        """``transformers.<auto_class>.from_pretrained(model)`` in the chosen dtype and attention
        (eager when the automatic choice is unavailable), safetensors only unless
        ``allow_pickle``, repository code only if trusted. The module stays on the CPU."""
        kwargs: dict[str, Any] = {
            _dtype_kwarg(self.transformers): self.dtype,
            "attn_implementation": self.attn_implementation,
            "trust_remote_code": self.trust_remote_code,
            "use_safetensors": None if self.allow_pickle else True,
            "revision": self.revision,
        }
        return _from_pretrained(
            getattr(self.transformers, auto_class),
            self.model,
            kwargs,
            allow_pickle=self.allow_pickle,
            explicit_attn=self.explicit_attn,
        )

    def state_dict(self) -> dict[str, Any]:
        """The raw weights (safetensors; pickle too with ``allow_pickle``), for converters."""
        files = _resolve_weight_files(self.model, self.revision, self.allow_pickle)
        return _load_state_dict(files)

    def pair_template(self) -> PairTemplate:
        """How the tokenizer encodes a text pair (cross-encoders)."""
        return self.encoder.pair_template()

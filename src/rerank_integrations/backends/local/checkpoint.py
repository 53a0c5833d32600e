"""The checkpoint being loaded, as a format's ``build`` sees it (:class:`Checkpoint`).

:func:`~rerank_integrations.backends.local.loading.load_model` reads the config and the
tokenizer, chooses device, dtype and attention, and hands a :class:`Checkpoint` to the format's
``build``; its methods load the weights under those settings and the safety switches:
``use_safetensors=True`` unless ``allow_pickle=True``, repository code only if
``trust_remote_code=True``, eager attention when the automatic choice is unavailable.

The files are untrusted input: every failure to read them (a truncated or garbage weights file,
a config whose shapes do not match the weights, a tokenizer file that is not JSON) is a
:class:`~rerank_integrations.errors.ModelLoadError` naming the file and the reason
(:func:`load_error`, :mod:`.files`), caught around the one library call that reads them
(:func:`load_failures`), never around a format's own code.

A leaf of the local backend: it imports no format (the formats import it), and torch /
transformers only arrive as the modules the loader put in the :class:`Checkpoint`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rerank_integrations.backends.local.files import (
    CONFIG_FILE,
    WEIGHT_FILES,
    broken_json_file,
    file_label,
    json_problem,
    present_files,
)
from rerank_integrations.backends.local.tokenizer import HFTextEncoder, PairTemplate
from rerank_integrations.errors import ModelLoadError
from rerank_integrations.extras import import_extra

logger = logging.getLogger(__name__)

__all__ = ["Checkpoint", "failure_reason", "load_error", "load_failures", "mismatch_error"]

_FEATURE = "LocalReranker"


def _dtype_kwarg(transformers: Any) -> str:
    """``dtype`` (transformers >= 4.56, the only spelling in 5.x) or ``torch_dtype`` (older)."""
    major, minor = (int(p) for p in str(transformers.__version__).split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


@functools.cache
def load_failures() -> tuple[type[BaseException], ...]:
    """What transformers, tokenizers, safetensors and torch raise for a missing, malformed or
    mismatched model file: the types caught around the call that reads one (and turned into a
    :class:`ModelLoadError`, the original chained as its cause). Python's json parser raises
    ``RecursionError`` on deep nesting; transformers' parsers ``KeyError`` / ``TypeError`` /
    ``AttributeError`` on a JSON value of the wrong shape; torch ``RuntimeError`` on a size
    mismatch or a truncated archive; safetensors its ``SafetensorError``; huggingface_hub's
    strict config classes a ``StrictDataclassError``."""
    types: list[type[BaseException]] = [
        OSError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        RuntimeError,
        RecursionError,
        EOFError,
        pickle.UnpicklingError,
    ]
    safetensors = import_extra("safetensors", extra="local", feature=_FEATURE)
    types.append(safetensors.SafetensorError)
    hub_errors = import_extra("huggingface_hub.errors", extra="local", feature=_FEATURE)
    strict = getattr(hub_errors, "StrictDataclassError", None)
    if isinstance(strict, type) and issubclass(strict, BaseException):
        types.append(strict)
    return tuple(types)


def failure_reason(exc: BaseException) -> str:
    """The reason a load failed, as a message shows it (the exception's type and text)."""
    text = str(exc)
    if isinstance(exc, RecursionError):
        return f"a file is nested too deeply to parse ({text})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_error(
    model: str,
    exc: BaseException,
    *,
    allow_pickle: bool,
    part: str = "",
    files: Sequence[str] = (),
) -> ModelLoadError:
    """A :class:`ModelLoadError` for a failed load of ``model`` (``part``: e.g. "the weights")
    naming the file at fault and the reason: the first of the JSON ``files`` of a local
    directory that :func:`~.files.json_problem` refuses, else those of ``files`` present and
    the exception. With a hint when the cause is the safety switches (pickle weights,
    repository code)."""
    text = str(exc)
    broken = broken_json_file(model, files)
    if broken is not None:
        reason = f"{broken[0]}: {broken[1]}"
    else:
        shown = present_files(model, files)
        reason = (f"{', '.join(shown)}: " if shown else "") + failure_reason(exc)
    what = f"{part} of {model!r}" if part else repr(model)
    hint = ""
    if not allow_pickle and ("safetensors" in text or ".bin" in text or "pytorch_model" in text):
        hint = (
            " Only safetensors weights are loaded by default; pass allow_pickle=True to load "
            "pickle (.bin) weights, and only from a source you trust."
        )
    elif "trust_remote_code" in text:
        hint = " Pass trust_remote_code=True only if you trust the repository's code."
    return ModelLoadError(f"could not load {what}: {reason}{hint}")


#: the files ``from_pretrained`` of a model class reads (the weights and their config).
_MODEL_FILES = (*WEIGHT_FILES, CONFIG_FILE)


def _model_files(model: str) -> Sequence[str]:
    """The files a failed ``from_pretrained`` names: the weights present and their config (no
    config alone when there are no weights: the error then says which file is missing)."""
    return _MODEL_FILES if present_files(model, WEIGHT_FILES) else WEIGHT_FILES


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
            raise load_error(
                model, exc, allow_pickle=allow_pickle, part="the model", files=_model_files(model)
            ) from exc
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
    except load_failures() as exc:
        raise load_error(
            model, exc, allow_pickle=allow_pickle, part="the model", files=_model_files(model)
        ) from exc


def _mismatch_name(entry: object) -> str:
    return str(entry[0] if isinstance(entry, tuple) else entry)


def _mismatch_text(entry: object) -> str:
    if isinstance(entry, tuple) and len(entry) == 3:
        name, ckpt, expected = entry
        return f"{name} is {list(ckpt)} in the weights but {list(expected)} in the network"
    return f"{_mismatch_name(entry)} has another shape in the weights than in the network"


def mismatch_error(
    model: str, mismatched: Sequence[object], weight_files: Sequence[str]
) -> ModelLoadError:
    """The weights of ``model`` (in those of ``weight_files`` present) do not fit the network
    its config describes. ``mismatched`` as transformers' loading info reports it: entries
    ``(parameter, shape in the weights, shape the config gives)`` (transformers 5) or the
    parameter names alone (transformers 4)."""
    rows = sorted(mismatched, key=_mismatch_name)
    shown = "; ".join(_mismatch_text(entry) for entry in rows[:3])
    more = f" (and {len(rows) - 3} more)" if len(rows) > 3 else ""
    weights = ", ".join(present_files(model, weight_files)) or f"the weights of {model!r}"
    return ModelLoadError(
        f"could not load {model!r}: {weights} does not match {file_label(model, CONFIG_FILE)}: "
        f"{shown}{more}. The config does not describe these weights (num_labels, hidden_size, "
        "vocab_size, ...)."
    )


def _resolve_weight_files(model: str, revision: str | None, allow_pickle: bool) -> list[Path]:
    """The safetensors files (or, with allow_pickle, .bin files) of a local dir or hub repo."""
    names = list(WEIGHT_FILES if allow_pickle else WEIGHT_FILES[:2])
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
    """``[path]``, or for a shard index the shards it names (each a plain file name or a
    relative path inside the model, checked before it is fetched)."""
    if not path.name.endswith(".index.json"):
        return [path]
    problem = json_problem(path)
    if problem is not None:
        raise ModelLoadError(f"could not read the weights index {path}: {problem}")
    index = json.loads(path.read_bytes())
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelLoadError(f"the weights index {path} has no 'weight_map' object")
    shards = set(weight_map.values())
    for shard in shards:
        parts = PurePosixPath(shard).parts if isinstance(shard, str) else ()
        if not parts or parts[0] == "/" or ".." in parts or "\\" in shard:
            raise ModelLoadError(
                f"the weights index {path} names a shard outside the model: {shard!r}"
            )
    return [fetch(f) for f in sorted(shards)]


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
        ``allow_pickle``, repository code only if trusted. The module stays on the CPU.

        A weight whose shape differs from the one the config gives (``num_labels: 3`` over a
        one-label head) is a :class:`ModelLoadError` listing them (transformers is asked for
        its loading report instead of raising its own ``RuntimeError``); so is any unreadable
        file (:func:`load_error`)."""
        kwargs: dict[str, Any] = {
            _dtype_kwarg(self.transformers): self.dtype,
            "attn_implementation": self.attn_implementation,
            "trust_remote_code": self.trust_remote_code,
            "use_safetensors": None if self.allow_pickle else True,
            "revision": self.revision,
            "ignore_mismatched_sizes": True,  # refused below, never used re-initialised
            "output_loading_info": True,
        }
        module, info = _from_pretrained(
            getattr(self.transformers, auto_class),
            self.model,
            kwargs,
            allow_pickle=self.allow_pickle,
            explicit_attn=self.explicit_attn,
        )
        mismatched = list(info.get("mismatched_keys") or ())
        if mismatched:
            names = WEIGHT_FILES if self.allow_pickle else WEIGHT_FILES[:2]
            raise mismatch_error(self.model, mismatched, names)
        return module

    def state_dict(self) -> dict[str, Any]:
        """The raw weights (safetensors; pickle too with ``allow_pickle``), for converters; an
        unreadable file is a :class:`ModelLoadError` naming it."""
        names = WEIGHT_FILES if self.allow_pickle else WEIGHT_FILES[:2]
        try:
            return _load_state_dict(
                _resolve_weight_files(self.model, self.revision, self.allow_pickle)
            )
        except load_failures() as exc:
            raise load_error(
                self.model, exc, allow_pickle=self.allow_pickle, part="the weights", files=names
            ) from exc

    def pair_template(self) -> PairTemplate:
        """How the tokenizer encodes a text pair (cross-encoders)."""
        return self.encoder.pair_template()

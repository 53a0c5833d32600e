"""The files of a local model as error messages name them, and what is wrong with a JSON one.

A checkpoint directory is untrusted input: its ``config.json`` may be nested 100,000 levels deep
or not be JSON at all, its weights may be truncated or not match the config. Every such failure
is a :class:`~rerank_integrations.errors.ModelLoadError` that names the file and the reason
(docs/reliability.md "Untrusted model files"); this module finds the file at fault.

- :func:`file_label`: a file of a model as a message shows it (its path in a local directory).
- :func:`present_files`: the paths of those of some files that a local directory holds.
- :func:`json_problem` / :func:`config_problem`: why a JSON file or a parsed config cannot be a
  model file (not readable, not JSON, not an object, nested more than :data:`MAX_JSON_DEPTH`
  levels), counted without recursion.
- :func:`broken_json_file`: the first of some JSON files of a local directory with a problem.

A leaf of the local backend: no torch, no transformers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_FILE",
    "MAX_JSON_DEPTH",
    "TOKENIZER_FILES",
    "WEIGHT_FILES",
    "broken_json_file",
    "config_problem",
    "file_label",
    "json_problem",
    "missing_local_model",
    "nesting_depth",
    "present_files",
]

#: the most levels of nested objects / arrays a model's JSON file may have. Real configs and
#: tokenizer files nest a few levels (a multimodal config with a rope table: 4); transformers
#: recurses once or twice per level, so a few hundred levels already exhaust Python's stack.
MAX_JSON_DEPTH = 100

CONFIG_FILE = "config.json"
#: the JSON files a tokenizer loads (``config.json`` too: transformers reads its model type).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    CONFIG_FILE,
)
#: the weight files, safetensors first (pickle ``.bin`` ones load only with ``allow_pickle``).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _local_dir(model: str) -> Path | None:
    return Path(model) if os.path.isdir(model) else None


def file_label(model: str, name: str) -> str:
    """``name`` of ``model`` as a message shows it: its path in a local directory, else
    ``config.json of 'org/model'``."""
    root = _local_dir(model)
    return str(root / name) if root is not None else f"{name} of {model!r}"


def present_files(model: str, names: Sequence[str]) -> list[str]:
    """The paths of those of ``names`` that the local directory ``model`` holds (none for a
    hub id, whose files are not looked up here: the hub's own errors name them)."""
    root = _local_dir(model)
    if root is None:
        return []
    return [str(root / n) for n in names if (root / n).is_file()]


def nesting_depth(value: object, limit: int = MAX_JSON_DEPTH) -> int:
    """How many levels of dicts / lists ``value`` nests (0 for a scalar, 1 for a flat object),
    counted level by level without recursion; counting stops at ``limit + 1``."""
    depth = 0
    level: list[dict[Any, Any] | list[Any]] = [value] if isinstance(value, dict | list) else []
    while level and depth <= limit:
        depth += 1
        deeper: list[dict[Any, Any] | list[Any]] = []
        for item in level:
            children: Iterable[object] = item.values() if isinstance(item, dict) else item
            deeper.extend(c for c in children if isinstance(c, dict | list))
        level = deeper
    return depth


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def config_problem(value: object) -> str | None:
    """Why a parsed JSON value cannot be a model file (not an object, or nested more than
    :data:`MAX_JSON_DEPTH` levels), or ``None``."""
    if not isinstance(value, dict):
        return f"it holds {_json_kind(value)}, not a JSON object"
    if nesting_depth(value) > MAX_JSON_DEPTH:
        return f"it is nested more than {MAX_JSON_DEPTH} levels deep (a model file nests a few)"
    return None


def json_problem(path: Path) -> str | None:
    """Why the JSON file at ``path`` cannot be a model file (it cannot be read, is not JSON,
    is too deep to parse, or :func:`config_problem`), or ``None``."""
    try:
        value = json.loads(path.read_bytes())
    except RecursionError:
        return "it is nested too deeply to parse"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return f"it is not valid JSON ({exc})"
    except OSError as exc:
        return f"it cannot be read ({exc})"
    return config_problem(value)


def broken_json_file(model: str, names: Sequence[str]) -> tuple[str, str] | None:
    """``(path, problem)`` of the first of the JSON files ``names`` that the local directory
    ``model`` holds and :func:`json_problem` refuses; ``None`` when all are fine (or
    ``model`` is a hub id)."""
    root = _local_dir(model)
    if root is None:
        return None
    for name in names:
        path = root / name
        if name.endswith(".json") and path.is_file():
            problem = json_problem(path)
            if problem is not None:
                return str(path), problem
    return None


_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def missing_local_model(model: str) -> str | None:
    """Why ``model``, written as a local path, cannot be a model (``None`` when it is a
    directory, or when it reads as a hub id ``org/name``): the day-one mistake
    ``LocalReranker("./ctxl-1b")`` says "no such directory", not the hub's "Repo id must be in
    the form ...". A path is what starts with ``/``, ``./``, ``../``, ``~`` or a drive letter,
    holds a backslash, or has more than one ``/``."""
    pathlike = (
        model.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or model in (".", "..")
        or "\\" in model
        or _DRIVE.match(model) is not None
        or model.count("/") > 1
    )
    path = Path(os.path.expanduser(model))
    if not pathlike or path.is_dir():
        return None
    if path.exists():
        return (
            f"{model!r} is a file, not a model directory (a local model is a directory "
            "holding config.json, the tokenizer files and the weights)"
        )
    return (
        f"no such directory {model!r} (resolved to {str(path.resolve())!r}); a local model is "
        "a directory holding config.json, the tokenizer files and the weights, and a hub id "
        "has the form 'org/name'"
    )

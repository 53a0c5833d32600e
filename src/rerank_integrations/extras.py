"""Lazy imports of optional dependencies with an error that names the install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from rerank_integrations.errors import MissingExtraError


def import_extra(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install ...[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingExtraError(extra, feature, missing) from exc

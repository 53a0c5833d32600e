"""A local Ray cluster for the scale-out tests (docs/scale-out.md): ``ray.init(num_cpus=2)``
once for this folder, shut down after it. The test environment installs the ``[ray]`` extra,
so these tests run in CI (no skip when Ray is missing: the import fails loudly)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[Any]:
    """Ray, connected to a fresh 2-CPU local cluster; yields the ``ray`` module."""
    import ray

    if ray.is_initialized():  # left by another test: start from a known cluster
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()

"""Real rerank servers for the tests in this directory: vLLM (CPU build) and Infinity.

The servers start together when the first test here needs one (they are not started at the
beginning of the session: their ~2 minutes of start-up on 2 cores would slow the timing tests
of the rest of the suite), and are stopped by PID when the session ends (also on failure).
Each needs its own virtual environment (``make servers-env``): ``RERANK_VLLM_PYTHON`` and
``RERANK_INFINITY_BIN`` name them. Without those variables the tests here are skipped,
unless ``RERANK_REQUIRE_SERVERS=1`` (``make test`` and CI), in which case they fail, with the
server's log in the message when it could not start.

The tiny models are the suite's own (``tests/helpers/tiny_models.py``) with head_dim 32: the
CPU attention of vLLM does not take the default tiny models' head_dim 16.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.real_servers import (
    API_KEY,
    INFINITY_BATCH,
    INFINITY_CROSS_ENCODER,
    QWEN3_MAX_LEN,
    VLLM_CROSS_ENCODER,
    VLLM_CTXL_RERANK_V2,
    VLLM_MXBAI_V2,
    VLLM_QWEN3_RERANKER,
    XLMR_MAX_LEN,
    Served,
    ServeRecipe,
    ServerProcess,
    ServerStartError,
    free_port,
    server_argv,
)

logger = logging.getLogger(__name__)

VLLM_ENV = "RERANK_VLLM_PYTHON"
INFINITY_ENV = "RERANK_INFINITY_BIN"
REQUIRE_ENV = "RERANK_REQUIRE_SERVERS"
START_TIMEOUT = float(os.environ.get("RERANK_SERVER_START_TIMEOUT", "900"))
"""Seconds a server may take to answer /health (vLLM: ~2 min alone on 2 busy cores)."""


class Farm:
    """Builds the tiny models and starts every server once per session, in the background."""

    def __init__(self) -> None:
        self.servers: dict[str, Served] = {}
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.workdir: Path | None = None  # created when the servers start, removed at stop

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._boot, daemon=True)
                self._thread.start()

    def _boot(self) -> None:
        try:
            from helpers.tiny_models import (
                make_tiny_bert,
                make_tiny_qwen2,
                make_tiny_qwen3,
                make_tiny_xlmr,
            )

            self.workdir = workdir = Path(tempfile.mkdtemp(prefix="rerank-servers-"))
            xlmr = make_tiny_xlmr(workdir / "tiny-xlm-roberta-cross-encoder", num_heads=2)
            bert = make_tiny_bert(workdir / "tiny-bert-cross-encoder", num_heads=2)
            qwen3 = make_tiny_qwen3(
                workdir / "tiny-Qwen3-Reranker", seed=3, num_heads=2, num_kv_heads=1
            )
            mxbai = make_tiny_qwen2(workdir / "tiny-mxbai-rerank-v2", num_heads=2, num_kv_heads=1)
            ctxl = make_tiny_qwen3(
                workdir / "tiny-ctxl-rerank-v2-instruct-multilingual",
                seed=1,
                num_heads=2,
                num_kv_heads=1,
            )
            vllm_python = os.environ.get(VLLM_ENV)
            infinity = os.environ.get(INFINITY_ENV)
            plans: list[tuple[str, str | None, ServeRecipe, Path, str, int, dict[str, str]]] = [
                ("vllm-xlmr", vllm_python, VLLM_CROSS_ENCODER, xlmr, "tiny-xlmr", XLMR_MAX_LEN, {}),
                ("vllm-bert", vllm_python, VLLM_CROSS_ENCODER, bert, "tiny-bert", XLMR_MAX_LEN, {}),
                (
                    "vllm-qwen3",
                    vllm_python,
                    VLLM_QWEN3_RERANKER,
                    qwen3,
                    "tiny-qwen3",
                    QWEN3_MAX_LEN,
                    {},
                ),
                (
                    "vllm-mxbai",
                    vllm_python,
                    VLLM_MXBAI_V2,
                    mxbai,
                    "tiny-mxbai",
                    QWEN3_MAX_LEN,
                    {},
                ),
                (
                    "vllm-ctxl",
                    vllm_python,
                    VLLM_CTXL_RERANK_V2,
                    ctxl,
                    "tiny-ctxl",
                    QWEN3_MAX_LEN,
                    {},
                ),
                (
                    "infinity-xlmr",
                    infinity,
                    INFINITY_CROSS_ENCODER,
                    xlmr,
                    "tiny-xlmr",
                    0,
                    {"INFINITY_MAX_CLIENT_BATCH_SIZE": str(INFINITY_BATCH)},
                ),
                (  # a cross-encoder with segment ids (token_type_ids 1 for the document)
                    "infinity-bert",
                    infinity,
                    INFINITY_CROSS_ENCODER,
                    bert,
                    "tiny-bert",
                    0,
                    {"INFINITY_MAX_CLIENT_BATCH_SIZE": str(INFINITY_BATCH)},
                ),
            ]
            for name, executable, recipe, model_dir, served, max_len, env in plans:
                if not executable:
                    continue
                port = free_port()
                argv = server_argv(
                    recipe,
                    executable=executable,
                    model_dir=model_dir,
                    served_name=served,
                    port=port,
                    max_model_len=max_len,
                    api_key=API_KEY,
                )
                env = {
                    **env,
                    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache (the default is 4)
                    "HF_HUB_OFFLINE": "1",
                    "VLLM_NO_USAGE_STATS": "1",
                    "DO_NOT_TRACK": "1",
                    "INFINITY_ANONYMOUS_USAGE_STATS": "0",
                }
                process = ServerProcess(name, argv, port, workdir / f"{name}.log", env)
                process.start()
                self.servers[name] = Served(process, model_dir, served)
        except Exception as exc:  # reported by every test that needs a server
            logger.exception("could not start the test servers")
            self.error = f"{type(exc).__name__}: {exc}"

    def get(self, name: str, env_var: str) -> Served:
        if not os.environ.get(env_var):
            _missing(env_var)
        self.start()
        assert self._thread is not None
        self._thread.join()
        if self.error is not None:
            pytest.fail(f"the test servers could not be set up: {self.error}")
        served = self.servers.get(name)
        if served is None:
            _missing(env_var)
        assert served is not None
        try:
            served.process.wait_ready(START_TIMEOUT)
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        return served

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
        for served in self.servers.values():
            served.process.stop()
        self.servers.clear()
        if self.workdir is not None:  # failures already quoted the logs
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _missing(env_var: str) -> None:
    message = f"{env_var} is not set: run `make servers-env` and `make test`"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
    pytest.skip(message)


_FARM = Farm()


@pytest.fixture(scope="session")
def server_farm() -> Iterator[Farm]:
    try:
        yield _FARM
    finally:
        _FARM.stop()


@pytest.fixture(scope="session")
def vllm_xlmr(server_farm: Farm) -> Served:
    return server_farm.get("vllm-xlmr", VLLM_ENV)


@pytest.fixture(scope="session")
def vllm_bert(server_farm: Farm) -> Served:
    return server_farm.get("vllm-bert", VLLM_ENV)


@pytest.fixture(scope="session")
def vllm_qwen3(server_farm: Farm) -> Served:
    return server_farm.get("vllm-qwen3", VLLM_ENV)


@pytest.fixture(scope="session")
def vllm_mxbai(server_farm: Farm) -> Served:
    return server_farm.get("vllm-mxbai", VLLM_ENV)


@pytest.fixture(scope="session")
def vllm_ctxl(server_farm: Farm) -> Served:
    return server_farm.get("vllm-ctxl", VLLM_ENV)


@pytest.fixture(scope="session")
def infinity_xlmr(server_farm: Farm) -> Served:
    return server_farm.get("infinity-xlmr", INFINITY_ENV)


@pytest.fixture(scope="session")
def infinity_bert(server_farm: Farm) -> Served:
    return server_farm.get("infinity-bert", INFINITY_ENV)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the servers even when no fixture of this directory ran (e.g. -x stopped early)."""
    _FARM.stop()

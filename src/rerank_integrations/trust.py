"""Which reranker settings a config from data may hold: one rule for the adapters, the CLI and
:meth:`Reranker.from_config <rerank_integrations.base.Reranker.from_config>`.

Settings a saved config can carry (an adapter's ``reranker_kwargs`` or ``reranker=`` dict, as
LangChain ``loads``, LlamaIndex ``from_dict``/``from_json`` or a Haystack YAML restore them; a
``to_config()`` dict given to ``Reranker.from_config``; a CLI ``--config`` file) are checked by
:func:`check_untrusted_settings` before anything is imported or built. They may not:

- carry an ``api_key`` (a config is serialised and shown in ``repr``);
- switch on ``trust_remote_code`` / ``allow_pickle`` (:data:`UNSAFE_SETTINGS`: they run code or
  unpickle data);
- choose which environment variable the key is read from (:func:`check_key_variable`):
  ``api_key_env`` may only name the wire format's own variable (``CONTEXTUAL_API_KEY``, ...)
  with the format's public host, a variable the remote backend reads there by itself anyway.
  Anything else would let the config send any secret of the process
  (``AWS_SECRET_ACCESS_KEY``...) as ``Bearer ...`` to a host of its choosing.

Code opts in explicitly: a reranker built in code and passed to an adapter as ``reranker=``, or
``Reranker.from_config(config, trusted=True)``. Every refusal is a :class:`RerankInputError`
naming the field (``config['api_key_env']``), never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rerank_integrations.errors import RerankInputError, RerankTypeError

__all__ = ["OPT_IN", "UNSAFE_SETTINGS", "check_key_variable", "check_untrusted_settings"]

UNSAFE_SETTINGS: tuple[str, ...] = ("trust_remote_code", "allow_pickle")
"""Reranker settings that may run code or unpickle data: never switched on from a config."""

OPT_IN = (
    "build the reranker in code and pass it to the adapter as reranker=..., or load a config "
    "you wrote yourself with Reranker.from_config(config, trusted=True) (on the command line: "
    "--trust-config)"
)
"""How code opts in to what a config from data may not do (ends every refusal's message)."""


def check_untrusted_settings(
    settings: Mapping[str, Any],
    *,
    field: str,
    defaults: Mapping[str, Any] | None = None,
    how: str = OPT_IN,
) -> None:
    """Refuse what a config from data may not hold (the module docstring's three rules).

    ``settings`` is a config dict or an adapter's ``reranker_kwargs`` (``field`` names it);
    ``defaults`` are the settings it overrides when the reranker is built (an adapter's
    ``base_url`` and ``api_format``), read by the ``api_key_env`` rule; ``how`` says how to opt
    in. Raises :class:`RerankInputError` naming ``field[key]``, never quoting a value.
    """
    if settings.get("api_key") is not None:
        raise RerankInputError(
            f"{field}['api_key']",
            "an API key is never taken from a config (configs are serialised and shown in "
            "repr): give it to the adapter as api_key=... (masked, never serialised) or let the "
            f"backend read its environment variable; otherwise {how}",
        )
    for name in UNSAFE_SETTINGS:
        if settings.get(name) not in (None, False):
            raise RerankInputError(
                f"{field}[{name!r}]",
                f"{name} cannot be switched on from a config (a loaded config could run code or "
                f"unpickle data); to use it, {how} (e.g. LocalReranker(model, {name}=True))",
            )
    check_key_variable({**(defaults or {}), **settings}, field=field, how=how)


def check_key_variable(settings: Mapping[str, Any], *, field: str, how: str = OPT_IN) -> None:
    """The ``api_key_env`` rule alone, on settings as the backend will receive them.

    Absent or ``None`` is fine; otherwise it must name one of the wire format's own variables
    (``api_format``; ``None``: the default) with ``base_url`` unset or that format's public host.
    Anything else raises :class:`RerankInputError` naming ``field['api_key_env']``
    (:class:`RerankTypeError` for a non-str).
    """
    name = settings.get("api_key_env")
    if name is None:
        return
    where = f"{field}['api_key_env']"
    if not isinstance(name, str):
        raise RerankTypeError(where, f"must be a str or None, got {type(name).__name__}")
    # Imported here, when needed: the remote backend's package imports base, which imports us.
    from rerank_integrations.backends.remote.credentials import reads_by_itself
    from rerank_integrations.backends.remote.formats import FORMATS

    if reads_by_itself(settings.get("api_format"), settings.get("base_url"), name):
        return
    own = ", ".join(f"{n} ({f.name})" for f in FORMATS.values() for n in f.api_key_env)
    raise RerankInputError(
        where,
        "a config may not choose the environment variable the API key is read from (with "
        "base_url it could send any secret of this process to any host): only a wire format's "
        f"own variable with that format's public host is accepted ({own}; base_url unset). "
        f"To read another variable, {how}",
    )

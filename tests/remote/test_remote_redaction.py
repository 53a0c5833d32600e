"""The pure redaction rule (``redaction.Redactor``): whole secrets, 8+ character pieces of
them, and redaction before cutting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_integrations.backends.remote.formats import decode_json, error_message
from rerank_integrations.backends.remote.redaction import MIN_PARTIAL, Redactor
from rerank_integrations.errors import RemoteResponseError

KEY = "sk-live-7Hq2vX9pL4mN8rT1wZ6yB3cF5"


def leaks(text: str, secret: str = KEY) -> bool:
    return any(secret[i : i + MIN_PARTIAL] in text for i in range(len(secret) - MIN_PARTIAL + 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {KEY} here", "key *** here"),
        (f"{KEY}{KEY}", "******"),
        (f"Bearer {KEY[:12]}...", "Bearer ***..."),
        (f"...{KEY[-9:]}", "...***"),
        (f"tail {KEY[5:13]} x", "tail *** x"),  # exactly 8 characters
        (f"short {KEY[:7]} kept", f"short {KEY[:7]} kept"),  # 7: too short to mean anything
        ("nothing secret", "nothing secret"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert Redactor([KEY])(text) == expected


def test_short_secrets_only_whole_and_no_secrets_is_identity() -> None:
    assert Redactor(["abc"])("xabcx abx") == "x***x abx"
    assert Redactor([None, ""])("same") == "same"
    assert not Redactor([]).active and Redactor([KEY]).active
    assert KEY not in repr(Redactor([KEY]))


@pytest.mark.parametrize("offset", range(470, 505))
def test_redacted_before_the_cut(offset: int) -> None:
    text = "x" * offset + KEY + "y" * 200
    cut = Redactor([KEY]).cut(text, 500)
    assert len(cut) <= 500 and not leaks(cut)
    message = error_message('{"detail": "' + text + '"}', Redactor([KEY]))
    assert len(message) <= 500 and not leaks(message)


@given(st.text(max_size=300), st.integers(0, 300), st.integers(1, 120))
def test_no_piece_survives(prefix: str, split: int, limit: int) -> None:
    text = prefix[:split] + KEY + prefix[split:]
    redactor = Redactor([KEY])
    assert not leaks(redactor(text))
    assert not leaks(redactor.cut(text, limit)) and len(redactor.cut(text, limit)) <= limit


def test_decode_json_quotes_the_body_redacted() -> None:
    with pytest.raises(RemoteResponseError) as info:
        decode_json(f"<html>Authorization: Bearer {KEY}</html>", Redactor([KEY]))
    assert not leaks(str(info.value)) and "***" in str(info.value)

"""The HTTP transport's JSON codec (``freshd_client.wire``) against the ``json`` module.

The codec drives CPython's C scanner and encoder directly so that a ``freshd status``
does not import ``re``; it must give exactly the values and bytes ``json`` gives.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshd_client import wire

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def same(a: object, b: object) -> bool:
    """Equality that counts NaN equal to NaN, as a JSON round trip should."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_the_c_codec_is_in_use() -> None:
    """On CPython the fast path runs; were it silently off, the tests below prove little."""
    assert wire._CODEC is not None


@given(VALUES)
def test_dumps_gives_json_bytes(value: object) -> None:
    assert wire.dumps(value) == json.dumps(value, separators=(",", ":")).encode()


@given(VALUES, st.sampled_from(["", " ", "\n", "\r\n\t "]))
def test_loads_gives_json_values(value: object, pad: str) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=2)):
        raw = (pad + text + pad).encode()
        assert same(wire.loads(raw), json.loads(raw))


@pytest.mark.parametrize(
    "raw", [b"", b" ", b"{", b"[1,]", b'{"a":1} x', b"1 2", b"nul", b'"\\x"', b"\xff", b"[1]]"]
)
def test_loads_refuses_what_json_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        wire.loads(raw)


def test_dumps_refuses_what_json_refuses() -> None:
    for value in (object(), {1j: 1}, b"bytes"):
        with pytest.raises(TypeError):
            json.dumps(value)
        with pytest.raises(TypeError):
            wire.dumps(value)
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(ValueError):
        wire.dumps(looped)


def test_the_fallback_gives_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_CODEC", None)
    value = {"a": [1, 2.5, None, True, "é"], "b": {"c": -1}}
    assert wire.dumps(value) == json.dumps(value, separators=(",", ":")).encode()
    assert wire.loads(b' {"a": [1, "\\u00e9"]} ') == {"a": [1, "é"]}
    with pytest.raises(ValueError):
        wire.loads(b"[")

"""JSON for the HTTP transport through the C scanner and encoder, without importing ``json``.

``import json`` loads ``re`` (with ``enum`` and ``functools``) for patterns the C
accelerator does not use: ~6 ms of a ~20 ms ``freshd status``. CPython's ``_json``
module parses and encodes on its own given the few settings ``json`` passes it, so this
module hands them over directly and gives the same values as ``json.loads`` and
``json.dumps(obj, separators=(",", ":"))``. Where ``_json`` is missing (another Python)
or refuses the settings, it falls back to ``json``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms at start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"  # JSON's insignificant whitespace (RFC 8259 section 2)
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Settings:
    """The attributes ``_json.make_scanner`` reads: those of a default ``JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _refuse(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _c_codec() -> tuple[Callable[[str, int], Any], Callable[[object, int], Any]] | None:
    try:
        import _json

        scan = _json.make_scanner(_Settings())  # type: ignore[arg-type]  # duck-typed
        encode = _json.make_encoder(
            {}, _refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, True
        )
    except (ImportError, AttributeError, TypeError):
        return None
    return scan, encode


_CODEC = _c_codec()


def loads(raw: bytes) -> Any:
    """``json.loads(raw)`` for a UTF-8 body; ValueError for anything that is not JSON."""
    if _CODEC is None:
        import json

        return json.loads(raw)
    text = raw.decode("utf-8").strip(_WHITESPACE)  # UnicodeDecodeError is a ValueError
    try:
        value, end = _CODEC[0](text, 0)
    except StopIteration:
        raise ValueError("Expecting value: line 1 column 1 (char 0)") from None
    if end != len(text):
        raise ValueError(f"Extra data at char {end}")
    return value


def dumps(obj: object) -> bytes:
    """``json.dumps(obj, separators=(",", ":")).encode()``: compact, ASCII-only."""
    if _CODEC is None:
        import json

        return json.dumps(obj, separators=(",", ":")).encode()
    return "".join(_CODEC[1](obj, 0)).encode("ascii")

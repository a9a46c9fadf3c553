"""JSON on the hot path without the per-call set-up of json.dumps/json.loads (same output, same errors).

json.dumps builds a C encoder object on every call and json.loads detects the encoding and wraps the C scanner in
three Python calls; here both C objects are made once. Anything unusual (not UTF-8, whitespace around the value,
a syntax error) takes the standard json path, so results and error messages do not change.
"""

from __future__ import annotations

import json

try:
    from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
    from json.scanner import c_make_scanner as _c_make_scanner  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - not CPython
    _c_make_encoder = _c_make_scanner = None

if _c_make_encoder is not None and _c_make_scanner is not None:
    # the arguments json.dumps uses by default, without the circular-reference check (values come from JSON)
    _ENCODE = _c_make_encoder(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ",
                              False, False, True)
    _SCAN = _c_make_scanner(json.JSONDecoder())
else:  # pragma: no cover
    _ENCODE = _SCAN = None


def dumps(obj: object) -> bytes:
    """json.dumps(obj).encode() for JSON-born values."""
    if _ENCODE is None:  # pragma: no cover
        return json.dumps(obj).encode()
    return "".join(_ENCODE(obj, 0)).encode()


def loads(data: bytes) -> object:
    """json.loads(data)."""
    if _SCAN is not None:
        try:
            text = data.decode()
            obj, end = _SCAN(text, 0)
            if end == len(text):
                return obj
        except (UnicodeDecodeError, StopIteration, ValueError):
            pass
    return json.loads(data)


def last_member(data: bytes, key: str) -> tuple[object, bytes] | None:
    """The value of `key` when it is the last member of the JSON object `data`, and its JSON text.

    vLLM puts kv_transfer_params last in its answers: the proxy reads it without decoding the rest of the answer
    and passes its text on unchanged. None when the answer is not laid out that way (the caller then decodes it
    whole): the member must follow "{" or "," and be followed only by the closing "}" of the outer object, so a
    nested or quoted occurrence of the name never matches.
    """
    if _SCAN is None:  # pragma: no cover
        return None
    name = b'"%s"' % key.encode()
    pos = data.rfind(name)
    if pos < 0 or data[max(0, pos - 64):pos].rstrip()[-1:] not in (b"{", b","):
        return None
    rest = data[pos + len(name):]
    stripped = rest.lstrip()
    if stripped[:1] != b":":
        return None
    start = pos + len(name) + (len(rest) - len(stripped)) + 1
    try:
        text = data[start:].decode()
        value, end = _SCAN(text, len(text) - len(text.lstrip()))
    except (UnicodeDecodeError, StopIteration, ValueError):
        return None
    if text[end:].strip() != "}":
        return None
    return value, text[:end].strip().encode()

"""Plain data across the process boundary: ecall arguments and results as tagged JSON, never pickles.

Its own module so that the enclave process (posix_shim/child.py) can decode ecalls without importing the
runner (posix_shim/process_backend.py: subprocess, the host channel, the host's wiring) at start-up.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def _tag(value: Any) -> Any:
    # JSON objects are reserved for tags, so every value comes back with its own type: bytes, tuple, dict.
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_tag(v) for v in value]
    if isinstance(value, tuple):
        return {"t": [_tag(v) for v in value]}
    if isinstance(value, dict):
        return {"d": {k: _tag(v) for k, v in value.items()}}
    raise TypeError(f"{type(value).__name__} is not plain data")


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(v) for v in value]
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError("malformed plain-data object")
        (tag, inner), = value.items()
        if tag == "b" and isinstance(inner, str):
            return base64.b64decode(inner.encode("ascii"), validate=True)
        if tag == "t" and isinstance(inner, list):
            return tuple(_untag(v) for v in inner)
        if tag == "d" and isinstance(inner, dict):
            return {k: _untag(v) for k, v in inner.items()}
        raise ValueError(f"unknown plain-data tag {tag!r}")
    return value


def encode_plain(value: Any) -> bytes:
    """Plain data (None, bool, int, float, str, bytes, list, tuple, str-keyed dict) as tagged JSON."""
    return json.dumps(_tag(value), separators=(",", ":")).encode()


def decode_plain(data: bytes) -> Any:
    """The inverse of encode_plain; anything malformed raises ValueError (never evaluates anything)."""
    try:
        return _untag(json.loads(data))
    except (ValueError, RecursionError, TypeError) as exc:
        raise ValueError(f"malformed plain data: {exc}") from None


__all__ = ["encode_plain", "decode_plain"]

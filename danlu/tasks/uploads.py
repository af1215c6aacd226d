"""Bytes sent in a JSON body: a base64 string or a data URL (as browsers write them), decoded strictly."""

from __future__ import annotations

import base64
import binascii
from typing import Any


def decode_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None

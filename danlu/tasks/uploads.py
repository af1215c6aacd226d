"""Bytes sent in a JSON body: a base64 string or a data URL (as browsers write them), decoded strictly; and
one image of a POST /v1/predict body, {"image": "<base64>"}, checked as it is parsed."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def decode_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def _decode_image(value: Any) -> bytes:
    raw = decode_base64(value)
    from PIL import Image

    try:  # reads the header only: cheap enough for the event loop, catches most junk early
        Image.open(io.BytesIO(raw))
    except Exception:
        raise ValueError("not an image PIL can read") from None
    return raw


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: Annotated[bytes, BeforeValidator(_decode_image)]

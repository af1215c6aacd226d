"""One image of a POST /v1/predict body: {"image": "<base64>"} or a data URL, checked as it is parsed."""

from __future__ import annotations

import io
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from danlu.tasks.uploads import decode_base64


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

"""One clip of a POST /v1/predict body: {"video": "<base64>"} or a data URL, checked as it is parsed."""

from __future__ import annotations

import io
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from danlu.tasks.uploads import decode_base64


def _decode_video(value: Any) -> bytes:
    raw = decode_base64(value)
    import av

    try:  # opens the container and reads its headers only: catches most junk before the model sees it
        with av.open(io.BytesIO(raw)) as container:
            streams = len(container.streams.video)
    except Exception:
        raise ValueError("not a video that PyAV (FFmpeg) can open (mp4, webm, mkv, avi, mov ...)") from None
    if not streams:
        raise ValueError("the file holds no video stream")
    return raw


class VideoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video: Annotated[bytes, BeforeValidator(_decode_video)]

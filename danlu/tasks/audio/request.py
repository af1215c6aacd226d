"""One clip of a POST /v1/predict body: {"audio": "<base64>"} or a data URL, checked as it is parsed."""

from __future__ import annotations

import io
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from danlu.tasks.uploads import decode_base64


def _decode_audio(value: Any) -> bytes:
    raw = decode_base64(value)
    import soundfile as sf

    try:  # reads the header only: cheap enough for the event loop, catches most junk early
        info = sf.info(io.BytesIO(raw))
    except Exception:
        raise ValueError("not audio that soundfile can read (wav, flac, ogg, mp3)") from None
    if info.frames == 0:
        raise ValueError("the audio holds no samples")
    return raw


class AudioInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audio: Annotated[bytes, BeforeValidator(_decode_audio)]

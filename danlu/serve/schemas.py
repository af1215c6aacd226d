"""Request bodies, validated by pydantic, one schema per task.

`{"inputs": X}` where X is one input or a list of them; an input is a string (text), an object
`{"image": "<base64>"}` (image), or an object of feature values (tabular). The schema is built
for the served model, so a wrong input is a 422 whose `loc` names the exact field
(`["body", "inputs", 2, "age"]`), not a failure deep inside the model call.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator

from danlu.serve.runner import ModelInfo


def _decode_image(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    if value.startswith("data:"):  # a data URL, as browsers produce
        value = value.partition(",")[2]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    from PIL import Image

    try:  # reads the header only: cheap enough for the event loop, catches most junk early
        Image.open(io.BytesIO(raw))
    except Exception:
        raise ValueError("not an image PIL can read") from None
    return raw


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: Annotated[bytes, BeforeValidator(_decode_image)]


# Smart-mode union: JSON values keep their type (1 stays int, "1" stays str, true stays bool).
Scalar = Union[int, float, str, bool, None]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("inputs", mode="before", check_fields=False)
    @classmethod
    def _one_or_many(cls, value):
        return value if isinstance(value, list) else [value]


def input_kind(info: ModelInfo) -> str:
    if info.task == "text-classification":
        return "text"
    if info.task == "image-classification":
        return "image"
    if info.task.startswith("tabular"):
        return "tabular"
    return "generic"


def request_model(info: ModelInfo, max_inputs: int) -> type[BaseModel]:
    """The body of POST /v1/predict for this model: at most `max_inputs` inputs."""
    kind = input_kind(info)
    if kind == "text":
        item: Any = str
    elif kind == "image":
        item = ImageInput
    elif kind == "tabular":
        # Feature names are arbitrary strings (spaces, brackets): field names are f0.., aliases are the names.
        fields = {f"f{i}": (Scalar, Field(alias=name)) for i, name in enumerate(info.features)}
        item = create_model("Row", __config__=ConfigDict(extra="ignore"), **fields)
    else:  # a task this module does not know yet: rows pass through as given
        item = dict[str, Any]
    inputs = Annotated[list[item], Field(min_length=1, max_length=max_inputs)]
    return create_model("PredictRequest", __base__=_Body, inputs=(inputs, ...))


def to_rows(body: BaseModel) -> list[dict]:
    """Validated inputs -> rows of the DataFrame the task encodes (see danlu/predict.py)."""
    rows = []
    for value in body.inputs:
        if isinstance(value, str):
            rows.append({"text": value})
        elif isinstance(value, ImageInput):
            rows.append({"image": {"bytes": value.image}})  # image_classification._as_pil reads this
        elif isinstance(value, BaseModel):
            rows.append(value.model_dump(by_alias=True))
        else:
            rows.append(dict(value))
    return rows

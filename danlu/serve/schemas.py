"""Request bodies, validated by pydantic; the served task says what one input is.

`{"inputs": X}` where X is one input or a list of them; an input is what the task's `request_item()`
describes (a string for text, `{"image": "<base64>"}` for images, an object of feature values for a
table). The schema is built for the served model, so a wrong input is a 422 whose `loc` names the
exact field (`["body", "inputs", 2, "age"]`), not a failure deep inside the model call.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError

# Every served model computes in float32: a larger number would reach it as infinity.
FLOAT32_MAX = 3.4028234663852886e38
ECHO_CHARS = 100  # of a rejected value, sent back in the 422


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("inputs", mode="before", check_fields=False)
    @classmethod
    def _one_or_many(cls, value):
        return value if isinstance(value, list) else [value]


def request_model(task, max_inputs: int) -> type[BaseModel]:
    """The body of POST /v1/predict for this model: at most `max_inputs` inputs."""
    inputs = Annotated[list[readable(task.request_item())], Field(min_length=1, max_length=max_inputs)]
    return create_model("PredictRequest", __base__=_Body, inputs=(inputs, ...))


def response_model(task) -> type[BaseModel]:
    """The body POST /v1/predict answers with."""
    return create_model("PredictResponse", predictions=(list[task.response_item()], ...), model=(str, ...))


def readable(item):
    """`item` (a task's request type), also refusing what its schema lets pass but no model can read. Numbers
    beyond float32 reach the model as infinity and come out as NaN: checked per number field, so the 422
    names the field (a category may be a number too, read as text: any size will do). Text with a lone
    surrogate: see UnicodeText."""
    if not (isinstance(item, type) and issubclass(item, BaseModel)):
        return Annotated[item, AfterValidator(_whole_unicode)]
    numbers = [name for name, field in item.model_fields.items() if field.annotation in (float, Optional[float])]
    if not numbers:
        return item
    check = field_validator(*numbers)(_in_float32)
    return create_model(item.__name__, __base__=item, __validators__={"check_float32": check})


def _in_float32(cls, value):
    if value is not None and abs(value) > FLOAT32_MAX:
        raise PydanticCustomError("float_range", "a number beyond ±3.4e38, which the model (float32) cannot hold")
    return value


def _whole_unicode(value):
    if isinstance(value, str) and not _utf8(value):
        raise PydanticCustomError("string_unicode", "text with a lone surrogate (\\ud800 without its pair) "
                                  "is not valid Unicode")
    return value


# pydantic lets a lone surrogate (a JSON escape such as \ud800 without its pair) through a plain `str`,
# refusing one only where it counts characters (under max_length); a tokenizer then fails on it.
UnicodeText = Annotated[str, AfterValidator(_whole_unicode)]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def client_errors(errors) -> list[dict]:
    """pydantic's errors as a 422 can carry them: JSON has no NaN or Infinity and UTF-8 no lone surrogate, and
    the rejected values themselves (an echo of a whole body, an Infinity) are exactly the ones that break a
    plain JSON encoder. A single value is echoed, cut short; a whole object or list is not (`loc` says where)."""
    out = []
    for error in errors:
        item = {"type": error["type"], "loc": list(error["loc"]), "msg": _valid(error["msg"])}
        if "input" in error and not isinstance(error["input"], (dict, list, tuple, BaseModel)):
            item["input"] = json_safe(error["input"])
        if error.get("ctx"):
            item["ctx"] = {key: json_safe(value) for key, value in error["ctx"].items()}
        out.append(item)
    return out


def json_safe(value: Any) -> Any:
    """A scalar as strict JSON takes it: non-finite numbers and unknown types as text, text valid and short."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10 ** ECHO_CHARS else _cut(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _cut(_valid(value if isinstance(value, str) else str(value)))


def _valid(text: str) -> str:
    return text if _utf8(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cut(text: str) -> str:
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."

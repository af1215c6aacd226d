"""Request bodies, validated by pydantic; the served task says what one input is.

`{"inputs": X}` where X is one input or a list of them; an input is what the task's `request_item()`
describes (a string for text, `{"image": "<base64>"}` for images, an object of feature values for a
table). The schema is built for the served model, so a wrong input is a 422 whose `loc` names the
exact field (`["body", "inputs", 2, "age"]`), not a failure deep inside the model call.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("inputs", mode="before", check_fields=False)
    @classmethod
    def _one_or_many(cls, value):
        return value if isinstance(value, list) else [value]


def request_model(task, max_inputs: int) -> type[BaseModel]:
    """The body of POST /v1/predict for this model: at most `max_inputs` inputs."""
    inputs = Annotated[list[task.request_item()], Field(min_length=1, max_length=max_inputs)]
    return create_model("PredictRequest", __base__=_Body, inputs=(inputs, ...))


def response_model(task) -> type[BaseModel]:
    """The body POST /v1/predict answers with."""
    return create_model("PredictResponse", predictions=(list[task.response_item()], ...), model=(str, ...))

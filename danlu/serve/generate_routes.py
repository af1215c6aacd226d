"""POST /v1/generate: images drawn by a model whose task draws them (the registry's `generate_images`
capability: image-generation), each as a base64 PNG. A route module (danlu.serve.app.ROUTE_MODULES): a model
that draws no images still gets the route, answering why, as /v1/completions does for a model that writes
no text."""

import base64
import io
import logging
from typing import Optional, Union

from fastapi import Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from danlu.errors import DanluError

log = logging.getLogger("danlu.serve")
PATH = "/v1/generate"
MAX_IMAGES = 256  # one request's images: a 28x28 PNG is ~0.3 kB, a 64x64 RGB one a few kB


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    label: Optional[Union[int, str]] = None  # a class-conditional model: the class to draw (default: each in turn)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # the same seed draws the same images


class GeneratedImage(BaseModel):
    image: str  # PNG, base64
    label: Optional[Union[int, float, str, bool]] = None  # the class it was drawn for


class GenerateResponse(BaseModel):
    images: list[GeneratedImage]
    model: str


def register(app: FastAPI, ctx) -> None:
    runner, info = ctx.runner, ctx.runner.info
    auth = [Depends(ctx.require_key)]
    task, model = runner.task, runner.model
    if not task.spec.capabilities.generate_images or model is None:
        why = (f"{info.name} is a {info.task} model, which draws no images: use POST /v1/predict"
               if not task.spec.capabilities.generate_images else
               f"{info.name} is served as variant {info.variant}, without the PyTorch generator; serve the run "
               "without --variant to draw images")

        async def not_here():
            raise HTTPException(404, why)

        app.add_api_route(PATH, not_here, methods=["POST"], dependencies=auth, include_in_schema=False)
        return

    def draw(body: GenerateRequest) -> list[dict]:
        images, labels = task.generate_images(model, body.n, label=body.label, seed=body.seed)
        return [{"image": _png_base64(array), "label": None if labels is None else labels[i]}
                for i, array in enumerate(images)]

    @app.post(PATH, dependencies=auth, response_model=GenerateResponse, summary=f"draw images with {info.name}")
    async def generate(body: GenerateRequest):
        try:
            images = await run_in_threadpool(draw, body)
        except DanluError as exc:  # a label the model never learned, a label for an unconditional model
            raise HTTPException(422, str(exc)) from None
        except Exception:
            log.exception("generation failed")
            raise HTTPException(500, "generation failed; see the server log") from None
        return JSONResponse({"images": images, "model": info.name})


def _png_base64(array) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")

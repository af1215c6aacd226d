"""The HTTP app: create_app(runner, settings) -> FastAPI.

Endpoints: POST /v1/predict, GET /v1/models (bearer auth when DANLU_API_KEY is set), GET /healthz,
GET /readyz, GET /metrics (always open: probes and scrapers carry no key). GET /openapi.json, /docs and
/redoc are open without a key; with one, /openapi.json needs it too and the two pages are off.

Route modules extend the app without editing it: each name in ROUTE_MODULES that can be imported
gets `register(app, ctx)` with a ServeContext, and decides itself whether the served model suits
it. `danlu/serve/openai_routes.py` (OpenAI /v1/completions and /v1/chat/completions for causal
LMs) plugs in this way: `app.include_router(router, prefix="/v1", dependencies=[Depends(ctx.require_key)])`.
"""
# No `from __future__ import annotations`: the predict route's body type is built at runtime,
# and FastAPI must see the class itself, not a string it cannot resolve.

import hmac
import importlib
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from danlu.errors import DanluError
from danlu.serve.batcher import MicroBatcher, QueueFull, ShuttingDown
from danlu.serve.metrics import ServeMetrics
from danlu.serve.middleware import BodyLimitMiddleware, HeaderLimitMiddleware, MetricsMiddleware
from danlu.serve.runner import TaskRunner
from danlu.serve.schemas import client_errors, request_model, response_model

log = logging.getLogger("danlu.serve")
ROUTE_MODULES = ("danlu.serve.openai_routes", "danlu.serve.explain_routes", "danlu.serve.generate_routes")
RETRY = {"Retry-After": "1"}


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256  # inputs waiting, across requests
    max_body_kb: int = 1024
    max_header_kb: int = 16  # all request headers together; more: 431
    max_headers: int = 100  # more: 431
    body_timeout_s: float = 30.0  # for the whole request body to arrive; later: 408
    workers_threads: int = 1  # model calls that may run at once
    api_key: Optional[str] = None
    graceful_timeout_s: float = 30.0
    log_level: str = "info"
    access_log: bool = True

    @classmethod
    def from_env(cls, **values) -> "ServeSettings":
        return cls(api_key=os.environ.get("DANLU_API_KEY") or None, **values)


@dataclass
class ServeContext:
    """What a route module gets: the model, its batcher, settings, metrics and the auth dependency."""

    runner: TaskRunner
    settings: ServeSettings
    batcher: MicroBatcher
    metrics: ServeMetrics
    require_key: Callable


def create_app(runner: TaskRunner, settings: Optional[ServeSettings] = None,
               route_modules: tuple[str, ...] = ROUTE_MODULES) -> FastAPI:
    settings = settings or ServeSettings.from_env()
    info = runner.info
    metrics = ServeMetrics()
    batcher = MicroBatcher(lambda rows: runner.predict(pd.DataFrame(rows)), settings.max_batch,
                           settings.max_wait_ms / 1000, settings.max_queue, settings.workers_threads,
                           on_batch=metrics.observe_batch)
    metrics.watch_queue(lambda: batcher.pending)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            # uvicorn has already waited for open requests; this drains anything still queued.
            await batcher.close(settings.graceful_timeout_s)

    # Behind a key the schema is for key holders only: it names the model, its task and every feature,
    # as /v1/models does. The /docs and /redoc pages fetch it from the browser, which sends no bearer
    # key, so behind a key they could only show an error: they are off.
    public = settings.api_key is None
    app = FastAPI(title="danlu", summary=f"{info.name} ({info.task})", lifespan=lifespan,
                  openapi_url="/openapi.json" if public else None, docs_url="/docs" if public else None,
                  redoc_url="/redoc" if public else None)
    require_key = _auth(settings.api_key)
    ctx = ServeContext(runner, settings, batcher, metrics, require_key)
    app.state.ctx = ctx
    task = runner.task
    Body = request_model(task, settings.max_queue)
    Answer = response_model(task)
    # Routes sit on the app itself, not an included router: app.routes then lists their paths,
    # which the metrics use as endpoint labels.
    v1 = [Depends(require_key)]
    _json_safe_errors(app)
    if not public:
        @app.get("/openapi.json", dependencies=v1, include_in_schema=False)
        async def openapi():
            return JSONResponse(app.openapi())

    @app.post("/v1/predict", dependencies=v1, response_model=Answer, summary=f"predict with {info.name}")
    async def predict(body: Body):
        try:
            predictions = await batcher.submit(task.rows_from_request(body.inputs))
        except QueueFull:
            metrics.rejected.inc()
            raise HTTPException(503, f"queue full ({settings.max_queue} inputs waiting): retry shortly",
                                headers=RETRY) from None
        except ShuttingDown:
            raise HTTPException(503, "server is shutting down", headers=RETRY) from None
        except DanluError as exc:  # input the model cannot read (an image PIL decodes only halfway), or
            # outputs that are not finite (inference.require_finite): an answer of NaN scores is no answer
            raise HTTPException(422, str(exc)) from None
        except Exception:
            log.exception("prediction failed")
            raise HTTPException(500, "prediction failed; see the server log") from None
        # A Response skips FastAPI's jsonable_encoder pass: the dicts are plain JSON already.
        return JSONResponse({"predictions": predictions, "model": info.name})

    @app.get("/v1/models", dependencies=v1)
    async def models():
        card = {"id": info.name, "object": "model", "created": info.created, "owned_by": "danlu",
                **info.card, "variant": info.variant}
        return {"object": "list", "data": [card]}  # the OpenAI list shape, so its clients can read it

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        reason = ("starting" if not batcher.started else "shutting down" if batcher.closing
                  else "queue full" if batcher.full else None)
        if reason:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return {"status": "ready", "model": info.name, "queue": batcher.pending}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    for name in route_modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports is missing: a real bug
                raise
            continue
        module.register(app, ctx)

    # Added last = outermost: metrics see the 413s, 408s and 431s the limits answer.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_kb * 1024, timeout_s=settings.body_timeout_s)
    app.add_middleware(HeaderLimitMiddleware, max_bytes=settings.max_header_kb * 1024, max_count=settings.max_headers)
    app.add_middleware(MetricsMiddleware, metrics=metrics,
                       endpoints=lambda: {getattr(r, "path", "") for r in app.routes})
    return app


def _json_safe_errors(app: FastAPI) -> None:
    """FastAPI's own handler echoes the rejected input, and a NaN, an Infinity or a lone surrogate in it made
    the 422 itself fail to encode: a 500 that also dropped the connection. This sends the same shape, safely."""

    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": client_errors(exc.errors())}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)


def _auth(api_key: Optional[str]):
    bearer = HTTPBearer(auto_error=False)

    async def require_key(creds: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if api_key is None:
            return
        # compare_digest: the time taken must not tell how much of a guessed key was right.
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <DANLU_API_KEY>'",
                                headers={"WWW-Authenticate": "Bearer"})

    return require_key

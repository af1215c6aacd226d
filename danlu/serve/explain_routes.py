"""POST /v1/explain: the predict request's body, answered with Integrated Gradients attributions
(danlu.trust.explain) for each input. A route module (danlu.serve.app.ROUTE_MODULES): it decides itself
whether the served model can be explained; one that cannot (an ONNX variant has no gradients) still gets
the route, answering why."""

import logging

from fastapi import Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from danlu.errors import DanluError
from danlu.serve.schemas import request_model

log = logging.getLogger("danlu.serve")
PATH = "/v1/explain"
MAX_INPUTS = 16  # IG runs the model dozens of times per input: a request is kept small


def register(app: FastAPI, ctx) -> None:
    from danlu.trust.explain import explain_frame, require_gradients

    runner, info = ctx.runner, ctx.runner.info
    auth = [Depends(ctx.require_key)]
    task, model = runner.task, runner.model
    try:
        require_gradients(task, model)
    except DanluError as exc:
        why = f"{info.name}" + (f" (variant {info.variant})" if info.variant else "") + f": {exc}"

        async def not_here():
            raise HTTPException(404, why)

        app.add_api_route(PATH, not_here, methods=["POST"], dependencies=auth, include_in_schema=False)
        return
    Body = request_model(task, MAX_INPUTS)
    lock = getattr(runner, "encode_lock", None)  # a runner wrapped by a test may not carry one

    def explain(rows):
        import pandas as pd

        if lock is None:
            return explain_frame(task, model, pd.DataFrame(rows))
        with lock:
            return explain_frame(task, model, pd.DataFrame(rows))

    @app.post(PATH, dependencies=auth, summary=f"explain {info.name}'s predictions (Integrated Gradients)")
    async def explain_route(body: Body):
        try:
            found = await run_in_threadpool(explain, task.rows_from_request(body.inputs))
        except DanluError as exc:
            raise HTTPException(422, str(exc)) from None
        except Exception:
            log.exception("explanation failed")
            raise HTTPException(500, "explanation failed; see the server log") from None
        return JSONResponse({"explanations": found, "model": info.name})

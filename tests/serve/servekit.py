"""Helpers for the serve tests: an in-process client and a stub runner."""

import asyncio
import time
from contextlib import asynccontextmanager

import httpx

from danlu.inference import Forward
from danlu.serve.runner import ModelInfo, TaskRunner
from danlu.tasks import new_task
from danlu.tasks.tabular.preprocess import Preprocessing


@asynccontextmanager
async def client_for(app):
    """An httpx client talking to `app` in-process, with its startup and shutdown run around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://danlu.test") as client:
            yield client


def run(coro):
    return asyncio.run(coro)


class _NoModel(Forward):
    def __call__(self, batch):
        raise AssertionError("the stub runner predicts without a model")


def stub_task(name: str, numeric=(), categorical=()):
    """A real task of `name`, fitted by hand: two labels, or a table's preprocessing."""
    task = new_task(name)
    if task.spec.has_classes:
        task.labels = ["neg", "pos"]
    if numeric or categorical:
        task.preprocessing = Preprocessing(list(numeric), [0.0] * len(numeric), [1.0] * len(numeric),
                                           list(categorical), [["x"]] * len(categorical), ["x"] * len(categorical))
    return task


class StubRunner(TaskRunner):
    """A real task's request schema, but answers every row after `delay` seconds and remembers each
    batch's size."""

    def __init__(self, delay: float = 0.0, task: str = "text-classification", features=(), categorical=(),
                 fail_on=None):
        made = stub_task(task, features, categorical)
        super().__init__(made, _NoModel(), ModelInfo(name="stub", task=task, card=made.card()))
        self.delay, self.fail_on, self.batches = delay, fail_on, []

    def predict(self, frame):
        self.batches.append(len(frame))
        time.sleep(self.delay)
        rows = frame.to_dict("records")
        if self.fail_on is not None and any(self.fail_on in str(r) for r in rows):
            from danlu.errors import DataError

            raise DataError(f"cannot read input containing {self.fail_on!r}")
        return [{"label": "pos", "score": 1.0, "row": {k: str(v)[:20] for k, v in r.items()}} for r in rows]

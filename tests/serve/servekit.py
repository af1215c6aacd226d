"""Helpers for the serve tests: tiny trained runs, an in-process client, a live server, a gate to hold model
calls, stub and gated runners."""

import asyncio
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import uvicorn

from danlu.inference import Forward
from danlu.serve.runner import ModelInfo, TaskRunner
from danlu.tasks import new_task
from danlu.tasks.tabular.preprocess import Preprocessing

# Every wait on the other side is bounded: a test that would hang fails after this long, saying on what.
PATIENCE_S = 30.0
GOOD = ["a wonderful film", "great acting and a great story", "i loved it", "truly wonderful", "great fun"]
BAD = ["a terrible film", "awful acting and a dull story", "i hated it", "truly awful", "dull and boring"]


def train_text_run(tmp: Path) -> Path:
    """A one-layer BERT telling GOOD from BAD (a few seconds)."""
    from danlu.pipeline import train
    from danlu.recipe import recipe_from_dict

    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    (tmp / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows * 6))
    recipe = recipe_from_dict({
        "name": "reviews", "task": "text-classification",
        "data": {"source": str(tmp / "reviews.csv")},
        "quality": {"on_fail": "warn"},
        "model": {"arch": "bert", "size": "tiny", "layers": 1, "max_length": 32},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "train": {"epochs": 1, "progress": False},
    })
    return train(recipe, tmp / "run").root


def train_table_run(tmp: Path) -> Path:
    """A small MLP on a table of two numeric features (one named with a space and a non-ASCII letter) and a
    categorical one (a few seconds)."""
    from danlu.pipeline import train
    from danlu.recipe import recipe_from_dict

    rows = [(20 + i % 40, 30 + (i * 7) % 50, ["A171", "A172", "A173"][i % 3]) for i in range(90)]
    (tmp / "credit.csv").write_text("age,income in k€,job,label\n" + "".join(
        f"{age},{income},{job},{'good' if income + 10 * (job == 'A173') > 55 else 'bad'}\n"
        for age, income, job in rows), encoding="utf-8")
    recipe = recipe_from_dict({
        "name": "credit", "task": "tabular-classification",
        "data": {"source": str(tmp / "credit.csv"), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "quality": {"on_fail": "warn"}, "model": {"hidden": [8]},
        "train": {"epochs": 5, "batch_size": 16, "optimizer": "adam", "lr": 0.02, "progress": False},
    })
    return train(recipe, tmp / "run").root


@asynccontextmanager
async def client_for(app):
    """An httpx client talking to `app` in-process, with its startup and shutdown run around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://danlu.test") as client:
            yield client


def run(coro):
    return asyncio.run(coro)


async def until(condition, what: str, timeout: float = PATIENCE_S) -> None:
    """Polls `condition` on the event loop until it holds; fails saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout:.0f} s")
        await asyncio.sleep(0.002)


def wait_for(condition, what: str, timeout: float = PATIENCE_S) -> None:
    """`until` for a thread that is not an event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout:.0f} s")
        time.sleep(0.002)


class Gate:
    """Holds model calls (called from the model's thread) until the test lets them through: `allow(n)` lets
    n more pass, `open()` all. `waiting` calls are held now, `passed` got through."""

    def __init__(self, opened: bool = False):
        self._cond = threading.Condition()
        self._opened, self._passes = opened, 0
        self.waiting = self.passed = 0

    def __call__(self, *_) -> None:  # also a forward pre-hook: (module, args)
        with self._cond:
            self.waiting += 1
            try:
                if not self._cond.wait_for(lambda: self._opened or self._passes > 0, PATIENCE_S):
                    raise AssertionError(f"a model call was held at the gate for {PATIENCE_S:.0f} s")
            finally:
                self.waiting -= 1
            if not self._opened:
                self._passes -= 1
            self.passed += 1

    def allow(self, n: int = 1) -> None:
        with self._cond:
            self._passes += n
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._opened = True
            self._cond.notify_all()


@contextmanager
def live_server(app):
    """`app` under a real uvicorn in a thread, on a port the OS picked; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), "the server starting")
        assert server.started, "the server thread ended before it started serving"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=PATIENCE_S)
        sock.close()


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
    """A real task's request schema, but answers every row itself and remembers each batch's size; with a
    `gate`, each model call waits there until the test lets it through."""

    def __init__(self, gate: Gate | None = None, task: str = "text-classification", features=(), categorical=(),
                 fail_on=None):
        made = stub_task(task, features, categorical)
        super().__init__(made, _NoModel(), ModelInfo(name="stub", task=task, card=made.card()))
        self.gate, self.fail_on, self.batches = gate, fail_on, []

    def predict(self, frame):
        self.batches.append(len(frame))
        if self.gate is not None:
            self.gate()
        rows = frame.to_dict("records")
        if self.fail_on is not None and any(self.fail_on in str(r) for r in rows):
            from danlu.errors import DataError

            raise DataError(f"cannot read input containing {self.fail_on!r}")
        return [{"label": "pos", "score": 1.0, "row": {k: str(v)[:20] for k, v in r.items()}} for r in rows]


class GatedRunner(TaskRunner):
    """A real runner whose model calls each wait at `gate` first; remembers each batch's size."""

    def __init__(self, inner: TaskRunner, gate: Gate):
        super().__init__(inner.task, inner.forward, inner.info)
        self.inner, self.gate, self.batches = inner, gate, []

    def predict(self, frame):
        self.batches.append(len(frame))
        self.gate()
        return self.inner.predict(frame)

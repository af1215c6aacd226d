"""Micro-batching: requests that arrive together share one model call.

Requests wait in an asyncio queue. The batcher takes the first one, then keeps taking more until
it holds `max_batch` inputs or `max_wait` has passed, and runs the model once in a worker thread
so the event loop keeps accepting requests meanwhile. While the model is busy the queue fills,
so under load batches fill up without waiting at all. Waiting for company only pays when
requests arrive closer together than `max_wait`: with sparse traffic (an average gap longer than
that) a lone request goes straight to the model. The queue is bounded (in inputs): a full queue
refuses at once instead of growing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("danlu.serve")


class QueueFull(Exception):
    """More inputs are waiting than max_queue allows."""


class ShuttingDown(Exception):
    """The server is draining and takes no new work."""


@dataclass
class _Request:
    rows: list
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, predict: Callable[[list], list], max_batch: int = 32, max_wait_s: float = 0.005,
                 max_queue: int = 256, threads: int = 1,
                 on_batch: Callable[[int, float], None] | None = None, clock: Callable[[], float] = time.monotonic):
        """`predict(rows) -> results`, one result per row; `on_batch(size, seconds)` per model call;
        `clock()`: when a request arrives, in seconds (the gaps between arrivals decide whether to wait)."""
        if max_batch < 1 or max_queue < 1 or threads < 1:
            raise ValueError("max_batch, max_queue and threads must be at least 1")
        self._predict, self._on_batch, self._clock = predict, on_batch, clock
        self.max_batch, self.max_wait_s, self.max_queue, self.threads = max_batch, max_wait_s, max_queue, threads
        self.pending = 0  # inputs waiting in the queue, not yet in a model call
        self._last_arrival = 0.0
        self._gap = float("inf")  # moving average of the time between requests
        self.closing = False
        self._queue: asyncio.Queue[_Request] | None = None
        self._carry: _Request | None = None  # taken from the queue but did not fit the last batch
        self._loop_task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def full(self) -> bool:
        return self.pending >= self.max_queue

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.threads)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="danlu-model")
        self._loop_task = asyncio.create_task(self._loop(), name="danlu-batcher")

    async def submit(self, rows: list) -> list:
        """Results for `rows`, once the model has run; QueueFull or ShuttingDown right away otherwise."""
        if self.closing or not self.started:
            raise ShuttingDown()
        if self.pending + len(rows) > self.max_queue:
            raise QueueFull()
        # A burst (a gap of ~0) pulls the average down at once; a pause pushes it up slowly.
        now = self._clock()
        self._gap = min(now - self._last_arrival, 0.8 * self._gap + 0.2 * (now - self._last_arrival))
        self._last_arrival = now
        future = asyncio.get_running_loop().create_future()
        self.pending += len(rows)
        self._queue.put_nowait(_Request(rows, future))
        return await future

    async def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new work, finish what is queued or running, then stop."""
        self.closing = True
        deadline = time.monotonic() + timeout_s
        while (self.pending or self._running) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._running):
            task.cancel()
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            # Take a thread slot before collecting, so inputs keep piling into the next batch
            # while the model is busy instead of leaving in small batches.
            await self._slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next(self) -> _Request:
        if self._carry is not None:
            request, self._carry = self._carry, None
        else:
            request = await self._queue.get()
        self.pending -= len(request.rows)
        return request

    async def _collect(self) -> list[_Request]:
        batch: list[_Request] = []
        while not batch:  # skip requests whose callers gave up
            request = await self._next()
            if not request.future.done():
                batch.append(request)
        size = len(batch[0].rows)
        wait = self.max_wait_s if self._gap < self.max_wait_s else 0.0
        deadline = time.monotonic() + wait
        while size < self.max_batch:
            if self._queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    # Queue.get is cancellation-safe: on timeout no request is lost.
                    request = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
                self.pending -= len(request.rows)
            else:
                request = await self._next()
            if request.future.done():
                continue
            if size + len(request.rows) > self.max_batch:
                self._carry = request
                self.pending += len(request.rows)  # still waiting
                break
            batch.append(request)
            size += len(request.rows)
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        try:
            rows = [row for request in batch for row in request.rows]
            try:
                results = await loop.run_in_executor(self._executor, self._call, rows)
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    return
                # One bad input (an unreadable image) must not fail its batch-mates: retry alone.
                for request in batch:
                    try:
                        _resolve(request, await loop.run_in_executor(self._executor, self._call, request.rows))
                    except Exception as single:
                        _fail(request, single)
                return
            start = 0
            for request in batch:
                _resolve(request, results[start:start + len(request.rows)])
                start += len(request.rows)
        finally:
            self._slots.release()

    def _call(self, rows: list) -> list:
        """In a worker thread: the model on `rows`, in chunks of max_batch (a request may be larger)."""
        out = []
        for start in range(0, len(rows), self.max_batch):
            chunk = rows[start:start + self.max_batch]
            began = time.perf_counter()
            results = self._predict(chunk)
            if len(results) != len(chunk):
                raise RuntimeError(f"model returned {len(results)} results for {len(chunk)} inputs")
            out.extend(results)
            if self._on_batch:
                self._on_batch(len(chunk), time.perf_counter() - began)
        return out


def _resolve(request: _Request, results: list) -> None:
    if not request.future.done():
        request.future.set_result(results)


def _fail(request: _Request, exc: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(exc)

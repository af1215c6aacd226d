"""MicroBatcher on its own: grouping, limits, chunking, draining."""

import asyncio

import pytest

from danlu.serve.batcher import MicroBatcher, QueueFull, ShuttingDown
from servekit import Gate, until


def make(gate=None, **kw):
    """A batcher over a model that multiplies by 10; with a `gate`, each call waits there first."""
    calls = []

    def predict(rows):
        calls.append(list(rows))
        if gate is not None:
            gate()
        return [r * 10 for r in rows]

    return MicroBatcher(predict, **kw), calls


class Clock:
    """Arrival times the test sets, so that 'sparse' and 'close together' do not depend on the machine."""

    def __init__(self, now: float = 1000.0):
        self.now, self.reads = now, 0  # the batcher reads it once per request it takes in

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_concurrent_requests_fill_batches_up_to_max_batch():
    async def go():
        # All ten are queued in one turn of the event loop, before the batcher takes the first.
        batcher, calls = make(max_batch=4, max_wait_s=0.05)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(10)))
        await batcher.close()
        return results, calls

    results, calls = asyncio.run(go())
    assert results == [[i * 10] for i in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]


def test_a_request_never_splits_across_batches_and_big_ones_are_chunked():
    async def go():
        batcher, calls = make(max_batch=4, max_wait_s=0.05)
        await batcher.start()
        threes = await asyncio.gather(*(batcher.submit([i, i, i]) for i in range(3)))
        big = await batcher.submit(list(range(10)))
        await batcher.close()
        return threes, big, calls

    threes, big, calls = asyncio.run(go())
    assert threes == [[i * 10] * 3 for i in range(3)]
    assert big == [i * 10 for i in range(10)]
    assert [len(c) for c in calls] == [3, 3, 3, 4, 4, 2]


def test_waits_for_company_only_while_requests_come_close_together():
    clock = Clock()
    # A wait for company lasts a minute here: a lone request that waited would miss the bound below.
    batcher, calls = make(max_batch=2, max_wait_s=60, clock=clock)

    async def alone(rows):
        try:
            return await asyncio.wait_for(batcher.submit(rows), 20)
        except asyncio.TimeoutError:
            raise AssertionError(f"{rows} waited for company although traffic was sparse") from None

    async def go():
        await batcher.start()
        await alone([1])  # sparse traffic (the first request ever): straight to the model
        clock.now += 100
        await alone([2])  # 100 s after the last, with max_wait 60 s: still sparse
        await asyncio.gather(*(batcher.submit([i]) for i in (3, 4)))  # a burst, which fills a batch
        clock.now += 0.01  # close after the burst: the batcher waits for company, and 11 is it
        first = asyncio.create_task(batcher.submit([10]))
        await until(lambda: clock.reads == 5, "[10] submitted")
        await batcher.submit([11])
        await first
        await batcher.close()
        return calls

    calls = asyncio.run(go())
    assert calls[:2] == [[1], [2]] and calls[-1] == [10, 11]  # after the burst, 11 joined 10


def test_queue_bound_is_in_inputs_and_refuses_at_once():
    gate = Gate()

    async def go():
        batcher, _ = make(gate, max_batch=1, max_queue=3, max_wait_s=0)
        await batcher.start()
        running = asyncio.create_task(batcher.submit([1]))
        await until(lambda: gate.waiting == 1, "[1] taken by the model")  # no longer queued
        queued = asyncio.create_task(batcher.submit([2, 3]))
        await until(lambda: batcher.pending == 2, "[2, 3] queued")
        with pytest.raises(QueueFull):
            await batcher.submit([4, 5])
        single = asyncio.create_task(batcher.submit([6]))  # exactly fills the queue
        await until(lambda: batcher.pending == 3, "[6] queued")
        gate.open()
        results = await asyncio.gather(running, queued, single)
        await batcher.close()
        return results

    assert asyncio.run(go()) == [[10], [20, 30], [60]]


def test_close_finishes_queued_work_and_refuses_new_work():
    gate = Gate()

    async def go():
        batcher, calls = make(gate, max_batch=2, max_wait_s=0)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit([i])) for i in range(6)]
        await until(lambda: gate.waiting == 1 and sum(map(len, calls)) + batcher.pending == 6,
                    "all six submitted, the first call held")
        closing = asyncio.create_task(batcher.close(timeout_s=60))
        await until(lambda: batcher.closing, "close begun")
        with pytest.raises(ShuttingDown):
            await batcher.submit([8])
        gate.open()  # queued and running work goes on after close has begun
        await closing
        with pytest.raises(ShuttingDown):
            await batcher.submit([9])
        return [t.result() for t in tasks], calls

    results, calls = asyncio.run(go())
    assert results == [[i * 10] for i in range(6)] and sum(map(len, calls)) == 6


def test_callers_that_gave_up_are_skipped():
    gate = Gate()

    async def go():
        batcher, calls = make(gate, max_batch=1, max_wait_s=0)
        await batcher.start()
        first = asyncio.create_task(batcher.submit([1]))
        await until(lambda: gate.waiting == 1, "[1] in the model")
        gone = asyncio.create_task(batcher.submit([2]))
        await until(lambda: batcher.pending == 1, "[2] queued")
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        gate.open()
        assert await first == [10]
        assert await batcher.submit([3]) == [30]
        await batcher.close()
        return calls

    assert asyncio.run(go()) == [[1], [3]]


def test_length_groups_cover_every_row_bound_padding_and_batch_size():
    import random

    from danlu.inference import MIN_GROUP, PAD_SLACK, groups

    random.seed(0)
    lengths = [random.randint(3, 60) for _ in range(64)]
    found = groups([{"input_ids": [0] * n} for n in lengths], batch_size=len(lengths))
    assert sorted(i for g in found for i in g) == list(range(64))
    assert len(found) > 1
    for g in found:
        padded = len(g) * -(-max(lengths[i] for i in g) // 8) * 8
        assert len(g) <= MIN_GROUP or padded <= PAD_SLACK * sum(-(-lengths[i] // 8) * 8 for i in g)
    assert groups([{"pixel_values": 1}] * 3, batch_size=8) == [[0, 1, 2]]  # fixed-size inputs: one call
    assert groups([{"pixel_values": 1}] * 5, batch_size=2) == [[0, 1], [2, 3], [4]]
    assert max(len(g) for g in groups([{"input_ids": [0] * 5}] * 40, batch_size=16)) == 16

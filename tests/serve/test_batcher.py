"""MicroBatcher on its own: grouping, limits, chunking, draining."""

import asyncio
import time

import pytest

from danlu.serve.batcher import MicroBatcher, QueueFull, ShuttingDown


def make(delay=0.0, **kw):
    calls = []

    def predict(rows):
        calls.append(list(rows))
        time.sleep(delay)
        return [r * 10 for r in rows]

    return MicroBatcher(predict, **kw), calls


def test_concurrent_requests_fill_batches_up_to_max_batch():
    async def go():
        batcher, calls = make(delay=0.02, max_batch=4, max_wait_s=0.05)
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
    async def go():
        batcher, calls = make(max_batch=8, max_wait_s=0.2)
        await batcher.start()
        began = time.monotonic()
        await batcher.submit([1])  # sparse traffic (the first request ever): straight to the model
        await asyncio.sleep(0.3)
        await batcher.submit([2])  # 0.3 s after the last: still sparse
        sparse = time.monotonic() - began - 0.3
        await asyncio.gather(*(batcher.submit([i]) for i in range(3)))  # a burst
        first = asyncio.create_task(batcher.submit([10]))
        await asyncio.sleep(0.05)
        await batcher.submit([11])
        await first
        await batcher.close()
        return calls, sparse

    calls, sparse = asyncio.run(go())
    assert sparse < 0.15  # neither lone request waited max_wait (0.2 s)
    assert calls[:2] == [[1], [2]] and calls[-1] == [10, 11]  # after the burst, 11 joined 10


def test_queue_bound_is_in_inputs_and_refuses_at_once():
    async def go():
        batcher, _ = make(delay=0.3, max_batch=1, max_queue=3, max_wait_s=0)
        await batcher.start()
        running = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.05)  # taken by the model: no longer queued
        queued = asyncio.create_task(batcher.submit([2, 3]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit([4, 5])
        single = asyncio.create_task(batcher.submit([6]))  # exactly fills the queue
        results = await asyncio.gather(running, queued, single)
        await batcher.close()
        return results

    assert asyncio.run(go()) == [[10], [20, 30], [60]]


def test_close_finishes_queued_work_and_refuses_new_work():
    async def go():
        batcher, calls = make(delay=0.05, max_batch=2, max_wait_s=0)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit([i])) for i in range(6)]
        await asyncio.sleep(0.01)
        await batcher.close(timeout_s=5)
        with pytest.raises(ShuttingDown):
            await batcher.submit([9])
        return [t.result() for t in tasks], calls

    results, calls = asyncio.run(go())
    assert results == [[i * 10] for i in range(6)] and sum(map(len, calls)) == 6


def test_callers_that_gave_up_are_skipped():
    async def go():
        batcher, calls = make(delay=0.1, max_batch=1, max_wait_s=0)
        await batcher.start()
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0.01)
        gone.cancel()
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

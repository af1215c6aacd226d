"""The HTTP surface in-process: predictions from a real trained run, validation, auth, limits, metrics."""

import asyncio
import base64
import io
import json

import pytest
from PIL import Image

from danlu.serve.app import ServeSettings, create_app
from danlu.serve.runner import load_runner
from servekit import Gate, GatedRunner, StubRunner, client_for, run, until


@pytest.fixture(scope="module")
def runner(text_run):
    return load_runner(text_run)


def test_predict_one_and_many_with_the_trained_model(runner):
    async def go():
        async with client_for(create_app(runner, ServeSettings())) as client:
            one = await client.post("/v1/predict", json={"inputs": "i loved it"})
            many = await client.post("/v1/predict", json={"inputs": ["truly wonderful", "truly awful", "dull"]})
            return one, many

    one, many = run(go())
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == "reviews" and len(body["predictions"]) == 1
    pred = body["predictions"][0]
    assert pred["label"] in ("neg", "pos") and set(pred["scores"]) == {"neg", "pos"}
    assert abs(sum(pred["scores"].values()) - 1) < 1e-4
    assert many.status_code == 200 and len(many.json()["predictions"]) == 3


def test_batched_answers_match_one_by_one_answers(runner):
    texts = ["a wonderful film", "i hated it", "great acting and a great story", "dull and boring", "x"]
    gated = GatedRunner(runner, Gate())

    async def go():
        app = create_app(gated, ServeSettings(max_wait_ms=50))
        async with client_for(app) as client:
            alone = []
            for t in texts:
                gated.gate.allow()
                alone.append((await client.post("/v1/predict", json={"inputs": t})).json())
            sent = asyncio.gather(*(client.post("/v1/predict", json={"inputs": t}) for t in texts))
            # The first concurrent call is held until the other requests wait behind it: they share a call.
            await held_with_the_rest_queued(app, gated, len(texts), before=len(texts))
            gated.gate.open()
            together = await sent
            metrics = (await client.get("/metrics")).text
            return alone, [r.json() for r in together], metrics

    alone, together, metrics = run(go())
    for a, b in zip(alone, together):  # padding in a shared batch must not change any answer
        assert a["predictions"][0]["label"] == b["predictions"][0]["label"]
        assert abs(a["predictions"][0]["score"] - b["predictions"][0]["score"]) < 1e-4
    # 5 lone calls + the concurrent 5 in fewer calls than requests
    assert _sample(metrics, "danlu_batch_size_count") < 10
    assert _sample(metrics, "danlu_batch_size_sum") == 10


async def held_with_the_rest_queued(app, runner, inputs: int, before: int = 0) -> None:
    """Until the runner's first model call (after `before` inputs) is held at its gate and the rest of
    `inputs` wait in the queue behind it."""
    batcher = app.state.ctx.batcher

    def held() -> bool:
        return runner.gate.waiting == 1 and sum(runner.batches) - before + batcher.pending == inputs

    await until(held, f"a model call held with all {inputs} inputs in or behind it")


def test_concurrent_requests_share_model_calls():
    stub = StubRunner(gate=Gate())

    async def go():
        app = create_app(stub, ServeSettings(max_batch=8, max_wait_ms=30))
        async with client_for(app) as client:
            sent = asyncio.gather(*(client.post("/v1/predict", json={"inputs": f"t{i}"}) for i in range(16)))
            await held_with_the_rest_queued(app, stub, 16)
            stub.gate.open()
            replies = await sent
            return replies, (await client.get("/metrics")).text

    replies, metrics = run(go())
    assert all(r.status_code == 200 for r in replies)
    assert [r.json()["predictions"][0]["row"]["text"] for r in replies] == [f"t{i}" for i in range(16)]
    assert sum(stub.batches) == 16 and max(stub.batches) <= 8 and len(stub.batches) <= 4
    assert _sample(metrics, 'danlu_batch_size_bucket{le="8.0"}') == len(stub.batches)


def test_models_health_and_ready(runner):
    async def go():
        async with client_for(create_app(runner, ServeSettings())) as client:
            return [await client.get(p) for p in ("/v1/models", "/healthz", "/readyz")]

    models, health, ready = run(go())
    card = models.json()["data"][0]
    assert card["id"] == "reviews" and card["task"] == "text-classification"
    assert card["labels"] == ["neg", "pos"] and card["variant"] is None
    assert health.json() == {"status": "ok"} and ready.status_code == 200


def test_metrics_are_prometheus_text():
    async def go():
        async with client_for(create_app(StubRunner(), ServeSettings())) as client:
            await client.post("/v1/predict", json={"inputs": ["a", "b"]})
            await client.post("/v1/predict", json={"wrong": 1})
            await client.get("/no/such/page")
            return await client.get("/metrics")

    reply = run(go())
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert "# TYPE danlu_http_requests_total counter" in text
    assert _sample(text, 'danlu_http_requests_total{endpoint="/v1/predict",method="POST",status="200"}') == 1
    assert _sample(text, 'danlu_http_requests_total{endpoint="/v1/predict",method="POST",status="422"}') == 1
    assert _sample(text, 'danlu_http_requests_total{endpoint="other",method="GET",status="404"}') == 1
    assert "# TYPE danlu_http_request_duration_seconds histogram" in text
    assert "# TYPE danlu_batch_size histogram" in text and "danlu_queue_depth 0.0" in text


def test_api_key_guards_v1_but_not_health(monkeypatch):
    monkeypatch.setenv("DANLU_API_KEY", "s3cret")

    async def go():
        async with client_for(create_app(StubRunner(), ServeSettings.from_env())) as client:
            body = {"inputs": "hi"}
            return (await client.post("/v1/predict", json=body),
                    await client.post("/v1/predict", json=body, headers={"Authorization": "Bearer nope"}),
                    await client.get("/v1/models"),
                    await client.post("/v1/predict", json=body, headers={"Authorization": "Bearer s3cret"}),
                    await client.get("/healthz"), await client.get("/readyz"))

    missing, wrong, models, right, health, ready = run(go())
    assert missing.status_code == wrong.status_code == models.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200 and health.status_code == 200 and ready.status_code == 200


def test_without_a_key_set_no_auth_is_needed(monkeypatch):
    monkeypatch.delenv("DANLU_API_KEY", raising=False)

    async def go():
        async with client_for(create_app(StubRunner(), ServeSettings.from_env())) as client:
            return await client.post("/v1/predict", json={"inputs": "hi"})

    assert run(go()).status_code == 200


def test_bodies_over_the_limit_get_413_by_header_and_by_stream():
    big = json.dumps({"inputs": "x" * 3000}).encode()

    async def chunks():
        for i in range(0, len(big), 500):
            yield big[i:i + 500]

    async def go():
        async with client_for(create_app(StubRunner(), ServeSettings(max_body_kb=2))) as client:
            declared = await client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
            streamed = await client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
            small = await client.post("/v1/predict", json={"inputs": "x" * 100})
            return declared, streamed, small, (await client.get("/metrics")).text

    declared, streamed, small, metrics = run(go())
    assert declared.status_code == 413 and "KiB" in declared.json()["detail"]
    assert streamed.status_code == 413  # no Content-Length: counted while reading
    assert small.status_code == 200
    assert _sample(metrics, 'danlu_http_requests_total{endpoint="/v1/predict",method="POST",status="413"}') == 2


def test_invalid_bodies_get_422_naming_the_field():
    image = io.BytesIO()
    Image.new("RGB", (4, 4)).save(image, format="PNG")
    good_image = base64.b64encode(image.getvalue()).decode()

    async def go():
        text = create_app(StubRunner(), ServeSettings(max_queue=4))
        images = create_app(StubRunner(task="image-classification"), ServeSettings())
        table = create_app(StubRunner(task="tabular-classification", features=["age"], categorical=["job type"]), ServeSettings())
        out = {}
        async with client_for(text) as client:
            out["number"] = await client.post("/v1/predict", json={"inputs": ["ok", 3]})
            out["missing"] = await client.post("/v1/predict", json={"input": "ok"})
            out["empty"] = await client.post("/v1/predict", json={"inputs": []})
            out["too_many"] = await client.post("/v1/predict", json={"inputs": ["a"] * 5})
            out["not_json"] = await client.post("/v1/predict", content=b"{nope", headers={"content-type": "application/json"})
        async with client_for(images) as client:
            out["base64"] = await client.post("/v1/predict", json={"inputs": [{"image": good_image}, {"image": "%%%"}]})
            out["junk"] = await client.post("/v1/predict", json={"inputs": {"image": base64.b64encode(b"junk").decode()}})
            out["image_ok"] = await client.post("/v1/predict", json={"inputs": {"image": good_image}})
        async with client_for(table) as client:
            out["feature"] = await client.post("/v1/predict", json={"inputs": [{"age": 3}, {"age": 4, "job type": [1]}]})
            out["row_ok"] = await client.post("/v1/predict", json={"inputs": {"age": 41, "job type": "A173"}})
        return out

    out = run(go())
    assert all(out[k].status_code == 422 for k in out if not k.endswith("_ok")), {k: v.status_code for k, v in out.items()}
    locs = {k: [e["loc"] for e in v.json()["detail"]] for k, v in out.items() if not k.endswith("_ok")}
    assert locs["number"] == [["body", "inputs", 1]]
    assert ["body", "inputs"] in locs["missing"] and ["body", "input"] in locs["missing"]
    assert locs["empty"] == [["body", "inputs"]] and locs["too_many"] == [["body", "inputs"]]
    assert locs["base64"] == [["body", "inputs", 1, "image"]]
    assert locs["junk"] == [["body", "inputs", 0, "image"]]
    assert locs["feature"][0] == ["body", "inputs", 0, "job type"]
    assert all(loc[:4] == ["body", "inputs", 1, "job type"] for loc in locs["feature"][1:])
    assert out["image_ok"].status_code == 200
    assert out["row_ok"].json()["predictions"][0]["row"] == {"age": "41.0", "job type": "A173"}


def test_a_full_queue_answers_503_at_once():
    stub = StubRunner(gate=Gate())

    async def go():
        app = create_app(stub, ServeSettings(max_batch=1, max_queue=1, max_wait_ms=0))
        batcher = app.state.ctx.batcher
        async with client_for(app) as client:
            running = asyncio.create_task(client.post("/v1/predict", json={"inputs": "first"}))
            await until(lambda: stub.gate.waiting == 1, "first held in the model call")
            waiting = asyncio.create_task(client.post("/v1/predict", json={"inputs": "second"}))
            await until(lambda: batcher.pending == 1, "second filling the queue")
            refused = await client.post("/v1/predict", json={"inputs": "third"})
            # The model call is still held: the 503 cannot have waited for it.
            refused_while_held = stub.gate.waiting == 1 and not running.done()
            ready = await client.get("/readyz")
            stub.gate.open()
            return await running, await waiting, refused, refused_while_held, ready, (await client.get("/metrics")).text

    first, second, refused, refused_while_held, ready, metrics = run(go())
    assert first.status_code == second.status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused_while_held  # did not wait for the model
    assert ready.status_code == 503 and ready.json()["reason"] == "queue full"
    assert _sample(metrics, "danlu_queue_rejected_total") == 1


def test_an_unreadable_input_fails_alone_not_its_batch_mates():
    stub = StubRunner(gate=Gate(), fail_on="BROKEN")

    async def go():
        app = create_app(stub, ServeSettings(max_wait_ms=50))
        async with client_for(app) as client:
            first = asyncio.create_task(client.post("/v1/predict", json={"inputs": "fine"}))
            await until(lambda: stub.gate.waiting == 1, "the first request held in its model call")
            # The other two queue behind it, so they share the next call.
            rest = asyncio.gather(*(client.post("/v1/predict", json={"inputs": t}) for t in ("BROKEN", "also fine")))
            await until(lambda: app.state.ctx.batcher.pending == 2, "the other two requests queued")
            stub.gate.open()
            return (await first, *(await rest))

    ok1, bad, ok2 = run(go())
    assert ok1.status_code == ok2.status_code == 200
    assert bad.status_code == 422 and "BROKEN" in bad.json()["detail"]
    assert stub.batches == [1, 2, 1, 1]  # the shared call failed, then each of its two was tried alone


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_a_tabular_run_takes_json_objects(tmp_path_factory):
    from danlu.pipeline import train
    from danlu.recipe import recipe_from_dict

    recipe = recipe_from_dict({
        "name": "iris", "task": "tabular-classification",
        "data": {"source": "builtin:iris", "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "quality": {"on_fail": "warn"}, "model": {"hidden": [16]},
        "train": {"epochs": 20, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "progress": False},
    })
    run_dir = train(recipe, tmp_path_factory.mktemp("iris") / "run").root
    setosa = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}

    async def go():
        async with client_for(create_app(load_runner(run_dir), ServeSettings())) as client:
            return (await client.post("/v1/predict", json={"inputs": setosa}),
                    await client.post("/v1/predict", json={"inputs": {"sepal length (cm)": 5.1}}),
                    await client.get("/v1/models"))

    ok, missing, models = run(go())
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] == "setosa"
    assert missing.status_code == 422
    assert ["body", "inputs", 0, "petal width (cm)"] in [e["loc"] for e in missing.json()["detail"]]
    assert models.json()["data"][0]["features"] == list(setosa)


def test_with_a_key_the_schema_needs_it_and_the_docs_pages_are_off():
    stub = StubRunner(task="tabular-classification", features=["secret feature"])

    async def go():
        async with client_for(create_app(stub, ServeSettings(api_key="s3cret"))) as client:
            anonymous = {p: await client.get(p) for p in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect")}
            # A body that fails validation must not list the missing features to a client without the key.
            anonymous["predict"] = await client.post("/v1/predict", json={"inputs": {}})
            keyed = await client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"})
            return anonymous, keyed

    anonymous, keyed = run(go())
    assert anonymous["/openapi.json"].status_code == anonymous["predict"].status_code == 401
    assert all(anonymous[p].status_code == 404 for p in ("/docs", "/redoc", "/docs/oauth2-redirect"))
    assert not any("secret feature" in r.text or "stub" in r.text for r in anonymous.values())
    assert keyed.status_code == 200 and "secret feature" in keyed.text and "/v1/predict" in keyed.json()["paths"]
    assert "/openapi.json" not in keyed.json()["paths"]


def test_without_a_key_the_schema_and_the_docs_pages_are_open():
    async def go():
        async with client_for(create_app(StubRunner(), ServeSettings())) as client:
            return [await client.get(p) for p in ("/openapi.json", "/docs", "/redoc")]

    schema, docs, redoc = run(go())
    assert schema.status_code == docs.status_code == redoc.status_code == 200
    assert "/v1/predict" in schema.json()["paths"] and "swagger" in docs.text.lower()


def test_too_many_or_too_large_headers_get_431():
    async def go():
        defaults = create_app(StubRunner(), ServeSettings())
        tight = create_app(StubRunner(), ServeSettings(max_header_kb=1, max_headers=8))
        out = {}
        async with client_for(defaults) as client:
            out["300 headers"] = await client.get("/healthz", headers=[(f"x-h{i}", "1") for i in range(300)])
            out["1 MB header"] = await client.get("/healthz", headers={"x-big": "a" * 2**20})
            out["90 headers_ok"] = await client.get("/healthz", headers=[(f"x-h{i}", "1") for i in range(90)])
            out["15 KiB_ok"] = await client.get("/healthz", headers={"x-big": "a" * 15 * 1024})
            out["predict, 17 KiB"] = await client.post("/v1/predict", json={"inputs": "hi"},
                                                       headers={"x-big": "a" * 17 * 1024})
            out["metrics_ok"] = await client.get("/metrics")
        async with client_for(tight) as client:
            # httpx sends 5 headers of its own
            out["4 more, tight"] = await client.get("/healthz", headers=[(f"x-h{i}", "1") for i in range(4)])
            out["2 KiB, tight"] = await client.get("/healthz", headers={"x-big": "a" * 2048})
        return out

    out = run(go())
    assert {k: v.status_code for k, v in out.items()} == {k: 200 if k.endswith("_ok") else 431 for k in out}
    assert "more than 100 request headers" in out["300 headers"].json()["detail"]
    assert "16 KiB" in out["1 MB header"].json()["detail"] and out["1 MB header"].headers["connection"] == "close"
    assert "more than 8" in out["4 more, tight"].json()["detail"] and "1 KiB" in out["2 KiB, tight"].json()["detail"]
    assert _sample(out["metrics_ok"].text,
                   'danlu_http_requests_total{endpoint="/v1/predict",method="POST",status="431"}') == 1

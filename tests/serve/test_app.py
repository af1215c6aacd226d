"""The HTTP surface in-process: predictions from a real trained run, validation, auth, limits, metrics."""

import asyncio
import base64
import io
import json

import pytest
from PIL import Image

from danlu.serve.app import ServeSettings, create_app
from danlu.serve.runner import load_runner
from servekit import StubRunner, client_for, run


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

    async def go():
        async with client_for(create_app(runner, ServeSettings(max_wait_ms=50))) as client:
            alone = [(await client.post("/v1/predict", json={"inputs": t})).json() for t in texts]
            together = await asyncio.gather(*(client.post("/v1/predict", json={"inputs": t}) for t in texts))
            metrics = (await client.get("/metrics")).text
            return alone, [r.json() for r in together], metrics

    alone, together, metrics = run(go())
    for a, b in zip(alone, together):  # padding in a shared batch must not change any answer
        assert a["predictions"][0]["label"] == b["predictions"][0]["label"]
        assert abs(a["predictions"][0]["score"] - b["predictions"][0]["score"]) < 1e-4
    # 5 lone calls + the concurrent 5 in fewer calls than requests
    assert _sample(metrics, "danlu_batch_size_count") < 10
    assert _sample(metrics, "danlu_batch_size_sum") == 10


def test_concurrent_requests_share_model_calls():
    stub = StubRunner(delay=0.05)

    async def go():
        async with client_for(create_app(stub, ServeSettings(max_batch=8, max_wait_ms=30))) as client:
            replies = await asyncio.gather(*(client.post("/v1/predict", json={"inputs": f"t{i}"}) for i in range(16)))
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
    stub = StubRunner(delay=0.5)

    async def go():
        app = create_app(stub, ServeSettings(max_batch=1, max_queue=1, max_wait_ms=0))
        async with client_for(app) as client:
            running = asyncio.create_task(client.post("/v1/predict", json={"inputs": "first"}))
            await asyncio.sleep(0.1)  # first is in the model call now
            waiting = asyncio.create_task(client.post("/v1/predict", json={"inputs": "second"}))
            await asyncio.sleep(0.05)  # second fills the queue
            loop = asyncio.get_running_loop()
            began = loop.time()
            refused = await client.post("/v1/predict", json={"inputs": "third"})
            refused_after = loop.time() - began
            ready = await client.get("/readyz")
            return await running, await waiting, refused, refused_after, ready, (await client.get("/metrics")).text

    first, second, refused, refused_after, ready, metrics = run(go())
    assert first.status_code == second.status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused_after < 0.3  # did not wait for the model
    assert ready.status_code == 503 and ready.json()["reason"] == "queue full"
    assert _sample(metrics, "danlu_queue_rejected_total") == 1


def test_an_unreadable_input_fails_alone_not_its_batch_mates():
    stub = StubRunner(delay=0.02, fail_on="BROKEN")

    async def go():
        async with client_for(create_app(stub, ServeSettings(max_wait_ms=50))) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={"inputs": t})
                                          for t in ("fine", "BROKEN", "also fine")))

    ok1, bad, ok2 = run(go())
    assert ok1.status_code == ok2.status_code == 200
    assert bad.status_code == 422 and "BROKEN" in bad.json()["detail"]


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

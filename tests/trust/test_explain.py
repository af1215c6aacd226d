"""Integrated Gradients: completeness on every task that has a gradient input, global importances that find
the one feature the label depends on, the renderings, POST /v1/explain, and a model without gradients."""

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from danlu.errors import DanluError
from danlu.inference import Forward, TorchForward
from danlu.serve.app import ServeSettings, create_app
from danlu.serve.runner import ModelInfo, TaskRunner
from danlu.trust.explain import explain_frame, global_importance, map_png, require_gradients, tokens_html
from danlu.trust.gradients import logits_of, reference, split_batch
from trustkit import trained_sample


@pytest.fixture(scope="module", params=["tabular-classification", "text-classification", "image-classification"])
def trained(request, tmp_path_factory):
    torch.set_num_threads(1)
    return trained_sample(request.param, tmp_path_factory.mktemp(request.param))


def test_attributions_add_up_to_the_output_difference_within_five_percent(trained):
    task, model = trained.task, trained.model
    rows = trained.test.head(6)
    explained = explain_frame(task, model, rows)
    key = task.spec.capabilities.gradient_input
    batch = task.collate([task.encode(rows)[i] for i in range(len(rows))])
    x, extras = split_batch(model, batch, key)
    with torch.no_grad():  # the two ends of the path, computed here, not taken from the explanation
        ends = logits_of(model, key, extras, x), logits_of(model, key, extras, reference(model, key, x))
    checked = 0
    for i, item in enumerate(explained):
        target = task.labels.index(item["label"])
        gap = float(ends[0][i, target] - ends[1][i, target])
        total = sum(u["value"] for u in item["attributions"]) if "attributions" in item else float(np.sum(item["map"]))
        if abs(gap) < 0.05:  # a class logit the input barely moves (a tiny model's): the sum must be as small
            assert abs(total - gap) < 0.005, (i, total, gap)
            continue
        checked += 1
        assert abs(total - gap) <= 0.05 * abs(gap), (i, total, gap)
    assert checked >= 3, "too few rows whose output moves for the check to say anything"


def test_the_feature_the_label_depends_on_ranks_first(tmp_path):
    rng = np.random.default_rng(0)
    rows = 240
    signal = rng.normal(size=rows)
    frame = pd.DataFrame({"signal": signal, "noise_a": rng.normal(size=rows), "noise_b": rng.normal(size=rows),
                          "colour": rng.choice(["red", "blue"], size=rows), "label": np.where(signal > 0, "yes", "no")})
    from danlu.recipe import recipe_from_dict
    from danlu.tasks import make_task
    from danlu.train import fitter

    recipe = recipe_from_dict({"name": "x", "task": "tabular-classification", "data": {"source": "builtin:iris"},
                               "model": {"hidden": [16]}, "train": {"epochs": 30, "batch_size": 32, "lr": 0.01,
                                                                      "optimizer": "adam", "progress": False}})
    task = make_task(recipe)
    task.setup(frame, ["signal", "noise_a", "noise_b", "colour"], ["colour"])
    torch.manual_seed(0)
    model = fitter(task.engine)(task.build_model(), task.encode(frame), None, task.collate, recipe.train,
                                tmp_path / "c", tmp_path / "h.json", None, None, True, False).model
    ranked = global_importance(task, model, frame, limit=100)
    assert ranked[0]["feature"] == "signal" and ranked[0]["importance"] > 0.5, ranked
    assert {r["feature"] for r in ranked} == {"signal", "noise_a", "noise_b", "colour"}
    assert abs(sum(r["importance"] for r in ranked) - 1) < 1e-9


def test_text_renders_as_shaded_tokens_and_an_image_as_a_png(trained):
    item = explain_frame(trained.task, trained.model, trained.test.head(1))[0]
    if "map" in item:
        assert map_png(item)[:8] == b"\x89PNG\r\n\x1a\n"
    elif "text" in trained.test:
        page = tokens_html([item], trained.test["text"].head(1).tolist())
        assert page.count("<span") == len(item["attributions"]) and "rgba(" in page


class _NoGradients(Forward):  # what an ONNX variant's Forward is to the server: outputs, no network
    def __call__(self, batch):
        raise AssertionError("not called")


def test_post_explain_answers_with_attributions_and_says_why_without_gradients(trained):
    task = trained.task
    info = ModelInfo(name="m", task=task.name, card=task.card())
    body = {"inputs": _request_inputs(trained)}  # what /v1/predict takes
    with TestClient(create_app(TaskRunner(task, TorchForward(trained.model), info), ServeSettings())) as client:
        answer = client.post("/v1/explain", json=body)
    assert answer.status_code == 200, answer.text
    found = answer.json()["explanations"]
    assert len(found) == len(body["inputs"]) and all("label" in e for e in found)
    with TestClient(create_app(TaskRunner(task, _NoGradients(), info), ServeSettings())) as client:
        refused = client.post("/v1/explain", json=body)
    assert refused.status_code == 404 and "no gradients" in refused.json()["detail"], refused.text
    with pytest.raises(DanluError, match="no gradients"):
        require_gradients(task, None)


def _request_inputs(trained):
    rows = trained.test.head(2).drop(columns=["label"])
    if "text" in rows:
        return rows["text"].tolist()
    if "image" in rows:
        import base64
        import io

        from PIL import Image

        out = []
        for value in rows["image"]:
            buffer = io.BytesIO()
            (value if isinstance(value, Image.Image) else Image.fromarray(np.asarray(value))).save(buffer, "PNG")
            out.append({"image": base64.b64encode(buffer.getvalue()).decode()})
        return out
    return rows.to_dict(orient="records")

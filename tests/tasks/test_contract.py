"""The task contract, run over every registered task on the task's own sample data.

A new task gets these checks by registering: setup -> encode -> collate -> a finite loss; a short
training; evaluate with the declared metrics; predictions valid against the task's serve schema;
save -> load -> the same predictions; the ONNX export agreeing with PyTorch where the task declares
it; the baselines; the report sections.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from danlu import registry
from danlu.inference import TorchForward, outputs
from danlu.recipe import recipe_from_dict
from danlu.serve.schemas import request_model, response_model
from danlu.tasks import load_task, make_task
from danlu.train import fitter


class Trained:
    def __init__(self, spec, tmp_path):
        self.spec = spec
        sample = spec.make_sample(60, 0)
        self.sample = sample
        self.recipe = recipe_from_dict({"name": "contract", "task": spec.name, "data": {"source": "builtin:iris"},
                                        **sample.recipe})
        frame = sample.frame
        self.train, self.test = frame.iloc[:48].reset_index(drop=True), frame.iloc[48:].reset_index(drop=True)
        self.task = make_task(self.recipe)
        self.task.setup(self.train, sample.features, sample.categorical)
        torch.manual_seed(0)
        self.untrained = self.task.build_model()
        self.train_ds = self.task.encode(self.train, train=True)
        self.first_batch = self.task.collate([self.train_ds[i] for i in range(min(4, len(self.train_ds)))])
        with torch.no_grad():
            self.first_loss = float(self.untrained(**self.first_batch).loss)
        fit = fitter(self.task.engine)
        self.model = fit(self.untrained, self.train_ds, None, self.task.collate, self.recipe.train,
                         tmp_path / "checkpoints", tmp_path / "history.json", compute_metrics=None, metric=None,
                         greater_is_better=True, large_model=self.task.large_model,
                         group_by_length=self.task.group_by_length).model.eval()
        self.inputs = self.test.drop(columns=["label"], errors="ignore")


@pytest.fixture(scope="module", params=registry.names())
def trained(request, tmp_path_factory):
    torch.set_num_threads(1)
    return Trained(registry.get(request.param), tmp_path_factory.mktemp(request.param))


def test_a_batch_gives_a_finite_loss(trained):
    assert math.isfinite(trained.first_loss)


def test_evaluate_reports_the_main_metric_and_only_declared_metrics(trained):
    metrics = trained.task.evaluate(TorchForward(trained.model), trained.task.encode(trained.test))
    spec = trained.spec
    assert spec.main_metric in metrics and math.isfinite(metrics[spec.main_metric])
    scalars = {k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert scalars - {"n"} <= set(spec.metrics), scalars - set(spec.metrics)


def test_predictions_are_valid_against_the_serve_schema(trained):
    task = trained.task
    predictions = task.predict(TorchForward(trained.model), trained.inputs)
    # A task whose one input is a whole frame of rows (a forecaster's history) answers once for it.
    assert len(predictions) == (1 if task.frame_is_one_input else len(trained.inputs))
    item = task.response_item()
    for prediction in predictions:
        item.model_validate(prediction)
    response_model(task).model_validate({"predictions": predictions, "model": "contract"})
    assert request_model(task, 16).model_json_schema()  # the request schema builds for this task


def test_save_then_load_gives_the_same_predictions(trained, tmp_path):
    task = trained.task
    task.save(trained.model, tmp_path)
    loaded_task, loaded = load_task(tmp_path)
    assert loaded_task.name == trained.spec.name and loaded_task.card()["task"] == trained.spec.name
    before = task.predict(TorchForward(trained.model), trained.inputs)
    after = loaded_task.predict(TorchForward(loaded), trained.inputs)
    for a, b in zip(before, after):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], abs=1e-4)
            elif isinstance(a[key], dict):
                assert a[key] == pytest.approx(b[key], abs=1e-4)
            else:
                assert a[key] == b[key]


def test_the_onnx_export_agrees_with_pytorch(trained):
    if "onnx" not in trained.spec.capabilities.export:
        pytest.skip(f"{trained.spec.name} declares no ONNX export")
    import onnxruntime as ort

    from danlu.compress.build import export_onnx

    task = trained.task
    dataset = task.encode(trained.test)
    example = task.collate([dataset[i] for i in range(2)])
    proto, _ = export_onnx(trained.model, example, task.sequence_inputs)
    session = ort.InferenceSession(task.export_graph(proto).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, task.export_feeds(trained.inputs))[0]
    expected, _ = outputs(task, TorchForward(trained.model), dataset)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_baselines_use_the_main_metric(trained):
    found = trained.task.baseline({"train": trained.train, "test": trained.test}, ["test"])
    assert set(found) == {"test"} and found["test"]
    names = trained.task.baseline_names()
    for name, metrics in found["test"].items():
        assert name in names  # the report can say what each baseline is
        assert math.isfinite(metrics[trained.spec.main_metric])


def test_report_sections_and_extras_are_blocks(trained):
    metrics = {"test": trained.task.evaluate(TorchForward(trained.model), trained.task.encode(trained.test))}
    extra, sections = trained.task.after_training(trained.model, {"train": trained.train, "test": trained.test})
    assert isinstance(extra, dict)
    for heading, blocks in trained.task.report_sections(metrics) + sections:
        assert isinstance(heading, str) and all(isinstance(b, tuple) and isinstance(b[0], str) for b in blocks)


def test_every_task_has_a_starter_a_summary_and_sample_data():
    for spec in registry.specs():
        assert spec.starter and spec.summary and spec.sample, spec.name
        assert isinstance(spec.make_sample(10, 1).frame, pd.DataFrame)

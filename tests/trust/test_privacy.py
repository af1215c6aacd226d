"""DP-SGD through Opacus: the spent epsilon within the budget, a model that still learns, and one clear
message for a task or a layer it cannot make private. Then the run-level commands on a private run."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from danlu import registry
from danlu.cli import app
from danlu.errors import DanluError
from danlu.inference import TorchForward
from danlu.recipe import recipe_from_dict
from danlu.tasks import make_task
from danlu.trust.privacy import auto_delta, freeze_shared, private_fitter

runner = CliRunner()


def _private(name, tmp_path, epsilon, model=None, rows=200):
    spec = registry.get(name)
    sample = spec.make_sample(rows, 0)
    body = {"name": "p", "task": name, "data": {"source": "builtin:iris"}, **sample.recipe,
            "privacy": {"epsilon": epsilon}}
    if model:
        body["model"] = {**body.get("model", {}), **model}
    recipe = recipe_from_dict(body)
    cut = int(rows * 0.75)
    train, test = sample.frame.iloc[:cut].reset_index(drop=True), sample.frame.iloc[cut:].reset_index(drop=True)
    task = make_task(recipe)
    task.setup(train, sample.features, sample.categorical)
    torch.manual_seed(0)
    result = private_fitter(recipe.privacy)(task.build_model(), task.encode(train, train=True), task.encode(test),
                                            task.collate, recipe.train, tmp_path / "c", tmp_path / "h.json",
                                            task.trainer_metrics, "accuracy", True, False)
    accuracy = task.evaluate(TorchForward(result.model), task.encode(test))["accuracy"]
    return result, accuracy, len(train)


def test_the_spent_epsilon_stays_within_the_budget_and_is_tracked_per_epoch(tmp_path):
    epsilon = 8.0
    result, accuracy, n = _private("tabular-classification", tmp_path, epsilon)
    spent = result.extra["privacy"]
    assert 0.8 * epsilon < spent["epsilon"] <= epsilon
    assert spent["delta"] == auto_delta(n) < 1 / n and spent["steps"] == result.steps > 0
    per_epoch = [e["epsilon"] for e in json.loads((tmp_path / "h.json").read_text()) if "epsilon" in e]
    assert per_epoch == sorted(per_epoch) and per_epoch[-1] == pytest.approx(spent["epsilon"])
    assert any("eval_accuracy" in e for e in result.history)
    assert accuracy >= 0.8  # the sample's label follows its features: a private model still learns it


def test_an_image_mlp_trains_privately_and_batch_norm_is_refused_by_name(tmp_path):
    result, accuracy, _ = _private("image-classification", tmp_path / "mlp", 8.0, model={"arch": "mlp"}, rows=80)
    assert result.extra["privacy"]["epsilon"] <= 8.0
    with pytest.raises(DanluError, match=r"Opacus cannot train these layers privately: .*\(BatchNorm2d\).*BatchNorm"):
        _private("image-classification", tmp_path / "cnn", 8.0, model={"arch": "cnn"}, rows=80)


def _cli_recipe(tmp_path, body):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_a_privacy_section_on_a_task_it_cannot_train_is_one_clear_message(tmp_path):
    (tmp_path / "t.txt").write_text("some text to model\nand more of it\n")
    body = {"name": "t", "task": "causal-lm", "data": {"source": "t.txt"}, "privacy": {"epsilon": 3}}
    result = runner.invoke(app, ["check", str(_cli_recipe(tmp_path, body))])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "privacy" in result.output and "tabular-classification" in result.output and "causal-lm" in result.output


def test_parameters_whose_input_the_whole_batch_shares_are_frozen_by_name():
    for name, expected in (("text-classification", ["bert.embeddings.position_embeddings.weight"]),
                           ("tabular-classification", [])):
        sample = registry.get(name).make_sample(16, 0)
        recipe = recipe_from_dict({"name": "p", "task": name, "data": {"source": "builtin:iris"}, **sample.recipe})
        task = make_task(recipe)
        task.setup(sample.frame, sample.features, sample.categorical)
        model = task.build_model()
        items = task.encode(sample.frame)
        assert freeze_shared(model, task.collate([items[i] for i in range(8)])) == expected
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert frozen == expected and all(p.grad is None for p in model.parameters())


IRIS = {"name": "iris", "task": "tabular-classification",
        "data": {"source": "builtin:iris", "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "quality": {"max_leakage": 0.05}, "model": {"hidden": [16]},
        "train": {"epochs": 8, "batch_size": 16, "optimizer": "adam", "lr": 0.02, "progress": False},
        "privacy": {"epsilon": 8},
        "evaluate": {"robustness": {"strengths": [0.0, 0.3], "attack": [0.0, 0.5]}, "explain": True}}


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iris")
    result = runner.invoke(app, ["train", str(_cli_recipe(tmp, IRIS)), "-o", str(tmp / "run")])
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_a_private_run_records_epsilon_robustness_and_explanations(private_run):
    metrics = json.loads((private_run / "metrics.json").read_text())
    assert 0 < metrics["privacy"]["epsilon"] <= 8
    table = metrics["robustness"]
    zero = [r["metric"] for r in table["rows"] if r["strength"] == 0.0]
    assert zero == [table["clean"]] * 2 and table["clean"] == metrics["test"]["accuracy"]
    report = (private_run / "report.md").read_text()
    for heading in ("## Differential privacy", "## Robustness", "## Explanations"):
        assert heading in report
    assert "epsilon spent" in report and "petal" in report.split("## Explanations")[1]


def test_danlu_robust_and_explain_on_the_run(private_run):
    result = runner.invoke(app, ["robust", str(private_run), "--strength", "0", "--strength", "0.5",
                                 "--perturbation", "missing", "--attack", "0.1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((private_run / "robustness.json").read_text())
    assert [r["strength"] for r in saved["rows"]] == [0.0, 0.5] and len(saved["attacks"]) == 2
    assert (private_run / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    row = json.dumps({"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
                      "petal width (cm)": 0.2})
    result = runner.invoke(app, ["explain", str(private_run), row])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.splitlines()[0])
    assert line["label"] and len(line["attributions"]) == 4 and line["completeness_error"] < 0.05


def test_bad_robust_and_explain_requests_are_one_clear_message(private_run, tmp_path):
    result = runner.invoke(app, ["robust", str(private_run), "--strength", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "--strength" in result.output
    result = runner.invoke(app, ["robust", str(private_run), "--perturbation", "blur"])
    assert result.exit_code == 1 and "'blur' does not apply" in result.output, result.output


def test_an_onnx_variant_is_measured_for_match_and_cannot_be_explained(private_run):
    result = runner.invoke(app, ["compress", str(private_run), "--variants", "onnx-fp32", "--latency-examples", "5",
                                 "--batch", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["robust", str(private_run), "--strength", "0", "--strength", "0.5",
                                 "--variant", "onnx-fp32"])
    assert result.exit_code == 0, result.output
    worst = json.loads((private_run / "robustness.json").read_text())["variants"]
    assert set(worst) == {"pytorch-fp32", "onnx-fp32"} and abs(worst["pytorch-fp32"] - worst["onnx-fp32"]) < 0.05
    result = runner.invoke(app, ["match", str(private_run), "--min-robust-metric", str(min(worst.values()))])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["match", str(private_run), "--min-robust-metric", "1.01"])
    assert result.exit_code == 1 and "worst accuracy under perturbation" in result.output, result.output
    result = runner.invoke(app, ["explain", str(private_run), "{}", "--variant", "onnx-fp32"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "no gradients" in result.output and "ONNX" in result.output

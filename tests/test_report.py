"""The run report: files, plots, escaping, and graceful omission of missing parts."""

import base64

import numpy as np

from danlu.evaluate.metrics import classification_metrics, regression_metrics, summarize_folds
from danlu.report import ReportInputs, write_report
from danlu.tasks import new_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


def _history():
    log = [{"step": s, "epoch": s / 10, "loss": 1.0 / s} for s in range(1, 21)]
    log += [{"step": 10, "epoch": 1.0, "eval_loss": 0.4, "eval_accuracy": 0.7},
            {"step": 20, "epoch": 2.0, "eval_loss": 0.3, "eval_accuracy": 0.8},
            {"step": 20, "epoch": 2.0, "train_loss": 0.2, "train_runtime": 3.1}]
    return log


def _sections(metrics):
    return new_task("image-classification").report_sections(metrics)  # a classifier's confusion matrices


def _classification_info():
    labels = ["cat", "dog", EVIL]
    val = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], labels)
    test = classification_metrics([0, 1, 1, 2], [0, 1, 0, 2], labels, probs=np.full((4, 3), 1 / 3))
    metrics = {"validation": val, "test": test}
    return ReportInputs(
        name="pets", task="image-classification", status="done", created="2024-01-01T00:00:00",
        main_metric="accuracy", metrics=metrics, history=_history(),
        data_report_md="## Quality\n\n- 4 rows | ok\n",
        cross_validation=summarize_folds([{"accuracy": 0.8}, {"accuracy": 0.9}]),
        model={"arch": "tiny-cnn", "parameters": 12345, "trainable": 12000, "source": "scratch"},
        training={"seconds": 3.2, "epochs": 2, "steps": 20, "precision": "fp32", "compile": False, "device": "cpu"},
        recipe_yaml="task: classification\nname: pets\n", notes=["class <dog> is rare"],
        task_sections=_sections(metrics),
        baselines={"validation": {"majority": {"accuracy": 0.5}}, "test": {"majority": {"accuracy": 0.25}}},
        baseline_names={"majority": "always the most frequent class"},
        warnings=["the model does no better than <majority>"],
    )


def test_classification_report(tmp_path):
    md_path, html_path = write_report(tmp_path, _classification_info())
    assert md_path == tmp_path / "report.md" and html_path == tmp_path / "report.html"
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == ["confusion_test.png", "confusion_validation.png", "loss.png"]
    for name in plots:
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_MAGIC)
    assert not list(tmp_path.glob("**/*.tmp"))  # atomic writes leave nothing behind

    md = md_path.read_text(encoding="utf-8")
    for name in plots:
        assert f"](plots/{name})" in md
    assert md.index("accuracy (main)") < md.index("f1_macro")  # main metric first
    assert "## Quality\n\n- 4 rows | ok" in md  # data report verbatim
    assert "```yaml\ntask: classification" in md
    assert "0.8500 ± 0.0500" in md
    assert "12,345" in md
    assert "<script>" not in md

    page = html_path.read_text(encoding="utf-8")
    loss_b64 = base64.b64encode((tmp_path / "plots" / "loss.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{loss_b64}"' in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;dog&gt;" in page
    assert "<details>" in page and "http" not in page.replace("http-equiv", "")


def test_baselines_and_warnings_come_first(tmp_path):
    md_path, html_path = write_report(tmp_path, _classification_info())
    md = md_path.read_text(encoding="utf-8")
    assert md.index("## Warnings") < md.index("## Metrics") < md.index("## Against the baselines")
    assert "| model | 0.7500 | 0.7500 |" in md
    assert "| majority (always the most frequent class) | 0.5000 | 0.2500 |" in md
    assert "&lt;majority&gt;" in html_path.read_text(encoding="utf-8")


def test_regression_report(tmp_path):
    y_true, y_pred = [1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.2, 3.7]
    info = ReportInputs(name="prices", task="tabular-regression", main_metric="rmse",
                        metrics={"test": regression_metrics(y_true, y_pred)},
                        history=[{"step": 1, "epoch": 1.0, "loss": 2.0}, {"step": 2, "epoch": 2.0, "loss": 1.0}])
    md_path, html_path = write_report(tmp_path, info)
    assert (tmp_path / "plots" / "loss.png").read_bytes().startswith(PNG_MAGIC)
    md = md_path.read_text(encoding="utf-8")
    assert "rmse (main)" in md
    assert "Classes" not in md and "confusion" not in md
    assert "data:image/png;base64," in html_path.read_text(encoding="utf-8")


def test_minimal_info(tmp_path):
    md_path, html_path = write_report(tmp_path, ReportInputs(name="bare", task="tabular-classification"))
    assert md_path.read_text(encoding="utf-8").startswith("# bare")
    assert "<h1>bare</h1>" in html_path.read_text(encoding="utf-8")
    assert not (tmp_path / "plots").exists()


def test_many_classes_and_empty_parts(tmp_path):
    labels = [f"a very long class label number {i}" for i in range(40)]
    y = np.arange(40).repeat(2)
    metrics = {"test": classification_metrics(y, y[::-1], labels), "validation": {}}
    info = ReportInputs(name="many", task="tabular-classification", metrics=metrics, task_sections=_sections(metrics))
    md_path, _ = write_report(tmp_path, info)
    assert (tmp_path / "plots" / "confusion_test.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "plots" / "loss.png").exists()
    assert "Training curve" not in md_path.read_text(encoding="utf-8")


def test_the_baseline_verdict_warns_when_the_model_is_no_better():
    from danlu import registry
    from danlu.pipeline.baselines import compare

    spec = registry.get("tabular-classification")
    names = {"linear": "logistic regression"}
    worse = compare({"validation": {"accuracy": 0.475}}, {"validation": {"linear": {"accuracy": 0.525}}},
                    "accuracy", spec, names)
    assert len(worse) == 1 and "no better than the linear baseline" in worse[0] and "0.4750" in worse[0]
    assert compare({"validation": {"accuracy": 0.9}}, {"validation": {"linear": {"accuracy": 0.8}}},
                   "accuracy", spec, names) == []
    # Both perfect on validation tells nothing: the verdict moves on to test.
    tied = compare({"validation": {"accuracy": 1.0}, "test": {"accuracy": 0.95}},
                   {"validation": {"linear": {"accuracy": 1.0}}, "test": {"linear": {"accuracy": 0.96}}},
                   "accuracy", spec, names)
    assert len(tied) == 1 and "on test" in tied[0]
    lower = registry.get("tabular-regression")  # rmse: lower is better
    assert compare({"validation": {"rmse": 2.0}}, {"validation": {"mean": {"rmse": 1.0}}}, "rmse", lower, {})
    assert not compare({"validation": {"rmse": 0.5}}, {"validation": {"mean": {"rmse": 1.0}}}, "rmse", lower, {})

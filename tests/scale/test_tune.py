"""danlu tune: a short study on iris, its outputs, pruning, shared and resumed studies, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from danlu.cli import app
from danlu.recipe import load_recipe
from danlu.run import Run
from danlu.scale.tune import PruneWatcher, tune

from .conftest import write_recipe

SPACE = {"train.lr": {"low": 0.001, "high": 0.05, "log": True}, "model.hidden": {"choices": [[8], [32]]}}


def _tuned(iris, **tune_cfg):
    return {**iris, "tune": {"space": SPACE, "trials": 3, "startup": 2, **tune_cfg}}


def _clean_failure(args, *fragments):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_a_study_writes_the_best_recipe_a_report_and_tests_only_the_best(tmp_path, iris):
    path = write_recipe(tmp_path, _tuned(iris))
    result = tune(path, runs_root=tmp_path / "runs")

    study = optuna.load_study(study_name="iris", storage=result.storage)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3
    best = study.best_trial
    assert result.best["number"] == best.number and result.best["value"] == best.value

    recipe = load_recipe(result.best_recipe)  # a complete recipe, trainable as it is
    assert recipe.train.lr == pytest.approx(best.params["train.lr"]) and str(recipe.model.hidden) == best.params["model.hidden"]
    assert recipe.tune is None and recipe.evaluate.splits == ["validation", "test"]

    for trial in finished:  # each trial a run of its own, judged on validation only
        metrics = Run(trial.user_attrs["run"]).metrics()
        assert "test" not in metrics and metrics["validation"]["accuracy"] == trial.user_attrs["value"]
    assert 0 <= result.best["test"]["accuracy"] <= 1

    report = result.report.read_text()
    assert "| trial | state | model.hidden | train.lr |" in report and "test accuracy" in report
    assert "## Parameter importances" in report and (result.folder / "tune_history.png").stat().st_size > 0


def test_the_pruner_stops_a_trial_worse_than_the_median():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    for step in (1, 2, 3):
        good.report(0.9, step)
    study.tell(good, 0.9)
    bad = PruneWatcher(study.ask(), "accuracy")
    assert bad.on_evaluation(1, {"eval_loss": 2.0}) is False  # no metric, nothing to judge
    assert bad.on_evaluation(1, {"eval_accuracy": 0.3}) is True and bad.pruned_at == 1
    fine = PruneWatcher(study.ask(), "accuracy")
    assert fine.on_evaluation(1, {"eval_accuracy": 0.95}) is False


def test_a_pruned_trial_stops_training_early(tmp_path, iris):
    iris["train"]["epochs"] = 8
    # The first trial learns; every later one has a rate too small to learn in 8 epochs.
    body = _tuned(iris, trials=2, startup=1)
    body["tune"]["space"] = {"train.lr": {"choices": [0.05, 1e-6]}}
    path = write_recipe(tmp_path, body)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="iris", storage=storage, direction="maximize")
    study.enqueue_trial({"train.lr": 0.05})
    study.enqueue_trial({"train.lr": 1e-6})
    tune(path, storage=storage, runs_root=tmp_path / "runs")
    trials = optuna.load_study(study_name="iris", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    history = Run(trials[1].user_attrs["run"]).root / "history.json"
    steps = [e["step"] for e in yaml.safe_load(history.read_text()) if "eval_accuracy" in e]
    assert steps and max(steps) < 8 * 6  # stopped before its eighth epoch (6 steps each)


def _tune_process(path, tmp_path, study="shared", trials=4):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "danlu.cli", "tune", str(path), "--trials", str(trials),
                             "--storage", f"sqlite:///{tmp_path / 'shared.db'}", "--study", study,
                             "--runs-root", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_two_processes_share_one_sqlite_study(tmp_path, iris):
    path = write_recipe(tmp_path, _tuned(iris))
    procs = [_tune_process(path, tmp_path), _tune_process(path, tmp_path)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'shared.db'}").trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # none lost, none twice
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    # Each process stops once the study holds 4; one still running then finishes its trial.
    assert 4 <= len(finished) == len(trials) <= 5
    assert {t.user_attrs["pid"] for t in trials} == {p.pid for p in procs}  # both did work
    runs = sorted(p.name for p in (tmp_path / "runs" / "tune-shared").glob("trial-*"))
    assert runs == sorted(f"trial-{n}" for n in numbers)
    assert all(Run(t.user_attrs["run"]).state()["status"] == "done" for t in trials)


def test_a_killed_study_continues_with_the_same_command(tmp_path, iris):
    iris["train"].update(epochs=40, checkpoint_every="epoch")
    path = write_recipe(tmp_path, _tuned(iris, trials=2))
    first = _tune_process(path, tmp_path, "resumed", trials=2)
    checkpoints = tmp_path / "runs" / "tune-resumed" / "trial-0" / "checkpoints"
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.poll() else "slow"
        time.sleep(0.05)  # polling for the file, not standing in for it
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = _tune_process(path, tmp_path, "resumed", trials=2)
    text = second.communicate(timeout=300)[0]
    assert second.returncode == 0, text
    assert "1 requeued" in text
    trials = optuna.load_study(study_name="resumed", storage=f"sqlite:///{tmp_path / 'shared.db'}").trials
    assert trials[0].state.name == "FAIL"
    retried = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retried) == 1 and retried[0].params == trials[0].params
    assert retried[0].user_attrs["run"].endswith("trial-0")  # the killed trial's run, resumed
    assert Run(retried[0].user_attrs["run"]).state()["status"] == "done"
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == 2


def test_a_range_on_a_key_that_does_not_exist_is_one_clear_message(tmp_path, iris):
    body = _tuned(iris)
    body["tune"]["space"] = {"train.lrate": {"low": 0.001, "high": 0.1}}
    _clean_failure(["tune", write_recipe(tmp_path, body), "--runs-root", tmp_path / "runs"],
                   "tune.space.train.lrate", "'train.lrate' is not a recipe key; did you mean 'train.lr'?")
    body["tune"]["space"] = {"train.batch_size": {"low": 0, "high": 8}}
    _clean_failure(["tune", write_recipe(tmp_path, body), "--runs-root", tmp_path / "runs"],
                   "tune.space.train.batch_size", "the value 0 does not make a valid recipe")
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_storage_is_one_clear_message(tmp_path, iris):
    path = write_recipe(tmp_path, _tuned(iris))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _clean_failure(["tune", path, "--storage", f"sqlite:///{blocker}/study.db", "--runs-root", tmp_path / "runs"],
                   "--storage: cannot")
    _clean_failure(["tune", path, "--storage", "postgresql://nobody@127.0.0.1:9/none", "--runs-root",
                    tmp_path / "runs"], "--storage: cannot open the study database at postgresql://")

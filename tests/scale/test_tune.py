"""danlu tune: a short study on iris, its outputs, pruning, shared and resumed studies, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from danlu.recipe import load_recipe
from danlu.run import Run
from danlu.scale.tune import PruneWatcher, tune

from .conftest import clean_failure, write_recipe

SPACE = {"train.lr": {"low": 0.001, "high": 0.05, "log": True}, "model.hidden": {"choices": [[8], [32]]}}


def _tuned(iris, **tune_cfg):
    return {**iris, "tune": {"space": SPACE, "trials": 3, "startup": 2, **tune_cfg}}


def test_a_study_prunes_writes_the_best_recipe_and_a_report_and_tests_only_the_best(tmp_path, iris):
    iris["train"]["epochs"] = 8
    path = write_recipe(tmp_path, _tuned(iris, startup=1))
    storage = f"sqlite:///{tmp_path / 's.db'}"
    # The first trial learns; the second has a rate too small to learn in 8 epochs and is pruned.
    queued = optuna.create_study(study_name="iris", storage=storage, direction="maximize")
    queued.enqueue_trial({"train.lr": 0.05, "model.hidden": "[32]"})
    queued.enqueue_trial({"train.lr": 0.001, "model.hidden": "[8]"})
    result = tune(path, storage=storage, runs_root=tmp_path / "runs")

    study = optuna.load_study(study_name="iris", storage=storage)
    assert [t.state.name for t in study.trials][:2] == ["COMPLETE", "PRUNED"] and len(study.trials) == 3
    pruned = Run(study.trials[1].user_attrs["run"])
    evals = [e["step"] for e in json.loads(pruned.history_path.read_text()) if "eval_accuracy" in e]
    assert evals and max(evals) < 8 * 6  # stopped before its eighth epoch (6 steps each)

    best = study.best_trial
    assert result.best["number"] == best.number and result.best["value"] == best.value
    recipe = load_recipe(result.best_recipe)  # a complete recipe, trainable as it is
    assert recipe.train.lr == pytest.approx(best.params["train.lr"]) and str(recipe.model.hidden) == best.params["model.hidden"]
    assert recipe.tune is None and recipe.evaluate.splits == ["validation", "test"]
    for trial in study.trials:  # each trial a run of its own, judged on validation only
        metrics = Run(trial.user_attrs["run"]).metrics()
        assert "test" not in metrics and metrics["validation"]["accuracy"] == trial.user_attrs["value"]
    assert 0 <= result.best["test"]["accuracy"] <= 1

    report = result.report.read_text()
    assert "| trial | state | model.hidden | train.lr |" in report and "test accuracy" in report and "| pruned |" in report
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


def _tune_process(path, tmp_path, trials):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "danlu.cli", "tune", str(path), "--trials", str(trials),
                             "--storage", f"sqlite:///{tmp_path / 'shared.db'}", "--study", "shared",
                             "--runs-root", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study_and_a_killed_one_continues_it(tmp_path, iris):
    iris["train"].update(epochs=30, checkpoint_every="epoch")
    path = write_recipe(tmp_path, _tuned(iris, trials=4))
    procs = {p.pid: p for p in (_tune_process(path, tmp_path, 4), _tune_process(path, tmp_path, 4))}
    folder = tmp_path / "runs" / "tune-shared"
    deadline = time.monotonic() + 240
    while not any(folder.glob("trial-*/checkpoints/checkpoint-*/trainer_state.json")):
        assert all(p.poll() is None for p in procs.values()), [p.stdout.read() for p in procs.values() if p.poll()]
        assert time.monotonic() < deadline, "no checkpoint in 240 s"
        time.sleep(0.05)  # polling for the file, not standing in for it
    killed_dir = next(folder.glob("trial-*/checkpoints/checkpoint-*/trainer_state.json")).parents[2]
    victim = procs.pop(Run(killed_dir).state()["pid"])
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    again = _tune_process(path, tmp_path, 4)  # the same command, again
    outputs = [p.communicate(timeout=300)[0] for p in (*procs.values(), again)]
    assert all(p.returncode == 0 for p in (*procs.values(), again)), outputs

    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'shared.db'}").trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # none lost, none twice
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    # Each process stops once the study holds 4; one still running then finishes its own.
    assert 4 <= len(finished) <= 5
    assert {t.user_attrs["pid"] for t in trials} == {victim.pid, again.pid, *procs}  # all three did work
    # The trial the killed process was running: failed, its values queued again, its run resumed.
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.user_attrs["pid"] for t in failed] == [victim.pid] and len(trials) == len(finished) + 1
    retried = [t for t in trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    assert retried[0].user_attrs["run"] == failed[0].user_attrs["run"]
    assert "1 requeued" in outputs[-1]
    runs = sorted(p.name for p in folder.glob("trial-*"))
    assert runs == sorted({Path(t.user_attrs["run"]).name for t in trials})
    assert all(Run(t.user_attrs["run"]).state()["status"] == "done" for t in finished)


def test_a_range_on_a_key_that_does_not_exist_is_one_clear_message(tmp_path, iris):
    body = _tuned(iris)
    body["tune"]["space"] = {"train.lrate": {"low": 0.001, "high": 0.1}}
    clean_failure(["tune", write_recipe(tmp_path, body), "--runs-root", tmp_path / "runs"],
                   "tune.space.train.lrate", "'train.lrate' is not a recipe key; did you mean 'train.lr'?")
    body["tune"]["space"] = {"train.batch_size": {"low": 0, "high": 8}}
    clean_failure(["tune", write_recipe(tmp_path, body), "--runs-root", tmp_path / "runs"],
                   "tune.space.train.batch_size", "the value 0 does not make a valid recipe")
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_storage_is_one_clear_message(tmp_path, iris):
    path = write_recipe(tmp_path, _tuned(iris))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    clean_failure(["tune", path, "--storage", f"sqlite:///{blocker}/study.db", "--runs-root", tmp_path / "runs"],
                   "--storage: cannot")
    clean_failure(["tune", path, "--storage", "postgresql://nobody@127.0.0.1:9/none", "--runs-root",
                    tmp_path / "runs"], "--storage: cannot open the study database at postgresql://")

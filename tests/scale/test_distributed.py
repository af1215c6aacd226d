"""danlu train --nproc: two processes (gloo on this CPU) through torchrun and transformers.Trainer."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from danlu.run import Run

from .conftest import clean_failure, write_recipe


def text_recipe(tmp_path, **train):
    (tmp_path / "t.csv").write_text("text,label\n" + "great film,pos\nawful film,neg\nfine movie,pos\nbad movie,neg\n" * 16)
    return write_recipe(tmp_path, {
        "name": "words", "task": "text-classification", "data": {"source": "t.csv", "split": {"seed": 0}},
        "quality": {"on_fail": "warn"}, "evaluate": {"baseline": False},
        "model": {"layers": 1, "max_length": 8, "embedding": 32, "heads": 2, "feed_forward": 64},
        "tokenizer": {"vocab_size": 100, "min_frequency": 1},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "progress": False, "precision": "fp32",
                  "checkpoint_every": 2, "eval_every": 4, **train}}, "t.yaml")


def test_nproc_larger_than_the_batch_allows_is_one_clear_message(tmp_path):
    path = text_recipe(tmp_path, batch_size=3)
    clean_failure(["train", path, "--nproc", "2", "-o", tmp_path / "run"],
                   "--nproc 2: train.batch_size is 3, which 2 processes cannot share evenly")
    clean_failure(["train", path, "--nproc", "4", "train.batch_size=2", "-o", tmp_path / "run"],
                   "--nproc 4: train.batch_size is 2")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="FSDP runs on GPUs")
def test_fsdp_on_a_cpu_is_refused_not_quietly_trained_as_ddp(tmp_path):
    clean_failure(["train", text_recipe(tmp_path), "--nproc", "2", "distributed={strategy: fsdp}", "-o",
                   tmp_path / "run"], "distributed.strategy: fsdp", "use strategy ddp here")
    assert not (tmp_path / "run").exists()


def test_the_plain_loop_refuses_many_processes(tmp_path, iris):
    clean_failure(["train", write_recipe(tmp_path, iris), "--nproc", "2"], "trains with danlu's plain loop, on one process")


def _launch(path, run_dir):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "danlu.cli", "train", str(path), "--nproc", "2", "-o", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.slow
def test_two_processes_train_write_once_and_resume_with_the_same_command(tmp_path):
    path = text_recipe(tmp_path, epochs=12)  # long enough to be killed in the middle
    run_dir = tmp_path / "run"
    first = _launch(path, run_dir)
    checkpoint = run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not checkpoint.exists():
        if first.poll() is not None:
            pytest.fail(f"finished before its first checkpoint could be interrupted:\n{first.stdout.read()}")
        assert time.monotonic() < deadline, "no checkpoint in 240 s"
        time.sleep(0.05)  # polling for the file, not standing in for it
    # The main training process dies (torchrun then stops the other one, and the launcher ends).
    os.kill(Run(run_dir).state()["pid"], signal.SIGKILL)
    first.communicate(timeout=120)
    assert Run(run_dir).status() == "interrupted"
    # Each process saved its own random state: two processes trained.
    assert {p.name for p in checkpoint.parent.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}

    second = _launch(path, run_dir)
    text = second.communicate(timeout=300)[0]
    assert second.returncode == 0, text
    assert "resuming" in text
    run = Run(run_dir)
    assert run.state()["status"] == "done"
    history = json.loads(run.history_path.read_text())
    steps = [e["step"] for e in history if "loss" in e]
    assert len(steps) == len(set(steps)) and steps == sorted(steps)  # each step logged once, by one process
    state = json.loads(max((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                           key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    assert state["epoch"] == pytest.approx(12) and max(steps) <= state["global_step"] == 72  # 6 steps an epoch
    assert any("eval_accuracy" in e for e in history)  # gathered from both processes' shares
    metrics = run.metrics()
    assert 0 <= metrics["validation"]["accuracy"] <= 1 and "test" in metrics
    # One writer: one report, one model, and no stray files of a second process.
    assert (run_dir / "model" / "config.json").exists() and run.report_md.exists()
    assert "-r1" not in " ".join(p.name for p in run_dir.iterdir())

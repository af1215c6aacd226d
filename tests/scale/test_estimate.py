"""danlu estimate: the memory parts by their rules, activations and time measured, the device check."""

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification
from typer.testing import CliRunner

from danlu.cli import app
from danlu.recipe.sections import TrainConfig
from danlu.run import Run
from danlu.scale.estimate import device_named
from danlu.train.estimate import estimate_training, rows
from danlu.train.memory import PeakMemory, weight_bytes
from danlu.train.transfer import apply_lora

from .conftest import clean_failure, write_recipe


def bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64, num_labels=2))


def examples(n=64, longest=24):
    return [{"input_ids": [1 + (i * 7 + j) % 90 for j in range(4 + i % (longest - 3))], "labels": i % 2} for i in range(n)]


def collate(items):
    width = max(len(x["input_ids"]) for x in items)
    ids = torch.tensor([x["input_ids"] + [0] * (width - len(x["input_ids"])) for x in items])
    return {"input_ids": ids, "attention_mask": (ids > 0).long(), "labels": torch.tensor([x["labels"] for x in items])}


def cfg(**kw):
    return TrainConfig(**{"batch_size": 8, "epochs": 2, "precision": "fp32", **kw})


def test_weights_gradients_and_optimizer_follow_the_parameters_and_the_optimizer():
    model = bert()
    n = sum(p.numel() for p in model.parameters())
    adam = estimate_training(model, examples(), collate, cfg(optimizer="adamw"), large_model=True, probe_steps=1,
                             warmup_steps=0)
    assert adam.parameters == adam.trainable == n
    assert adam.weights == weight_bytes(model)  # accelerate's estimator agrees with the parameters and buffers
    assert adam.gradients == 4 * n and adam.optimizer == 8 * n
    sgd = estimate_training(model, examples(), collate, cfg(optimizer="sgd"), large_model=True, probe_steps=1,
                            warmup_steps=0)
    assert sgd.optimizer == 0
    assert adam.sequence == 24 and adam.steps_per_epoch == 8 and adam.planned_steps == 16
    assert adam.step_seconds > 0 and adam.transient >= 0
    assert adam.step_memory == adam.weights + adam.gradients + adam.optimizer + adam.activations + adam.transient
    # no evaluation split: the run's peak is a step's and a checkpoint's buffers (on a CPU, on pages of their own)
    assert adam.evaluation == 0 and adam.evaluations == 0 and adam.checkpoints == 2  # one per epoch
    assert adam.memory == adam.step_memory + adam.checkpoint


def test_lora_trains_few_parameters_so_gradients_and_optimizer_shrink():
    lora = apply_lora(bert(), r=2, alpha=4, dropout=0.0, target=None)
    est = estimate_training(lora, examples(), collate, cfg(), large_model=True, probe_steps=1, warmup_steps=0)
    trained = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert est.trainable == trained < est.parameters / 5
    assert est.gradients == 4 * trained and est.optimizer == 8 * trained


def test_activations_grow_with_the_batch_and_the_probe_leaves_the_model_as_it_was():
    model = bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = estimate_training(model, examples(), collate, cfg(batch_size=4), large_model=True, probe_steps=1,
                              warmup_steps=0)
    large = estimate_training(model, examples(), collate, cfg(batch_size=16), large_model=True, probe_steps=1,
                              warmup_steps=0)
    assert 3 < large.activations / small.activations < 5  # four times the examples of the same longest length
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_device_table_says_whether_it_fits():
    est = estimate_training(bert(), examples(), collate, cfg(), large_model=True, probe_steps=1, warmup_steps=0)
    shown = dict(rows(est, device_named("t4"), cost_per_hour=2.0))
    assert shown["fits T4"].startswith("yes") and "of 16 GiB" in shown["fits T4"]
    tiny = SimpleNamespace(name="tiny", memory=est.memory // 2)
    assert dict(rows(est, tiny))["fits tiny"].startswith("NO")
    assert shown["cost"] == f"{est.run_seconds / 3600 * 2.0:,.2f} at 2 per hour"


def test_peak_memory_is_measured_around_a_piece_of_training():
    model = torch.nn.Linear(10, 10)
    with PeakMemory(model) as peak:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MB held at the peak
        block += 1
        del block
    assert peak.bytes is not None and peak.bytes >= 60 * 1024 ** 2, peak.bytes


def test_estimate_command_prints_the_figures_and_refuses_an_unknown_device(tmp_path, iris):
    path = write_recipe(tmp_path, iris)
    result = CliRunner().invoke(app, ["estimate", str(path), "--json", "--device", "H100"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    assert found["device"] == "H100" and found["fits"] is True and found["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    clean_failure(["estimate", path, "--device", "Z80"], "--device Z80: not an accelerator danlu knows")


def test_train_with_estimate_puts_both_figures_in_the_report(tmp_path, iris):
    path = write_recipe(tmp_path, iris)
    result = CliRunner().invoke(app, ["train", str(path), "-o", str(tmp_path / "run"), "--estimate"])
    assert result.exit_code == 0, result.output
    report = Run(tmp_path / "run").report_md.read_text()
    for fact in ("peak memory (measured)", "peak memory (estimated)", "seconds per epoch (measured)",
                 "seconds per epoch (estimated)"):
        assert fact in report
    resources = json.loads((tmp_path / "run" / "resources.json").read_text())
    assert resources["peak_memory_bytes"] > 0 and resources["estimate"]["memory"] > 0


def test_bf16_autocast_saves_smaller_activations():
    fp32 = estimate_training(bert(), examples(), collate, cfg(), large_model=True, probe_steps=1, warmup_steps=0)
    bf16 = estimate_training(bert(), examples(), collate, cfg(precision="bf16"), large_model=True, probe_steps=1,
                             warmup_steps=0)
    # Not half: autocast keeps softmax, norms and the loss in fp32, and saves bf16 copies of weights.
    assert bf16.precision == "bf16" and bf16.activations < 0.9 * fp32.activations


def test_an_evaluation_split_adds_its_forward_and_the_run_counts_its_evaluations_checkpoints_and_logs():
    from dataclasses import replace

    ev = examples(200)
    small = estimate_training(bert(), examples(), collate, cfg(eval_batch_size=8), large_model=True, eval_ds=ev,
                              probe_steps=1, warmup_steps=1)
    large = estimate_training(bert(), examples(), collate, cfg(eval_batch_size=200), large_model=True, eval_ds=ev,
                              probe_steps=1, warmup_steps=1)
    assert large.evaluation > small.evaluation > 0  # 25 times the batch: a larger forward
    assert large.evaluations == 2 and large.checkpoints == 2 and large.logs == 16 // 20 + 2
    # on a CPU the evaluation's and the checkpoint's buffers come on top of a step's; on a GPU the largest moment
    assert large.memory == large.step_memory + large.evaluation + large.checkpoint
    gpu = replace(large, device="cuda")
    assert gpu.memory == max(gpu.step_memory, gpu.evaluation_memory, gpu.checkpoint_memory)
    assert large.run_seconds == pytest.approx(
        large.startup_seconds + 16 * large.step_seconds + 2 * large.eval_seconds + 2 * large.checkpoint_seconds
        + large.log_seconds)
    assert large.checkpoint_seconds > 0 and large.startup_seconds >= 0 and large.log_seconds > 0
    every = estimate_training(bert(), examples(), collate, cfg(eval_every=4, checkpoint_every=8), large_model=True,
                              eval_ds=ev, probe_steps=1, warmup_steps=0)
    assert every.evaluations == 4 and every.checkpoints == 2

"""The training's utilisation: FLOPs counted on a real batch, the measured matmul peak (cached), MFU."""

import json

import pytest
import torch

from danlu.train import utilisation as u


def test_step_flops_count_forward_and_backward_of_a_linear_layer():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 32, bias=False)

        def forward(self, x, labels):
            return {"loss": self.fc(x).pow(2).mean()}

    net = Net()
    flops = u.step_flops(net, {"x": torch.randn(8, 64), "labels": None})
    # forward 2*8*64*32; backward: the weight's gradient (same again; the input needs none)
    assert flops == 2 * (2 * 8 * 64 * 32)
    assert net.fc.weight.grad is None  # cleared: counting must not leave gradients behind


def test_the_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DANLU_CACHE", str(tmp_path))
    monkeypatch.setattr(u, "PROBE_SECONDS", 0.02)
    first = u.matmul_peak("fp32")
    assert first["flops_per_s"] > 1e8 and first["threads"] == torch.get_num_threads()
    cached = json.loads((tmp_path / "matmul_peak.json").read_text())
    assert len(cached) == 1
    monkeypatch.setattr(u, "PROBE_SIDE", 1)  # a second probe would measure nonsense: it must not run
    assert u.matmul_peak("fp32") == first


def test_a_run_reports_its_mfu_between_0_and_1(tmp_path, monkeypatch):
    from danlu.pipeline import train
    from danlu.recipe import recipe_from_dict

    monkeypatch.setenv("DANLU_CACHE", str(tmp_path / "cache"))
    recipe = recipe_from_dict({"name": "mfu", "task": "tabular-classification", "data": {"source": "builtin:iris"},
                               "quality": {"max_leakage": 0.05}, "model": {"hidden": [32]},
                               "train": {"epochs": 3, "batch_size": 16, "progress": False}})
    metrics = json.loads(train(recipe, tmp_path / "run").metrics_path.read_text())
    assert 0 < metrics["train_mfu"] < 1
    usage = metrics["utilisation"]
    assert usage["train_flops_per_s"] > 0 and usage["peak"]["precision"] in ("fp32", "bf16")
    assert "MFU" in (tmp_path / "run" / "report.md").read_text()
    assert "train_mfu" not in metrics.get("test", {}) and "validation" in metrics


@pytest.mark.parametrize("steps,seconds", [(0, 1.0), (5, 0.0)])
def test_nothing_is_claimed_for_an_empty_training(steps, seconds):
    assert u.utilisation(None, None, [1], 4, 4, steps, seconds, "fp32") == {}

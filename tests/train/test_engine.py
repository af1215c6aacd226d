"""The training engine on a small synthetic problem: each recipe knob must change what happens."""

import json


import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from danlu.models import ClassicConfig, ClassicModel
from danlu.recipe import EarlyStoppingConfig, TrainConfig
from danlu.train.examples import Examples
from danlu.train.engine import choose_compile, choose_precision, fit, latest_complete_checkpoint


def data(n=256, seed=0, imbalance=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > np.quantile(x[:, 0] + 0.5 * x[:, 1], 1 - 1 / (1 + imbalance))).astype(np.int64)
    return Examples([{"inputs": x[i], "labels": y[i]} for i in range(n)]), y


def collate(batch):
    return {"inputs": torch.as_tensor(np.stack([b["inputs"] for b in batch])),
            "labels": torch.as_tensor(np.asarray([b["labels"] for b in batch]))}


def model(hidden=(16,)):
    torch.manual_seed(0)
    return ClassicModel(ClassicConfig(arch="mlp", input_shape=[4], hidden=list(hidden), num_labels=2))


def run_fit(tmp_path, cfg, ds=None, **kwargs):
    ds = ds or data()[0]
    return fit(model(), ds, None, collate, cfg, tmp_path / "ckpt", tmp_path / "history.json",
               compute_metrics=None, metric=None, greater_is_better=True, large_model=False, **kwargs)


def accuracy(m, ds):
    x = torch.as_tensor(np.stack([it["inputs"] for it in ds.items]))
    y = np.asarray([it["labels"] for it in ds.items])
    with torch.no_grad():
        return float((m(inputs=x).logits.argmax(-1).numpy() == y).mean())


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("momentum", 0.1), ("adagrad", 0.1), ("adam", 0.01),
                                          ("adamw", 0.01)])
def test_every_optimizer_learns(tmp_path, optimizer, lr):
    ds, _ = data()
    cfg = TrainConfig(epochs=5, batch_size=32, optimizer=optimizer, lr=lr, progress=False)
    result = run_fit(tmp_path, cfg, ds)
    assert accuracy(result.model, ds) > 0.9
    opt = result.extra["trainer"].optimizer
    expected = {"sgd": "SGD", "momentum": "SGD", "adagrad": "Adagrad", "adam": "Adam", "adamw": "AdamW"}[optimizer]
    assert type(getattr(opt, "optimizer", opt)).__name__ == expected


def test_l1_penalty_drives_weights_towards_zero(tmp_path):
    ds, _ = data()
    base = TrainConfig(epochs=4, batch_size=32, optimizer="adam", lr=0.01, progress=False)
    plain = run_fit(tmp_path / "a", base, ds).model
    sparse = run_fit(tmp_path / "b", base.model_copy(update={"l1": 0.03}), ds).model
    def weight_mass(m):
        return sum(p.abs().sum().item() for p in m.parameters() if p.dim() > 1)
    assert weight_mass(sparse) < 0.7 * weight_mass(plain)


def test_weight_decay_groups_skip_biases(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=64, weight_decay=0.1, progress=False)
    trainer = run_fit(tmp_path, cfg).extra["trainer"]
    groups = getattr(trainer.optimizer, "optimizer", trainer.optimizer).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    biases = [p for n, p in trainer.model.named_parameters() if n.endswith("bias")]
    assert biases and not any(id(b) in decayed for b in biases)


def test_class_weights_and_oversampling_raise_minority_recall(tmp_path):
    ds, y = data(n=400, imbalance=9.0)  # 10% positives
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, progress=False)
    def recall(m):
        x = torch.as_tensor(np.stack([it["inputs"] for it in ds.items]))
        pred = m(inputs=x).logits.argmax(-1).detach().numpy()
        return float((pred[y == 1] == 1).mean())
    plain = recall(run_fit(tmp_path / "a", cfg, ds).model)
    counts = np.bincount(y)
    per_class = len(y) / (2 * counts)
    weighted = recall(run_fit(tmp_path / "b", cfg, ds, class_weights=per_class).model)
    oversampled = recall(run_fit(tmp_path / "c", cfg, ds, sample_weights=per_class[y]).model)
    assert weighted > plain and oversampled > plain


def test_same_seed_same_model(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, seed=7)
    a = run_fit(tmp_path / "a", cfg).model
    b = run_fit(tmp_path / "b", cfg).model
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_resume_continues_from_last_checkpoint_and_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, checkpoint_every=8, keep_checkpoints=5, seed=3)
    full = run_fit(tmp_path / "full", cfg)
    with pytest.raises(KeyboardInterrupt):  # killed after step 20 of 32
        run_fit(tmp_path / "part", cfg, callbacks=[StopAt(20)])
    ckpt = tmp_path / "part" / "ckpt"
    assert latest_complete_checkpoint(ckpt).endswith("checkpoint-16")
    # A checkpoint killed while being written (no trainer_state.json) is skipped and removed.
    (ckpt / "checkpoint-16" / "trainer_state.json").write_text("{ half")
    assert latest_complete_checkpoint(ckpt).endswith("checkpoint-8")
    assert not (ckpt / "checkpoint-16").exists()
    resumed = run_fit(tmp_path / "part", cfg)
    assert resumed.resumed_from.endswith("checkpoint-8")
    assert resumed.steps == full.steps
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_history_is_written_while_training(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=16, log_every=4, progress=False)
    run_fit(tmp_path, cfg)
    history = json.loads((tmp_path / "history.json").read_text())
    assert any("loss" in h for h in history)


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    ds, _ = data(n=64)
    one = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.1, progress=False, max_grad_norm=None)
    acc = one.model_copy(update={"batch_size": 16, "grad_accum": 2})
    a = run_fit(tmp_path / "a", one, ds).model
    b = run_fit(tmp_path / "b", acc, ds).model
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-4)


def test_auto_precision_and_compile_choices():
    assert choose_precision("fp32", True) == "fp32"
    assert choose_precision("auto", False) == "fp32"
    assert choose_compile(True, False, 1) is True
    assert choose_compile("auto", False, 10_000) is False
    assert choose_compile("auto", True, 10) is False
    assert choose_compile("auto", True, 10_000) is torch.cuda.is_available()


def test_early_stopping_ends_training_when_the_metric_stalls(tmp_path):
    ds, _ = data()
    cfg = TrainConfig(epochs=20, batch_size=64, progress=False, early_stopping=EarlyStoppingConfig(patience=2))
    result = fit(model(), ds, ds, collate, cfg, tmp_path / "ckpt", tmp_path / "h.json",
                 compute_metrics=lambda pred: {"accuracy": 0.5}, metric="accuracy", greater_is_better=True,
                 large_model=False)
    assert result.epochs == 3  # the first evaluation, then `patience` without improvement


def test_length_buckets_hold_similar_lengths_in_random_order():
    from danlu.train.engine import LengthBucketSampler

    lengths = list(np.random.default_rng(0).integers(1, 60, size=640))
    sampler = LengthBucketSampler(lengths, batch_size=32, seed=0, window=5)
    order = list(sampler)
    assert sorted(order) == list(range(640))
    batches = [order[i:i + 32] for i in range(0, 640, 32)]
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    assert spread < 20  # random batches of 32 would span most of 1..59
    firsts = [max(lengths[i] for i in b) for b in batches[:5]]
    assert firsts != sorted(firsts, reverse=True)  # windows are not replayed longest-first
    assert list(sampler) == order  # same seed and epoch: same order (resume replays it)
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_a_resumed_length_bucketed_text_run_equals_an_uninterrupted_one(tmp_path):
    """The Trainer path with danlu's own sampler (get_train_dataloader): the sampler's position is restored
    on resume, so the resumed run sees the same batches and ends with the same weights."""
    from danlu import registry
    from danlu.recipe import recipe_from_dict
    from danlu.tasks import make_task

    spec = registry.get("text-classification")
    sample = spec.make_sample(64, 0)
    recipe = recipe_from_dict({"name": "t", "task": spec.name, "data": {"source": "builtin:iris"}, **sample.recipe})
    task = make_task(recipe)
    task.setup(sample.frame)
    ds = task.encode(sample.frame, train=True)
    cfg = recipe.train.model_copy(update={"max_steps": 12, "checkpoint_every": 4, "keep_checkpoints": 5,
                                          "seed": 5, "precision": "fp32"})

    def fitted(folder, callbacks=()):
        torch.manual_seed(0)
        return fit(task.build_model(), ds, None, task.collate, cfg, folder / "ckpt", folder / "h.json",
                   compute_metrics=None, metric=None, greater_is_better=True, large_model=True,
                   group_by_length=True, callbacks=list(callbacks))

    full = fitted(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fitted(tmp_path / "part", [StopAt(6)])
    resumed = fitted(tmp_path / "part")
    assert resumed.resumed_from.endswith("checkpoint-4") and resumed.steps == full.steps == 12
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)

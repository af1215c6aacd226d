"""The plain training loop on a small synthetic problem: each recipe knob must change what happens,
and a resumed run must end where an uninterrupted one does, bit for bit."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from danlu.errors import DanluError
from danlu.models import ClassicConfig, ClassicModel
from danlu.recipe import EarlyStoppingConfig, TrainConfig
from danlu.train import loop
from danlu.train.fitting import decay_parameter_names, latest_complete_checkpoint
from danlu.train.loop import epoch_batches, fit_loop, lr_factor


class Examples(torch.utils.data.Dataset):
    """Encoded examples as a task's encode returns them; defined here so that this test does not
    depend on where the tasks keep theirs."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def data(n=256, seed=0, imbalance=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    score = x[:, 0] + 0.5 * x[:, 1]
    y = (score > np.quantile(score, 1 - 1 / (1 + imbalance))).astype(np.int64)
    return Examples([{"inputs": x[i], "labels": y[i]} for i in range(n)]), y


def collate(batch):
    out = {"inputs": torch.as_tensor(np.stack([b["inputs"] for b in batch])),
           "labels": torch.as_tensor(np.asarray([b["labels"] for b in batch]))}
    if "teacher_logits" in batch[0]:
        out["teacher_logits"] = torch.as_tensor(np.stack([b["teacher_logits"] for b in batch]))
    return out


def model(hidden=(16,), dropout=0.0):
    torch.manual_seed(0)
    return ClassicModel(ClassicConfig(arch="mlp", input_shape=[4], hidden=list(hidden), num_labels=2,
                                      dropout=dropout))


def run(tmp_path, cfg, ds=None, eval_ds=None, net=None, compute_metrics=None, metric=None, **kwargs):
    ds = ds or data()[0]
    return fit_loop(net or model(), ds, eval_ds, collate, cfg, tmp_path / "ckpt", tmp_path / "history.json",
                    compute_metrics=compute_metrics, metric=metric, greater_is_better=True, large_model=False,
                    **kwargs)


def accuracy(m, ds):
    x = torch.as_tensor(np.stack([it["inputs"] for it in ds.items]))
    y = np.asarray([it["labels"] for it in ds.items])
    with torch.no_grad():
        return float((m(inputs=x).logits.argmax(-1).numpy() == y).mean())


def accuracy_metric(pred):
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


QUIET = dict(progress=False, seed=3)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("momentum", 0.1), ("adagrad", 0.1), ("adam", 0.01),
                                          ("adamw", 0.01)])
def test_every_optimizer_learns(tmp_path, optimizer, lr):
    ds, _ = data()
    result = run(tmp_path, TrainConfig(epochs=5, batch_size=32, optimizer=optimizer, lr=lr, **QUIET), ds)
    assert accuracy(result.model, ds) > 0.9
    expected = {"sgd": "SGD", "momentum": "SGD", "adagrad": "Adagrad", "adam": "Adam", "adamw": "AdamW"}[optimizer]
    opt = result.extra["optimizer"]
    assert type(opt).__name__ == expected
    assert opt.param_groups[0].get("momentum", 0.0) == (0.9 if optimizer == "momentum" else 0.0)
    assert result.compiled is False and result.precision == "fp32"


def test_weight_decay_groups_skip_biases_and_norms(tmp_path):
    result = run(tmp_path, TrainConfig(epochs=1, batch_size=64, weight_decay=0.1, **QUIET))
    groups = result.extra["optimizer"].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    named = dict(result.model.named_parameters())
    assert {n for n, p in named.items() if id(p) in decayed} == {"body.0.weight", "head.1.weight"}

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(2, 2)
            self.ln = nn.LayerNorm(2)  # excluded by type
            self.norm = nn.Linear(2, 2)  # excluded by name, like Trainer's (^|.)norm($|.)
            self.out_norm = nn.Linear(2, 2, bias=False)

    assert decay_parameter_names(nn.Sequential(Block())) == ["0.proj.weight"]


def test_l1_penalty_drives_weights_towards_zero(tmp_path):
    ds, _ = data()
    base = TrainConfig(epochs=4, batch_size=32, optimizer="adam", lr=0.01, **QUIET)
    plain = run(tmp_path / "a", base, ds).model
    sparse = run(tmp_path / "b", base.model_copy(update={"l1": 0.03}), ds).model

    def weight_mass(m):
        return sum(p.abs().sum().item() for p in m.parameters() if p.dim() > 1)

    assert weight_mass(sparse) < 0.7 * weight_mass(plain)


def test_class_weights_and_oversampling_raise_minority_recall(tmp_path):
    ds, y = data(n=400, imbalance=9.0)  # 10% positives
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, **QUIET)

    def recall(m):
        x = torch.as_tensor(np.stack([it["inputs"] for it in ds.items]))
        pred = m(inputs=x).logits.argmax(-1).detach().numpy()
        return float((pred[y == 1] == 1).mean())

    plain = recall(run(tmp_path / "a", cfg, ds).model)
    per_class = len(y) / (2 * np.bincount(y))
    weighted = recall(run(tmp_path / "b", cfg, ds, class_weights=per_class).model)
    oversampled = recall(run(tmp_path / "c", cfg, ds, sample_weights=per_class[y]).model)
    assert weighted > plain and oversampled > plain


def test_oversampling_draws_rare_examples_more_often_in_a_seeded_order():
    _, y = data(n=400, imbalance=9.0)
    weights = (len(y) / (2 * np.bincount(y)))[y]
    batches = epoch_batches(400, 32, seed=3, epoch=0, sample_weights=weights)
    drawn = [i for b in batches for i in b]
    assert len(batches) == 13 and len(drawn) == 400
    assert 0.4 < y[drawn].mean() < 0.6  # the 10% class drawn about half the time
    assert batches == epoch_batches(400, 32, 3, 0, weights) != epoch_batches(400, 32, 3, 1, weights)
    plain = [i for b in epoch_batches(400, 32, 3, 0) for i in b]
    assert sorted(plain) == list(range(400)) and plain != list(range(400))


def test_early_stopping_stops_before_the_budget_and_restores_the_best_weights(tmp_path):
    ds, _ = data()
    scores = iter([0.5, 0.8, 0.6, 0.7, 0.9, 0.9, 0.9])  # best at the 2nd evaluation, then 2 worse ones
    cfg = TrainConfig(epochs=20, batch_size=64, keep_checkpoints=1,
                      early_stopping=EarlyStoppingConfig(patience=2), **QUIET)
    result = run(tmp_path, cfg, ds, eval_ds=ds, compute_metrics=lambda pred: {"accuracy": next(scores)},
                 metric="accuracy")
    assert result.epochs == 4 and result.steps == 16
    evals = [h for h in result.history if "eval_accuracy" in h]
    assert [h["step"] for h in evals] == [4, 8, 12, 16]
    # keep_checkpoints=1: only the best checkpoint stays, and the returned model holds its weights.
    left = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert left == ["checkpoint-8"]
    best = load_file(str(tmp_path / "ckpt" / "checkpoint-8" / "model.safetensors"))
    state = result.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best.items())


def test_early_stopping_counts_only_improvements_above_min_delta(tmp_path):
    ds, _ = data(n=64)
    scores = iter([0.5, 0.51, 0.4, 0.9])  # +0.01 is under min_delta: no reset of the patience
    cfg = TrainConfig(epochs=10, batch_size=64, keep_checkpoints=1,
                      early_stopping=EarlyStoppingConfig(patience=2, min_delta=0.05), **QUIET)
    result = run(tmp_path, cfg, ds, eval_ds=ds, compute_metrics=lambda pred: {"accuracy": next(scores)},
                 metric="accuracy")
    assert result.steps == 3
    # The small improvement still made step 2 the best, whose weights come back.
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["checkpoint-2"]
    best = load_file(str(tmp_path / "ckpt" / "checkpoint-2" / "model.safetensors"))
    assert all(torch.equal(result.model.state_dict()[k], v) for k, v in best.items())


@pytest.mark.parametrize("update,steps,epochs", [
    ({"epochs": 1.5}, 11, 1 + 4 / 7),  # 100 examples / 16 = 7 batches per epoch
    ({"epochs": 5, "max_steps": 10}, 10, 1 + 3 / 7),
    ({"epochs": 2, "grad_accum": 2}, 8, 2.0),  # 7 batches: 3 updates of 2 and one of 1 per epoch
    ({"epochs": 0.5, "grad_accum": 3}, 2, 6 / 7),
])
def test_step_counts(tmp_path, update, steps, epochs):
    ds, _ = data(n=100)
    result = run(tmp_path, TrainConfig(batch_size=16, log_every=1, **QUIET, **update), ds)
    assert result.steps == steps
    assert result.epochs == pytest.approx(epochs)
    assert [h["step"] for h in result.history if "loss" in h] == list(range(1, steps + 1))


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    ds, _ = data(n=64)
    one = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.1, max_grad_norm=None, **QUIET)
    acc = one.model_copy(update={"batch_size": 16, "grad_accum": 2})
    a = run(tmp_path / "a", one, ds)
    b = run(tmp_path / "b", acc, ds)
    assert a.steps == b.steps == 2
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_max_grad_norm_clips_the_update(tmp_path):
    ds, _ = data(n=64)
    cfg = TrainConfig(max_steps=1, batch_size=64, optimizer="sgd", lr=1.0, log_every=1, **QUIET)
    free = run(tmp_path / "a", cfg.model_copy(update={"max_grad_norm": None}), ds)
    clipped = run(tmp_path / "b", cfg.model_copy(update={"max_grad_norm": 1e-3}), ds)
    start = [p.detach() for p in model().parameters()]

    def moved(m):
        return math.sqrt(sum(((p - s) ** 2).sum().item() for p, s in zip(m.parameters(), start)))

    assert free.history[0]["grad_norm"] == clipped.history[0]["grad_norm"] > 1e-3  # the norm before clipping
    assert moved(clipped.model) == pytest.approx(1e-3, rel=1e-3)
    assert moved(free.model) > 10 * moved(clipped.model)


@pytest.mark.parametrize("schedule,warmup,min_lr", [("linear", 4, 0.0), ("cosine", 0.25, 0.01),
                                                    ("constant", 3, 0.0)])
def test_learning_rate_schedules(tmp_path, schedule, warmup, min_lr):
    cfg = TrainConfig(max_steps=20, batch_size=64, lr=0.1, schedule=schedule, warmup=warmup, min_lr=min_lr,
                      log_every=1, **QUIET)
    rates = {h["step"]: h["learning_rate"] for h in run(tmp_path, cfg).history if "learning_rate" in h}
    # Step s trains with the rate of scheduler step s - 1, as Trainer logs it.
    if schedule == "linear":
        assert [rates[s] for s in (1, 3, 5, 13, 20)] == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.1 / 16])
    elif schedule == "cosine":  # warmup: a quarter of 20 steps; then down to min_lr
        assert rates[1] == 0.0 and rates[6] == pytest.approx(0.1)
        progress = (19 - 5) / 15
        assert rates[20] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert min(rates[s] for s in range(6, 21)) > 0.01
    else:
        assert [rates[s] for s in (1, 2, 4, 20)] == pytest.approx([0.0, 0.1 / 3, 0.1, 0.1])
    assert lr_factor("linear", 20, 4, 20) == 0.0


def test_keep_checkpoints_keeps_the_newest(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, checkpoint_every=4, keep_checkpoints=2, **QUIET)
    run(tmp_path, cfg)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint-28", "checkpoint-32"]


class Killed(Exception):
    pass


def kill_at(monkeypatch, step):
    original = loop._Loop._after_step

    def after_step(self, *args):
        original(self, *args)
        if self.pos.global_step == step:
            raise Killed

    monkeypatch.setattr(loop._Loop, "_after_step", after_step)


def comparable(history):
    return [{k: v for k, v in h.items() if "runtime" not in k and "per_second" not in k} for h in history]


@pytest.mark.parametrize("variant", ["dropout", "oversample+accum+early-stopping", "epoch-end", "before-last-eval"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, monkeypatch, variant):
    ds, y = data()
    kwargs = {}
    if variant == "dropout":
        cfg = TrainConfig(epochs=2, batch_size=16, checkpoint_every=6, keep_checkpoints=5, **QUIET)
        kill, resume_at = 20, "checkpoint-18"  # 16 steps per epoch: mid-way through the second
    elif variant == "epoch-end":  # resumed from an end-of-epoch checkpoint, evaluated at each epoch's end
        cfg = TrainConfig(epochs=3, batch_size=16, **QUIET)
        kwargs = dict(eval_ds=ds, compute_metrics=accuracy_metric, metric="accuracy")
        kill, resume_at = 20, "checkpoint-16"
    elif variant == "before-last-eval":  # killed after the budget's last checkpoint, before the epoch's evaluation
        cfg = TrainConfig(max_steps=12, batch_size=16, checkpoint_every=5, **QUIET)
        kwargs = dict(eval_ds=ds, compute_metrics=accuracy_metric, metric="accuracy")
        kill, resume_at = 12, "checkpoint-12"
    else:
        cfg = TrainConfig(epochs=3, batch_size=16, grad_accum=2, eval_every=3, log_every=2, keep_checkpoints=2,
                          early_stopping=EarlyStoppingConfig(patience=3, min_delta=0.5), **QUIET)
        kwargs = dict(eval_ds=ds, compute_metrics=accuracy_metric, metric="accuracy",
                      sample_weights=(len(y) / (2 * np.bincount(y)))[y])
        kill, resume_at = 11, "checkpoint-9"  # 8 steps per epoch; early stopping ends it at step 12
    full = run(tmp_path / "full", cfg, ds, net=model(dropout=0.3), **kwargs)
    with monkeypatch.context() as patch:
        kill_at(patch, kill)
        with pytest.raises(Killed):
            run(tmp_path / "part", cfg, ds, net=model(dropout=0.3), **kwargs)
    resumed = run(tmp_path / "part", cfg, ds, net=model(dropout=0.3), **kwargs)
    assert resumed.resumed_from.endswith(resume_at)
    assert (resumed.steps, resumed.epochs) == (full.steps, full.epochs)
    for (name, pa), pb in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(pa, pb), name
    assert comparable(resumed.history) == comparable(full.history)
    assert resumed.extra["train_loss"] == full.extra["train_loss"]


def test_half_written_checkpoint_is_skipped(tmp_path):
    cfg = TrainConfig(max_steps=12, batch_size=16, checkpoint_every=4, keep_checkpoints=5, **QUIET)
    run(tmp_path, cfg)
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-12" / "trainer_state.json").unlink()  # killed before its state was written
    assert latest_complete_checkpoint(ckpt).endswith("checkpoint-8")
    assert not (ckpt / "checkpoint-12").exists()
    resumed = run(tmp_path, cfg)
    assert resumed.resumed_from.endswith("checkpoint-8") and resumed.steps == 12
    assert (ckpt / "checkpoint-12" / "trainer_state.json").exists()
    assert not list(ckpt.glob("*.tmp"))


def test_resume_false_starts_over_and_replaces_the_old_checkpoints(tmp_path):
    cfg = TrainConfig(max_steps=4, batch_size=16, checkpoint_every=2, **QUIET)
    run(tmp_path, cfg)
    again = run(tmp_path, cfg.model_copy(update={"max_steps": 2, "checkpoint_every": 1, "keep_checkpoints": 1}),
                resume=False)
    assert again.resumed_from is None and again.steps == 2
    # The old run's checkpoint-4 must not outrank the new ones (or a later resume would pick it).
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["checkpoint-2"]
    state = json.loads((tmp_path / "ckpt" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["position"]["global_step"] == 2
    assert [h["step"] for h in state["position"]["log_history"]] == [1]  # nothing of the old run


def test_a_trainer_checkpoint_is_refused_and_a_changed_batch_size_is_warned_about(tmp_path, caplog):
    cfg = TrainConfig(max_steps=4, batch_size=16, checkpoint_every=2, **QUIET)
    run(tmp_path / "a", cfg)
    with caplog.at_level("WARNING", logger="danlu"):
        run(tmp_path / "a", cfg.model_copy(update={"batch_size": 8, "max_steps": 6}))
    assert "data order" in caplog.text
    trainer_made = tmp_path / "b" / "ckpt" / "checkpoint-99"
    trainer_made.mkdir(parents=True)
    (trainer_made / "trainer_state.json").write_text(json.dumps({"global_step": 99, "log_history": []}))
    with pytest.raises(DanluError, match="Trainer"):
        run(tmp_path / "b", cfg)


def test_history_has_the_trainer_shape_and_feeds_the_loss_plot(tmp_path):
    from danlu.report import _loss_plot

    ds, _ = data(n=128)
    cfg = TrainConfig(epochs=2, batch_size=16, log_every=3, **QUIET)
    result = run(tmp_path, cfg, ds, eval_ds=data(n=40, seed=1)[0], compute_metrics=accuracy_metric,
                 metric="accuracy")
    history = json.loads((tmp_path / "history.json").read_text())
    assert history == json.loads(json.dumps(result.history))
    train = [h for h in history if "loss" in h]
    assert [h["step"] for h in train] == [1, 3, 6, 9, 12, 15]  # the first step, then every 3rd
    assert all({"loss", "learning_rate", "epoch", "step"} <= h.keys() for h in train)
    assert train[1]["epoch"] == pytest.approx(3 / 8)
    evals = [h for h in history if "eval_loss" in h]
    assert [(h["step"], h["epoch"]) for h in evals] == [(8, 1.0), (16, 2.0)]
    assert all({"eval_loss", "eval_accuracy", "epoch", "step"} <= h.keys() for h in evals)
    assert {"train_runtime", "train_loss", "epoch", "step"} <= history[-1].keys()
    assert history[-1]["step"] == 16 and history[-1]["train_loss"] == result.extra["train_loss"]
    assert _loss_plot(history)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("update", [
    {"epochs": 1.5, "log_every": 2},
    {"epochs": 2, "grad_accum": 3, "log_every": 1, "warmup": 0.3, "schedule": "cosine", "min_lr": 1e-4},
    {"max_steps": 9, "eval_every": 4, "checkpoint_every": 3, "log_every": 4, "schedule": "constant", "warmup": 2},
])
def test_logs_evaluations_and_checkpoints_match_the_trainer_path(tmp_path, update):
    from danlu.train.engine import fit

    ds, ev = data(n=100)[0], data(n=40, seed=1)[0]
    cfg = TrainConfig(batch_size=16, keep_checkpoints=2, **QUIET, **update)

    def trace(train, folder):
        result = train(model(), ds, ev, collate, cfg, folder / "ckpt", folder / "h.json",
                       compute_metrics=accuracy_metric, metric="accuracy", greater_is_better=True, large_model=False)
        entries = [(h["step"], round(h["epoch"], 6), sorted(h), round(h.get("learning_rate", -1), 9),
                    h.get("total_flos")) for h in result.history]
        return result.steps, result.epochs, entries, sorted(p.name for p in (folder / "ckpt").iterdir())

    assert trace(fit_loop, tmp_path / "loop") == trace(fit, tmp_path / "trainer")


def test_progress_bar_shows_the_loss_only_when_asked(tmp_path, capsys):
    run(tmp_path / "a", TrainConfig(max_steps=3, batch_size=64, log_every=1, **QUIET))
    assert "loss=" not in capsys.readouterr().err
    run(tmp_path / "b", TrainConfig(max_steps=3, batch_size=64, log_every=1, progress=True))
    assert "loss=" in capsys.readouterr().err


def test_bf16_trains_under_autocast(tmp_path):
    seen = []

    class Recording(ClassicModel):
        def forward(self, **kwargs):
            seen.append(torch.is_autocast_enabled(next(self.parameters()).device.type))
            return super().forward(**kwargs)

    torch.manual_seed(0)
    net = Recording(ClassicConfig(arch="mlp", input_shape=[4], hidden=[16], num_labels=2))
    result = run(tmp_path, TrainConfig(max_steps=2, batch_size=64, precision="bf16", **QUIET), net=net)
    assert result.precision == "bf16" and seen == [True, True]


def test_distillation_follows_the_teacher(tmp_path):
    ds, y = data()
    for item in ds.items:  # a teacher sure of the wrong class, followed alone (alpha = 1)
        item["teacher_logits"] = np.where(np.arange(2) == item["labels"], -5.0, 5.0).astype(np.float32)
    cfg = TrainConfig(epochs=5, batch_size=32, optimizer="adam", lr=0.01, **QUIET)
    student = run(tmp_path, cfg, ds, distill=(2.0, 1.0)).model
    assert accuracy(student, ds) < 0.1


def test_trainer_callbacks_are_refused(tmp_path):
    with pytest.raises(DanluError, match="callbacks"):
        run(tmp_path, TrainConfig(max_steps=1, **QUIET), callbacks=[object()])


def test_importing_the_loop_leaves_the_trainer_stack_out():
    code = ("import sys, danlu.train.loop\n"
            "heavy = [m for m in sys.modules if m.startswith(('transformers.trainer', 'accelerate', 'peft'))]\n"
            "print(heavy)\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"

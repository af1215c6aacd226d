"""Differentially private training: DP-SGD through Opacus, chosen where the fitter is (recipe `privacy:`).

Opacus computes each example's gradient, clips it to `max_grad_norm`, adds Gaussian noise to the sum
and draws batches by Poisson sampling; `make_private_with_epsilon` sizes the noise so that the planned
training spends at most `epsilon` at `delta`, and its RDP accountant says what each step has spent.
That needs its own optimizer and data loader wrapping, so this is a loop of its own rather than an
option of the engines: the same recipe keys (optimizer, lr, schedule, epochs or max_steps, batch size
as the expected Poisson batch), the same history.json shape, the same FitResult.

What it leaves out, and says so: resuming (the accountant's state is not checkpointed, so a private run
starts again from the beginning), class weights and oversampling (a weighted loss is no longer the
per-example mean Opacus clips), distillation and Trainer callbacks (LoRA's gradual unfreezing, joint
MLM) and layers Opacus has no per-example gradients for (its ModuleValidator names them: BatchNorm
mixes examples).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from danlu.errors import DanluError
from danlu.run import atomic_write_json

log = logging.getLogger("danlu")


def auto_delta(examples: int) -> float:
    """1 / n^1.1: below 1/n, the usual ceiling (a delta of 1/n allows leaking one example outright)."""
    return 1.0 / max(examples, 2) ** 1.1


def private_fitter(config):
    """A fit function with the engines' signature (danlu.train.fitter) that trains with DP-SGD."""

    def fit(model, train_ds, eval_ds, collator, cfg, checkpoints: Path, history_path: Path, compute_metrics,
            metric, greater_is_better, large_model, class_weights=None, sample_weights=None, resume=True,
            callbacks=(), group_by_length=False, distill=None, watchers=(), distributed=None):
        refused = [what for what, used in (("train.imbalance (class weights or oversampling)",
                                            class_weights is not None or sample_weights is not None),
                                           ("distill", distill is not None),
                                           ("distributed training", distributed is not None),
                                           ("callbacks of " + ", ".join(type(c).__name__ for c in callbacks),
                                            bool(callbacks))) if used]
        if refused:
            raise DanluError(f"privacy: DP-SGD here does not combine with {refused[0]}: Opacus clips each "
                             "example's gradient of a plain mean loss; drop one of the two")
        return fit_private(config, model, train_ds, eval_ds, collator, cfg, Path(history_path), compute_metrics,
                           watchers)

    return fit


def check_layers(model) -> None:
    """One message naming the layers Opacus cannot compute per-example gradients for, and why."""
    from opacus.validators import ModuleValidator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not ModuleValidator.validate(model, strict=False):
            return
        found = {}  # layer -> the first sentence of Opacus' reason
        for name, module in model.named_modules():
            if name and not list(module.children()):
                errors = ModuleValidator.validate(module, strict=False)
                if errors:
                    found[f"{name} ({type(module).__name__})"] = str(errors[0]).split(". ")[0]
    layers = ", ".join(list(found)[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    reasons = "; ".join(dict.fromkeys(found.values())) or "Opacus' validator refuses the model"
    raise DanluError(f"privacy: Opacus cannot train these layers privately: {layers}: {reasons}; "
                     "choose a model without them")


@contextmanager
def _quiet_hooks():
    """Opacus' hooks fire on the first layer, whose input needs no gradient: PyTorch would warn at every step."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        yield


def freeze_shared(model, batch) -> list[str]:
    """Freeze, and name, the parameters whose layer reads an input shared by the whole batch (a Hugging Face
    transformer's position embeddings get position ids of batch size 1): their per-example gradients cannot
    be told apart, so DP-SGD cannot clip them. Found by one probe step through Opacus' GradSampleModule."""
    from opacus.grad_sample import GradSampleModule

    rows = _rows(batch)
    probe = GradSampleModule(model, strict=False)
    try:
        with _quiet_hooks():
            probe(**batch)["loss"].backward()
        found = [(name.removeprefix("_module."), p) for name, p in probe.named_parameters()
                 if p.requires_grad and getattr(p, "grad_sample", None) is not None and p.grad_sample.shape[0] != rows]
    finally:
        probe._close()
        model.zero_grad(set_to_none=True)
    for _, p in found:
        p.requires_grad_(False)
    return [name for name, _ in found]


def fit_private(config, model, train_ds, eval_ds, collator, cfg, history_path: Path, compute_metrics,
                watchers=()):
    with _quiet_hooks():
        return _fit_private(config, model, train_ds, eval_ds, collator, cfg, history_path, compute_metrics, watchers)


def _fit_private(config, model, train_ds, eval_ds, collator, cfg, history_path: Path, compute_metrics, watchers):
    import torch
    from opacus import PrivacyEngine

    from danlu.train.fitting import FitResult, make_optimizer, seed_everything

    if len(train_ds) == 0:
        raise DanluError("the training split is empty: nothing to train on")
    check_layers(model)
    seed_everything(cfg.seed)
    n = len(train_ds)
    delta = auto_delta(n) if config.delta == "auto" else float(config.delta)
    if delta >= 1.0 / n:
        log.warning("privacy.delta %.3g is not below 1/n = %.3g: the guarantee allows leaking whole examples",
                    delta, 1.0 / n)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collator,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    frozen = freeze_shared(model, collator([train_ds[i] for i in range(min(len(train_ds), 8))]))
    if frozen:
        log.warning("privacy: kept at their initial values, because their input is shared by the whole batch so "
                    "Opacus has no per-example gradient for them: %s", ", ".join(frozen))
    per_epoch = max(len(loader), 1)
    epochs = math.ceil(cfg.max_steps / per_epoch) if cfg.max_steps else max(math.ceil(cfg.epochs), 1)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, (0.9, cfg.beta2))
    with warnings.catch_warnings():  # "Secure RNG turned off": fine for research, said in the docs
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=config.epsilon,
            target_delta=delta, epochs=epochs, max_grad_norm=config.max_grad_norm, poisson_sampling=True)
    total = cfg.max_steps or epochs * per_epoch
    schedule = _schedule(optimizer, cfg, total)
    history: list[dict] = []
    step, losses, stopped, start = 0, [], None, time.perf_counter()
    private.train()
    for epoch in range(epochs):
        for batch in loader:
            if step >= total or not _rows(batch):  # Poisson sampling may draw an empty batch
                continue
            loss = private(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(float(loss.detach()))
        spent = engine.get_epsilon(delta) if step else 0.0
        if spent > config.epsilon:
            stopped = f"the budget epsilon {config.epsilon:g} was passed after {step} steps ({spent:.3f} spent)"
            if config.on_budget == "warn":
                log.warning("privacy: %s; training goes on (privacy.on_budget: warn)", stopped)
        entry = {"loss": float(np.mean(losses[-per_epoch:])) if losses else float("nan"), "epsilon": spent,
                 "epoch": float(epoch + 1), "step": step}
        history.append(entry)
        if eval_ds is not None and len(eval_ds) and compute_metrics is not None:
            found = _evaluate(private._module, eval_ds, collator, compute_metrics, cfg)
            history.append({**found, "epoch": float(epoch + 1), "step": step})
            if any(w.on_evaluation(step, found) for w in watchers):
                stopped = stopped or "a watcher stopped the training"
                break
        atomic_write_json(history_path, history)
        private.train()
        if stopped and config.on_budget == "stop":
            break
    seconds = time.perf_counter() - start
    spent = engine.get_epsilon(delta) if step else 0.0
    report = {"epsilon": spent, "epsilon_budget": config.epsilon, "delta": delta, "max_grad_norm": config.max_grad_norm,
              "noise_multiplier": float(optimizer.noise_multiplier), "sample_rate": 1.0 / per_epoch,
              "steps": step, "epochs": epochs, "accountant": "rdp", "library": "opacus",
              **({"frozen": frozen} if frozen else {}), **({"stopped": stopped} if stopped else {})}
    atomic_write_json(history_path, history)
    private._close()  # Opacus' hooks off and its per-example gradients gone: a plain model from here on
    model = private._module.eval()
    return FitResult(model=model, history=history, seconds=seconds, steps=step, epochs=float(epochs),
                     precision="fp32", compiled=False, resumed_from=None,
                     extra={"train_loss": float(np.mean(losses)) if losses else float("nan"), "privacy": report})


def _rows(batch) -> int:
    labels = batch.get("labels") if isinstance(batch, Mapping) else None  # a tokenizer's BatchEncoding too
    return 0 if labels is None else len(labels)


def _schedule(optimizer, cfg, total: int):
    """The recipe's schedule (warmup, then constant, linear or cosine), by the plain loop's formula."""
    import torch

    from danlu.train.loop import lr_factor

    warmup = int(cfg.warmup) if cfg.warmup >= 1 else math.ceil(total * cfg.warmup)
    min_rate = cfg.min_lr / cfg.lr if cfg.schedule == "cosine" else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer.original_optimizer, lambda s: lr_factor(cfg.schedule, s, warmup, total, min_rate))


def _evaluate(model, dataset, collator, compute_metrics, cfg) -> dict:
    import torch

    from danlu.train.loop import Predictions

    model.eval()
    size = cfg.eval_batch_size or max(cfg.batch_size, 64)
    logits, labels, losses = [], [], []
    with torch.no_grad():
        for start in range(0, len(dataset), size):
            batch = collator([dataset[i] for i in range(start, min(start + size, len(dataset)))])
            out = model(**batch)
            logits.append(out["logits"].float().numpy())
            labels.append(batch["labels"].numpy())
            losses.append(float(out["loss"]) * len(labels[-1]))
    found = compute_metrics(Predictions(np.concatenate(logits), np.concatenate(labels)))
    metrics = {(k if k.startswith("eval_") else f"eval_{k}"): v for k, v in found.items()}
    metrics["eval_loss"] = sum(losses) / len(dataset)
    return metrics


def report_section(report: dict) -> tuple:
    """The privacy guarantee the training spent, for the run report."""
    rows = [["epsilon spent", f"{report['epsilon']:.3f}"], ["epsilon budget", f"{report['epsilon_budget']:g}"],
            ["delta", f"{report['delta']:.3g}"], ["max_grad_norm", f"{report['max_grad_norm']:g}"],
            ["noise multiplier", f"{report['noise_multiplier']:.4f}"], ["sample rate", f"{report['sample_rate']:.4g}"],
            ["steps", str(report["steps"])], ["accountant", f"{report['library']} {report['accountant']}"]]
    blocks = [("table", ["", "value"], rows)]
    if report.get("stopped"):
        blocks.append(("text", f"Stopped: {report['stopped']}."))
    return ("Differential privacy", blocks)

"""A plain PyTorch training loop for the small classic nets (danlu.models.ClassicModel).

For a 10k-parameter MLP, transformers.Trainer buys nothing and costs ~10 s of imports (accelerate,
peft). `fit_loop` takes engine.fit's arguments, honours the same TrainConfig and leaves the same
traces: history.json in Trainer's log_history shape, checkpoints/checkpoint-N with a
trainer_state.json written last, so engine.latest_complete_checkpoint serves both paths.

Resume is exact: each epoch's data order is a function of (seed, epoch) alone, and a checkpoint
holds the weights, optimizer, scheduler, RNG states and the loop's position, so a run killed and
resumed ends with the same weights, bit for bit, as one never interrupted. Nothing is unpickled:
weights and RNG states are safetensors, the position is JSON, and the optimizer and scheduler
states load with torch.load(weights_only=True).

A model that steps itself (a GAN: two networks, each with its own loss, rate and update) keeps the
loop's data order, schedule, checkpoints, resume and history and brings the rest, under PyTorch
Lightning's manual-optimisation names:
    configure_optimizers() -> Optimizer         one optimizer, a parameter group per network
    training_step(batch, optimizer) -> {name: float}   one update on the batch (backward and steps
                                                        its own); the named losses are logged
    on_train_epoch_end(epoch) -> {name: value}  an entry for the history at each epoch's end
    checkpoint_state() -> dict, load_checkpoint_state(dict)   what else it keeps (JSON), through a resume
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from danlu.errors import DanluError
from danlu.run import atomic_write_json, save_atomically
from danlu.train.fitting import (STATE_FILE, FitResult, checkpoint_dirs, choose_precision,
                                 latest_complete_checkpoint, make_optimizer, seed_everything, watchers_log,
                                 watchers_stop)

log = logging.getLogger("danlu")

FORMAT = "danlu-loop/1"  # in the state file: a Trainer checkpoint cannot be resumed by the loop


@dataclass
class Predictions:
    """What compute_metrics receives, like transformers.EvalPrediction."""

    predictions: np.ndarray
    label_ids: np.ndarray | None


@dataclass
class Plan:
    """The step arithmetic of Trainer.set_initial_training_values (no dropped last batch)."""

    max_steps: int
    epochs: int
    warmup: int

    @classmethod
    def of(cls, examples: int, cfg) -> Plan:
        batches = math.ceil(examples / cfg.batch_size)
        updates = max(math.ceil(batches / cfg.grad_accum), 1)
        max_steps = cfg.max_steps or math.ceil(cfg.epochs * updates)
        epochs = math.ceil(max_steps / updates) if cfg.max_steps else math.ceil(cfg.epochs)
        warmup = int(cfg.warmup) if cfg.warmup >= 1 else math.ceil(max_steps * cfg.warmup)
        return cls(max_steps, epochs, warmup)


@dataclass
class Position:
    """Where the loop stands; saved in every checkpoint so a resumed run carries on from here."""

    global_step: int = 0
    epoch: float = 0.0  # Trainer's fractional epoch: epoch index + share of its batches done
    epoch_index: int = 0  # the epoch under way, or the last one
    batches_done: int = 0  # of epoch_index
    epoch_ended: bool = False  # epoch_index's end-of-epoch evaluation and checkpoint have begun
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement larger than min_delta
    stop: bool = False  # early stopping has ended the run
    loss_window: float = 0.0  # summed loss since the last logged step
    named_windows: dict = field(default_factory=dict)  # a model that steps itself: its named losses, summed
    last_logged: int = 0
    total_loss: float = 0.0
    total_flos: float = 0.0  # PreTrainedModel.floating_point_ops' estimate, as Trainer reports it
    log_history: list = field(default_factory=list)


def lr_factor(schedule: str, step: int, warmup: int, total: int, min_lr_rate: float = 0.0) -> float:
    """transformers' constant_with_warmup, linear and cosine(_with_min_lr) schedules, by their formulas
    (importing transformers.optimization would pull in accelerate and peft)."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    progress = float(step - warmup) / float(max(1, total - warmup))
    factor = 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


def fit_loop(model: nn.Module, train_ds, eval_ds, collator, cfg, checkpoints: Path, history_path: Path,
             compute_metrics: Callable | None, metric: str | None, greater_is_better: bool,
             large_model: bool, class_weights: np.ndarray | None = None,
             sample_weights: np.ndarray | None = None, resume: bool = True,
             callbacks=(), group_by_length: bool = False,
             distill: tuple[float, float] | None = None, watchers=()) -> FitResult:
    """engine.fit without transformers.Trainer. `group_by_length` is accepted and ignored: the
    classic nets take fixed-size inputs."""
    if callbacks:
        names = ", ".join(type(c).__name__ for c in callbacks)
        raise DanluError(f"the plain training loop takes no Trainer callbacks (got {names}); "
                         "train this model with danlu.train.engine.fit")
    if len(train_ds) == 0:
        raise DanluError("the training split is empty: nothing to train on")
    if cfg.compile is True:
        log.info("train.compile: the plain training loop does not compile the small classic nets")
    if steps_itself(model) and cfg.grad_accum != 1:
        raise DanluError(f"train.grad_accum: {type(model).__name__} makes one update of each network per batch; "
                         "set train.grad_accum: 1 (a larger batch_size accumulates nothing differently)")
    seed_everything(cfg.seed)
    loop = _Loop(model, train_ds, eval_ds, collator, cfg, Path(checkpoints), Path(history_path),
                 compute_metrics, metric, greater_is_better, choose_precision(cfg.precision, large_model),
                 class_weights, sample_weights, distill)
    loop.watchers = list(watchers)
    resumed_from = latest_complete_checkpoint(Path(checkpoints)) if resume else None
    if resumed_from:
        log.info("resuming from %s", resumed_from)
        loop.restore(Path(resumed_from))
    start = time.perf_counter()
    loop.train()
    seconds = time.perf_counter() - start
    train_loss = loop.finish(seconds)
    pos = loop.pos
    return FitResult(model=loop.model, history=list(pos.log_history), seconds=seconds, steps=pos.global_step,
                     epochs=float(pos.epoch), precision=loop.precision, compiled=False,
                     resumed_from=resumed_from, extra={"train_loss": train_loss, "optimizer": loop.optimizer})


class _Loop:
    def __init__(self, model, train_ds, eval_ds, collator, cfg, checkpoints: Path, history_path: Path,
                 compute_metrics, metric, greater_is_better, precision, class_weights, sample_weights, distill):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.train_ds, self.collator, self.cfg = train_ds, collator, cfg
        self.eval_ds = eval_ds if eval_ds is not None and len(eval_ds) > 0 else None
        self.checkpoints, self.history_path = checkpoints, history_path
        self.compute_metrics = compute_metrics if self.eval_ds is not None else None
        self.precision = precision
        self.class_weights = (None if class_weights is None else
                              torch.as_tensor(class_weights, dtype=torch.float32, device=self.device))
        self.sample_weights = sample_weights
        self.distill = distill  # (temperature, alpha) when examples carry teacher logits
        self.early = cfg.early_stopping if self.eval_ds is not None else None
        self.metric = self._early_metric(metric)
        self.greater_is_better = greater_is_better
        self.eval_every = cfg.eval_every if self.eval_ds is not None else None
        # Keeping the best model needs checkpoints at the evaluation points.
        self.save_every = self.eval_every if self.early else cfg.checkpoint_every
        self.plan = Plan.of(len(train_ds), cfg)
        self.own_step = steps_itself(model)
        self.optimizer = (model.configure_optimizers() if self.own_step else
                          make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, (0.9, cfg.beta2)))
        self.scheduler = self._scheduler()
        self.pos = Position()
        self.bar = None
        self.watchers = []  # fitting.EvalWatcher objects, told of each evaluation

    def _early_metric(self, metric: str | None) -> str | None:
        if self.early is None:
            return None
        name = self.early.metric or metric
        if not name:
            raise DanluError("train.early_stopping: no metric to watch; set train.early_stopping.metric")
        return name if name.startswith("eval_") else f"eval_{name}"

    def _scheduler(self) -> torch.optim.lr_scheduler.LambdaLR:
        cfg, plan = self.cfg, self.plan
        min_rate = cfg.min_lr / cfg.lr if cfg.schedule == "cosine" else 0.0

        def factor(step: int) -> float:
            return lr_factor(cfg.schedule, step, plan.warmup, plan.max_steps, min_rate)

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    # -- the loop ------------------------------------------------------------------------
    def train(self) -> None:
        self.first_step = self.pos.global_step
        self.bar = self._progress()
        try:
            for epoch in range(self.pos.epoch_index, self.plan.epochs):
                if self._stopping() and not self._end_pending(epoch):
                    break
                self._run_epoch(epoch)
                if self._stopping():
                    break
        finally:
            if self.bar is not None:
                self.bar.close()

    def _stopping(self) -> bool:
        return self.pos.stop or self.pos.global_step >= self.plan.max_steps

    def _end_pending(self, epoch: int) -> bool:
        """Resumed from a checkpoint taken inside `epoch`, which still owes its end-of-epoch
        evaluation and checkpoint."""
        pos = self.pos
        return pos.epoch_index == epoch and pos.batches_done > 0 and not pos.epoch_ended

    def _run_epoch(self, epoch: int) -> None:
        pos = self.pos
        if pos.epoch_index != epoch:
            pos.epoch_index, pos.batches_done, pos.epoch_ended = epoch, 0, False
        if pos.epoch_ended:
            return  # resumed from this epoch's end-of-epoch checkpoint
        self._train_epoch(epoch)
        pos.epoch_ended = True
        if self.own_step and hasattr(self.model, "on_train_epoch_end"):
            entry = self.model.on_train_epoch_end(epoch)  # before the checkpoint, which then holds it
            if entry:
                self._log(entry)
        if self.eval_every == "epoch":
            self._evaluate()
        if self.save_every == "epoch":
            self._save()

    def _train_epoch(self, epoch: int) -> None:
        pos, cfg = self.pos, self.cfg
        batches = epoch_batches(len(self.train_ds), cfg.batch_size, cfg.seed, epoch, self.sample_weights)
        done = pos.batches_done
        loader = iter(self._loader(self.train_ds, batches[done:], _generator(cfg.seed, epoch)))
        while done < len(batches) and not self._stopping():
            # Like Trainer: groups of grad_accum batches from the epoch's start, the last one shorter.
            group = [next(loader) for _ in range(min(cfg.grad_accum, len(batches) - done))]
            grad_norm, lr = self._update(group)
            done += len(group)
            pos.global_step += 1
            pos.batches_done = done
            pos.epoch = epoch + done / len(batches)
            self._after_step(grad_norm, lr)

    def _loader(self, dataset, batches, generator) -> torch.utils.data.DataLoader:
        # Its own generator: otherwise each new iterator draws from the global RNG that dropout
        # uses, and a resumed epoch would see other dropout masks than the uninterrupted one.
        return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=self.collator,
                                           num_workers=self.cfg.workers, generator=generator,
                                           pin_memory=self.device.type == "cuda")

    def _update(self, group: list[dict]) -> tuple[float | None, float]:
        """One optimizer step over a group of batches; returns the gradient norm and the rate used."""
        self.model.train()
        if self.own_step:  # fit_loop made sure the group is one batch
            losses = self.model.training_step(self._to_device(group[0]), self.optimizer)
            for name, value in losses.items():
                self.pos.named_windows[name] = self.pos.named_windows.get(name, 0.0) + float(value)
            self.pos.total_flos += self._flos(group[0])
            lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            return None, lr
        for batch in group:
            loss, _ = self._loss(self._to_device(batch), training=True)
            loss = loss / len(group)  # every danlu loss is a batch mean
            loss.backward()
            self._add_loss(loss.item())
            self.pos.total_flos += self._flos(batch)
        grad_norm = self._clip()
        self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, lr

    def _add_loss(self, value: float) -> None:
        pos = self.pos
        if not math.isfinite(value):  # like Trainer's logging_nan_inf_filter: the window's mean instead
            value = pos.loss_window / (1 + pos.global_step - pos.last_logged)
        pos.loss_window += value

    def _flos(self, batch: dict) -> float:
        """Trainer.floating_point_ops: 6 x input size x parameters (forward and backward)."""
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in batch or not hasattr(self.model, "num_parameters"):
            return 0.0
        return float(6 * batch[main].numel() * self.model.num_parameters(exclude_embeddings=True))

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return 0.0
        limit = self.cfg.max_grad_norm
        if limit:
            return float(nn.utils.clip_grad_norm_(params, limit))
        return float(nn.utils.get_total_norm([p.grad for p in params]))

    def _loss(self, batch: dict, training: bool):
        """DanluTrainer.compute_loss: distillation or class weights, plus L1 in training."""
        teacher = batch.pop("teacher_logits", None)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            outputs = self.model(**batch)
            loss = outputs.get("loss")  # a ModelOutput has no "loss" key when it is None
            if teacher is not None and self.distill and training:
                from danlu.train.distill import distill_loss

                loss = distill_loss(outputs["logits"], teacher, batch["labels"], *self.distill)
            elif self.class_weights is not None and "labels" in batch:
                loss = nn.functional.cross_entropy(outputs["logits"].float(), batch["labels"],
                                                   weight=self.class_weights)
            if self.cfg.l1 and training:
                # L1 on weight matrices only, like weight decay skips biases and norms.
                penalty = sum(p.abs().sum() for p in self.model.parameters() if p.requires_grad and p.dim() > 1)
                loss = loss + self.cfg.l1 * penalty
        return loss, outputs

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _after_step(self, grad_norm: float, lr: float) -> None:
        """Trainer's DefaultFlowCallback: log, then evaluate, then save; at the budget's end a
        step-based evaluation and checkpoint happen whatever the step."""
        step = self.pos.global_step
        last = step >= self.plan.max_steps
        if self.bar is not None:
            self.bar.update(1)
        if step == 1 or step % self.cfg.log_every == 0:
            self._log_loss(grad_norm, lr)
        if isinstance(self.eval_every, int) and (step % self.eval_every == 0 or last):
            self._evaluate()
        if isinstance(self.save_every, int) and (step % self.save_every == 0 or last):
            self._save()

    # -- logs ----------------------------------------------------------------------------
    def _log_loss(self, grad_norm: float | None, lr: float) -> None:
        pos = self.pos
        steps = pos.global_step - pos.last_logged
        if self.own_step:
            entry = {name: total / steps for name, total in pos.named_windows.items()}
            pos.named_windows = {}
        else:
            entry = {"loss": pos.loss_window / steps, "grad_norm": grad_norm}
            pos.total_loss += pos.loss_window
        pos.loss_window, pos.last_logged = 0.0, pos.global_step
        self._log({**entry, "learning_rate": lr})

    def _log(self, entry: dict) -> None:
        entry = {**entry, "epoch": self.pos.epoch, "step": self.pos.global_step}
        self.pos.log_history.append(entry)
        atomic_write_json(self.history_path, self.pos.log_history)
        watchers_log(self.watchers, self.pos.global_step, entry)
        if self.bar is not None:
            shown = {k.removeprefix("eval_"): f"{v:.4g}" for k, v in entry.items()
                     if isinstance(v, float) and (k == "loss" or k.startswith("eval_"))
                     and "runtime" not in k and "per_second" not in k}
            if shown:
                self.bar.set_postfix(shown, refresh=False)

    def _progress(self):
        if not self.cfg.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.plan.max_steps, initial=self.pos.global_step, dynamic_ncols=True)

    # -- evaluation ----------------------------------------------------------------------
    def _evaluate(self) -> None:
        metrics = self.evaluate()
        self._log(metrics)
        if self.early is not None:
            self._judge(metrics)
        if self.watchers and watchers_stop(self.watchers, self.pos.global_step, metrics):
            self.pos.stop = True

    def evaluate(self) -> dict:
        """Trainer.evaluate's metrics: eval_loss (a mean over examples), eval_<metric>, speed."""
        start = time.perf_counter()
        size, n = self.cfg.eval_batch_size or max(self.cfg.batch_size, 64), len(self.eval_ds)
        batches = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        losses, logits, labels = self._predict(self._loader(self.eval_ds, batches, torch.Generator().manual_seed(0)))
        metrics = {}
        if self.compute_metrics is not None:
            found = self.compute_metrics(Predictions(logits, labels))
            metrics = {(k if k.startswith("eval_") else f"eval_{k}"): _plain(v) for k, v in found.items()}
        if losses is not None:
            finite = losses[np.isfinite(losses)]
            metrics["eval_loss"] = float((finite if finite.size else losses).mean())
        return metrics | _speed("eval", time.perf_counter() - start, n, len(batches))

    def _predict(self, loader) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        self.model.eval()
        losses, logits, labels = [], [], []
        with torch.no_grad():
            for batch in loader:
                batch = self._to_device(batch)
                loss, outputs = self._loss(batch, training=False)
                out = outputs["logits"]
                logits.append(out.float().cpu().numpy())
                if loss is not None:
                    losses.append(np.full(len(out), loss.float().item(), dtype=np.float32))
                if "labels" in batch:
                    labels.append(batch["labels"].cpu().numpy())
        return (np.concatenate(losses) if losses else None, np.concatenate(logits),
                np.concatenate(labels) if labels else None)

    def _judge(self, metrics: dict) -> None:
        """EarlyStoppingCallback, then Trainer's best-metric bookkeeping, in that order."""
        if self.metric not in metrics:
            raise DanluError(f"train.early_stopping: the evaluation has no '{self.metric}' "
                             f"(it has {', '.join(sorted(metrics))})")
        value, pos = metrics[self.metric], self.pos
        better = np.greater if self.greater_is_better else np.less
        if pos.best_metric is None or (better(value, pos.best_metric)
                                       and abs(value - pos.best_metric) > self.early.min_delta):
            pos.bad_evals = 0
        else:
            pos.bad_evals += 1
        if pos.bad_evals >= self.early.patience:
            pos.stop = True
        best = pos.best_metric
        if best is None:
            best = float("-inf") if self.greater_is_better else float("inf")
        if better(value, best):
            best, pos.best_step = float(value), pos.global_step
        pos.best_metric = best

    # -- checkpoints ---------------------------------------------------------------------
    def _save(self) -> None:
        folder = self.checkpoints / f"checkpoint-{self.pos.global_step}"
        save_atomically(folder, self._write_checkpoint)
        self._rotate(folder)

    def _write_checkpoint(self, folder: Path) -> None:
        save_model(self.model, str(folder / "model.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
        save_file(_torch_rng_state(), str(folder / "rng_state.safetensors"))
        state = {"format": FORMAT, "position": asdict(self.pos), "rng": _python_rng_state(),
                 "data": self._data_signature()}
        if self.own_step and hasattr(self.model, "checkpoint_state"):
            state["model_state"] = self.model.checkpoint_state()
        atomic_write_json(folder / STATE_FILE, state)  # last: it marks the checkpoint complete

    def _best_folder(self) -> Path | None:
        if self.early is None or self.pos.best_step is None:
            return None
        folder = self.checkpoints / f"checkpoint-{self.pos.best_step}"
        return folder if folder.is_dir() else None

    def _rotate(self, newest: Path) -> None:
        """Trainer's rotate_checkpoints: keep the newest `keep_checkpoints`, and always the one just
        written (to resume) and the best (to restore at the end)."""
        found = checkpoint_dirs(self.checkpoints)
        keep = self.cfg.keep_checkpoints
        if len(found) <= keep:
            return
        # The one just written, not the highest step: a run started over (resume=False) may find
        # an older run's later checkpoints.
        protected = {newest, self._best_folder()} - {None}
        remaining = len(found)
        for folder in found:
            if remaining <= max(keep, len(protected)):
                break
            if folder not in protected:
                shutil.rmtree(folder, ignore_errors=True)
                remaining -= 1

    def restore(self, folder: Path) -> None:
        state = json.loads((folder / STATE_FILE).read_text())
        if state.get("format") != FORMAT:
            raise DanluError(f"{folder} was written by the transformers.Trainer path, not the plain loop; "
                             "resume it with danlu.train.engine.fit or delete the checkpoints folder")
        load_model(self.model, str(folder / "model.safetensors"))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        _set_rng_state(load_file(str(folder / "rng_state.safetensors")), state["rng"])
        self.pos = Position(**state["position"])
        if self.own_step and hasattr(self.model, "load_checkpoint_state"):
            self.model.load_checkpoint_state(state.get("model_state") or {})
        if state.get("data") != self._data_signature():
            log.warning("%s was written with another batch size, accumulation, seed or training set size: "
                        "the resumed run will not replay the interrupted one's data order", folder)

    def _data_signature(self) -> dict:
        """What the data order and the step arithmetic depend on."""
        cfg = self.cfg
        return {"examples": len(self.train_ds), "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                "seed": cfg.seed, "oversampled": self.sample_weights is not None}

    # -- the end -------------------------------------------------------------------------
    def finish(self, seconds: float) -> float:
        """Trainer's summary log entry, then the best weights back (load_best_model_at_end)."""
        pos = self.pos
        pos.total_loss += pos.loss_window
        pos.loss_window = 0.0
        # Over the whole run, resumed or not: the loss sums travel in the checkpoints. A model that steps
        # itself has named losses (in the history), no one training loss.
        train_loss = None if self.own_step else pos.total_loss / max(pos.global_step, 0.001)
        cfg, plan = self.cfg, self.plan
        steps = pos.global_step - self.first_step
        planned = (plan.max_steps * cfg.batch_size * cfg.grad_accum if cfg.max_steps
                   else len(self.train_ds) * cfg.epochs)
        self._log({**_speed("train", seconds, planned * steps / plan.max_steps, steps),
                   "total_flos": pos.total_flos, "train_loss": train_loss})
        self._restore_best()
        self.model.eval()
        return train_loss

    def _restore_best(self) -> None:
        best = self._best_folder()
        if best is None:
            if self.early is not None and self.pos.best_step is not None:
                log.warning("the best checkpoint (step %s) is gone; keeping the last weights", self.pos.best_step)
            return
        load_model(self.model, str(best / "model.safetensors"))
        if self.cfg.keep_checkpoints == 1:  # like Trainer: then only the best one stays
            for folder in checkpoint_dirs(self.checkpoints):
                if folder != best:
                    shutil.rmtree(folder, ignore_errors=True)


def steps_itself(model) -> bool:
    """Whether the model makes its own updates (module docstring): a GAN's two networks."""
    return callable(getattr(model, "training_step", None)) and callable(getattr(model, "configure_optimizers", None))


def epoch_batches(examples: int, batch_size: int, seed: int, epoch: int,
                  sample_weights: np.ndarray | None = None) -> list[list[int]]:
    """An epoch's batches of example indices: a function of (seed, epoch) alone, so a resumed
    epoch replays the order; with `sample_weights`, drawn with replacement (oversampling)."""
    generator = _generator(seed, epoch)
    if sample_weights is None:
        order = torch.randperm(examples, generator=generator).tolist()
    else:
        weights = torch.as_tensor(sample_weights, dtype=torch.double)
        order = list(torch.utils.data.WeightedRandomSampler(weights, num_samples=examples, replacement=True,
                                                            generator=generator))
    return [order[i:i + batch_size] for i in range(0, examples, batch_size)]


def _generator(seed: int, epoch: int) -> torch.Generator:
    mixed = np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def _plain(value):
    return value.item() if isinstance(value, (np.generic, torch.Tensor)) else value


def _speed(prefix: str, runtime: float, samples: float, steps: int) -> dict:
    return {f"{prefix}_runtime": round(runtime, 4),
            f"{prefix}_samples_per_second": round(samples / max(runtime, 1e-9), 3),
            f"{prefix}_steps_per_second": round(steps / max(runtime, 1e-9), 3)}


def _torch_rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _python_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, index, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(index), int(has_gauss), float(cached)]}


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, index, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), index, has_gauss, cached))

"""The training engine: transformers.Trainer with the few things it lacks for danlu's recipes.

Why Trainer: it already gives checkpoints and exact resume (optimizer, scheduler, RNG state),
schedules with warmup, gradient accumulation, bf16 autocast, torch.compile, early stopping and
evaluation loops. What we add, in a small subclass:
- the five optimizers by name, with no weight decay on biases and norms (`create_optimizer`);
- an L1 penalty and class weights in the loss (`compute_loss`);
- length-bucketed batches and oversampling of rare classes (`get_train_dataloader`, Trainer's public hook);
- choosing bf16 / compile when the recipe says `auto`;
- resuming from the newest *complete* checkpoint of an interrupted run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

from danlu.run import atomic_write_json
from danlu.train.distributed import per_device_batch, world_size
# choose_precision and latest_complete_checkpoint are also imported from here (tests, benchmarks).
from danlu.train.fitting import (FitResult, choose_compile, choose_precision, latest_complete_checkpoint,
                                 make_optimizer, watchers_log, watchers_stop)

log = logging.getLogger("danlu")

SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar length, in random order.

    Like transformers' LengthGroupedSampler it sorts a shuffled window of `window` batches by length,
    so little compute goes to padding; unlike it, the batches are then shuffled across the epoch,
    so training does not see every window's batches from longest to shortest (which cost SST-2
    accuracy in our benchmark). Deterministic for a seed and an epoch, so resume replays the order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, window: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start:start + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for i in rng.permutation(len(batches)):
            yield from batches[i].tolist()


class DanluTrainer(Trainer):
    def __init__(self, *args, optimizer_name: str = "adamw", momentum: float = 0.9, l1: float = 0.0,
                 class_weights: torch.Tensor | None = None, sample_weights: np.ndarray | None = None,
                 group_by_length: bool = False, distill: tuple[float, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length
        self.distill = distill  # (temperature, alpha) when examples carry teacher logits
        self.optimizer_name = optimizer_name
        self.momentum = momentum
        self.l1 = l1
        self.class_weights = class_weights
        self.sample_weights = sample_weights
        # Every danlu loss is a mean over the batch: Trainer must divide it by the accumulation steps.
        self.loss_is_scaled_for_ga = False

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        self.optimizer = make_optimizer(opt_model, self.optimizer_name, self.args.learning_rate,
                                        self.args.weight_decay, self.momentum,
                                        (self.args.adam_beta1, self.args.adam_beta2),
                                        decay=self.get_decay_parameter_names(opt_model))
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop("teacher_logits", None)
        outputs = model(**inputs)
        loss = outputs["loss"]
        if teacher is not None and self.distill and model.training:
            from danlu.train.distill import distill_loss

            loss = distill_loss(outputs["logits"], teacher, inputs["labels"], *self.distill)
        elif self.class_weights is not None and "labels" in inputs:
            weights = self.class_weights.to(outputs["logits"].device)
            loss = nn.functional.cross_entropy(outputs["logits"].float(), inputs["labels"], weight=weights)
        if self.l1 and model.training:
            # L1 on weight matrices only, like weight decay skips biases and norms.
            penalty = sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.dim() > 1)
            loss = loss + self.l1 * penalty
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self):
        """Trainer's public hook for the training data: danlu's own sampler where the recipe needs one
        (batches of similar length, oversampling), else Trainer's loader unchanged."""
        sampler = self._danlu_sampler()
        if sampler is None:
            return super().get_train_dataloader()
        args = self.args
        loader = torch.utils.data.DataLoader(
            self.train_dataset, batch_size=args.per_device_train_batch_size, sampler=sampler,
            collate_fn=self.data_collator, num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory, drop_last=args.dataloader_drop_last)
        return self.accelerator.prepare(loader)

    def _danlu_sampler(self):
        dataset = self.train_dataset
        if self.sample_weights is not None:
            generator = torch.Generator().manual_seed(self.args.seed)
            return torch.utils.data.WeightedRandomSampler(
                torch.as_tensor(self.sample_weights, dtype=torch.double), num_samples=len(self.sample_weights),
                replacement=True, generator=generator)
        if self.group_by_length:
            from danlu.train.examples import item_length

            lengths = [item_length(dataset[i]) for i in range(len(dataset))]
            return LengthBucketSampler(lengths, self.args.per_device_train_batch_size, self.args.seed)
        return None


class QuietProgress(ProgressCallback):
    """The progress bar, with the latest loss and eval metrics in its tail instead of printed dicts."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs:
            shown = {k.removeprefix("eval_"): f"{v:.4g}" for k, v in logs.items()
                     if isinstance(v, float) and (k == "loss" or k.startswith("eval_")) and "runtime" not in k
                     and "per_second" not in k}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


class HistoryCallback(TrainerCallback):
    """Keeps history.json in the run directory current, so a run's progress is visible while it runs."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:  # one writer of the run directory
            atomic_write_json(self.path, state.log_history)


class WatcherCallback(TrainerCallback):
    """fitting.EvalWatcher objects, told of each of Trainer's evaluations (one may stop the training) and
    of each entry of its log."""

    def __init__(self, watchers):
        self.watchers = list(watchers)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and watchers_stop(self.watchers, state.global_step, metrics or {}):
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            watchers_log(self.watchers, state.global_step, logs)


def _distributed_arguments(distributed) -> dict:
    """TrainingArguments for the recipe's `distributed:` section (Trainer and accelerate do the work)."""
    if distributed is None:
        return {}
    kwargs = {}
    if distributed.backend != "auto":
        kwargs["ddp_backend"] = distributed.backend
    elif not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"
    if distributed.strategy == "fsdp":
        kwargs["fsdp"] = distributed.fsdp
        if distributed.fsdp_config:
            kwargs["fsdp_config"] = dict(distributed.fsdp_config)
    elif distributed.strategy == "deepspeed":
        import importlib.util

        from danlu.errors import DanluError

        if importlib.util.find_spec("deepspeed") is None:
            raise DanluError("distributed.strategy: deepspeed needs the deepspeed package (pip install deepspeed)")
        if not distributed.deepspeed:
            raise DanluError("distributed.deepspeed: name the DeepSpeed JSON config file for strategy deepspeed")
        kwargs["deepspeed"] = distributed.deepspeed
    return kwargs


def _training_arguments(cfg, out_dir: Path, has_eval: bool, precision: str, compiled: bool,
                        metric: str | None, greater_is_better: bool, distributed=None) -> TrainingArguments:
    warmup = cfg.warmup if cfg.warmup < 1 else int(cfg.warmup)
    eval_strategy = "no"
    eval_steps = None
    if has_eval:
        eval_strategy = "epoch" if cfg.eval_every == "epoch" else "steps"
        eval_steps = None if cfg.eval_every == "epoch" else cfg.eval_every
    save_strategy = "epoch" if cfg.checkpoint_every == "epoch" else "steps"
    save_steps = None if cfg.checkpoint_every == "epoch" else cfg.checkpoint_every
    best = has_eval and cfg.early_stopping is not None
    if best:
        # Keeping the best model needs checkpoints at the evaluation points.
        save_strategy, save_steps = eval_strategy, eval_steps
    kwargs = dict(
        output_dir=str(out_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        # train.batch_size is the global batch: each process takes its share
        per_device_train_batch_size=per_device_batch(cfg.batch_size),
        per_device_eval_batch_size=cfg.eval_batch_size or max(cfg.batch_size, 64),
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=SCHEDULES[cfg.schedule],
        adam_beta2=cfg.beta2,
        warmup_steps=warmup,
        max_grad_norm=cfg.max_grad_norm or 0.0,
        eval_strategy=eval_strategy,
        save_strategy=save_strategy,
        save_total_limit=cfg.keep_checkpoints,
        load_best_model_at_end=best,
        metric_for_best_model=metric if best else None,
        greater_is_better=greater_is_better if best else None,
        logging_steps=cfg.log_every,
        logging_first_step=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=precision == "bf16",
        torch_compile=compiled,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=cfg.workers,
        disable_tqdm=not cfg.progress,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        save_safetensors=True,
    )
    kwargs.update(_distributed_arguments(distributed))
    if world_size() > 1 and "ddp_backend" not in kwargs and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"  # under torchrun without a distributed: section, on a CPU
    if cfg.schedule == "cosine" and cfg.min_lr:
        kwargs["lr_scheduler_type"] = "cosine_with_min_lr"
        kwargs["lr_scheduler_kwargs"] = {"min_lr": cfg.min_lr}
    if eval_steps:
        kwargs["eval_steps"] = eval_steps
    if save_steps:
        kwargs["save_steps"] = save_steps
    return TrainingArguments(**{k: v for k, v in kwargs.items() if k in TrainingArguments.__dataclass_fields__})


def fit(model: nn.Module, train_ds, eval_ds, collator, cfg, checkpoints: Path, history_path: Path,
        compute_metrics: Callable | None, metric: str | None, greater_is_better: bool,
        large_model: bool, class_weights: np.ndarray | None = None,
        sample_weights: np.ndarray | None = None, resume: bool = True,
        callbacks: list[TrainerCallback] = (), group_by_length: bool = False,
        distill: tuple[float, float] | None = None, watchers=(), distributed=None) -> FitResult:
    steps_per_epoch = max(1, len(train_ds) // (cfg.batch_size * cfg.grad_accum))
    planned = cfg.max_steps or int(steps_per_epoch * cfg.epochs)
    precision = choose_precision(cfg.precision, large_model)
    compiled = choose_compile(cfg.compile, large_model, planned)
    has_eval = eval_ds is not None and len(eval_ds) > 0
    args = _training_arguments(cfg, checkpoints, has_eval, precision, compiled, metric, greater_is_better,
                               distributed)
    callbacks = [HistoryCallback(history_path), *callbacks]
    if watchers:
        callbacks.append(WatcherCallback(watchers))
    if has_eval and cfg.early_stopping is not None:
        callbacks.append(EarlyStoppingCallback(cfg.early_stopping.patience, cfg.early_stopping.min_delta))
    trainer = DanluTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds if has_eval else None,
        data_collator=collator, compute_metrics=compute_metrics if has_eval else None, callbacks=callbacks,
        optimizer_name=cfg.optimizer, momentum=cfg.momentum, l1=cfg.l1,
        class_weights=None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32),
        # Batches of similar length waste little compute on padding (SST-2 phrases run 1-50 tokens).
        sample_weights=sample_weights, group_by_length=group_by_length, distill=distill,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if cfg.progress:
        trainer.add_callback(QuietProgress())
    resume_from = latest_complete_checkpoint(checkpoints) if resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    atomic_write_json(history_path, trainer.state.log_history)
    model = trainer.model
    if hasattr(model, "_orig_mod"):  # unwrap torch.compile
        model = model._orig_mod
    result = FitResult(model=model, history=list(trainer.state.log_history), seconds=seconds,
                       steps=trainer.state.global_step, epochs=float(trainer.state.epoch or 0),
                       precision=precision, compiled=compiled, resumed_from=resume_from,
                       extra={"train_loss": out.training_loss})
    result.extra["trainer"] = trainer
    return result

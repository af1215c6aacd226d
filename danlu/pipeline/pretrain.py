"""The recipe's `pretrain:` stage: self-supervised training before the task's own, in the same run.

The task does the pretraining itself (`Task.pretrain`, the objectives its registry entry names); this
stage makes it resumable and hands it on. It writes RUN/pretrain/ (tokenizer, checkpoints,
history.json, model/, metrics.json) and returns a recipe whose `model.from` is RUN/pretrain/model,
so fine-tuning starts from the pretrained weights exactly as it would from any other checkpoint. A
finished pretraining is not redone when the run resumes; an interrupted one continues from its
newest checkpoint with the same tokenizer.
"""

from __future__ import annotations

import math

import pandas as pd

from danlu.run import Run, atomic_write_json, read_json
from danlu.tasks import make_task


def pretrain_stage(recipe, train_frame: pd.DataFrame, run: Run, say=print, callbacks=()):
    """Returns (recipe to fine-tune with, pretraining metrics) — (recipe, None) without a pretrain section."""
    cfg = recipe.pretrain
    if cfg is None:
        return recipe, None
    out = run.pretrain_dir
    stage = Run(out)  # the pretraining's own checkpoints, history, model and metrics, laid out as a run's
    done = stage.metrics_path
    if done.exists() and (stage.model_dir / "config.json").exists():
        say("pretrain: finished earlier in this run")
        metrics = read_json(done)
    else:
        metrics = make_task(recipe).pretrain(cfg.objective, train_frame, out, say, list(callbacks))
        atomic_write_json(done, {k: v for k, v in metrics.items() if k != "history"})
    model_cfg = recipe.model.model_copy(update={"from_": str(stage.model_dir.resolve())})
    return recipe.model_copy(update={"model": model_cfg}), metrics


def summary(metrics: dict | None) -> dict:
    """The figures the report shows for the pretraining stage."""
    if not metrics:
        return {}
    loss = metrics.get("eval_loss")
    return {"objective": metrics.get("objective", "mlm"), "steps": metrics.get("steps"),
            "seconds": metrics.get("seconds"),
            "held-out loss": None if loss is None or (isinstance(loss, float) and math.isnan(loss)) else round(loss, 4),
            "perplexity": None if metrics.get("perplexity") is None else round(float(metrics["perplexity"]), 2),
            "blocks": metrics.get("blocks"), "images": metrics.get("images")}

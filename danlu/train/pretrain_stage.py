"""The recipe's `pretrain:` stage: self-supervised training before the task's own, in the same run.

It writes RUN/pretrain/ (tokenizer, checkpoints, history.json, model/, metrics.json) and hands the
task a recipe whose `model.from` is RUN/pretrain/model, so fine-tuning starts from the pretrained
weights exactly as it would from any other checkpoint. A finished pretraining is not redone when
the run resumes; an interrupted one continues from its newest checkpoint with the same tokenizer.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer, BertForMaskedLM

from danlu.models import load_pretrained
from danlu.run import atomic_write_json, read_json, save_atomically
from danlu.train.corpus import load_corpus


def pretrain_stage(recipe, train_frame: pd.DataFrame, run_root: Path, say=print, callbacks=()):
    """Returns (recipe to fine-tune with, pretraining metrics) — (recipe, None) without a pretrain section."""
    cfg = recipe.pretrain
    if cfg is None:
        return recipe, None
    out = Path(run_root) / "pretrain"
    done = out / "metrics.json"
    if done.exists() and (out / "model" / "config.json").exists():
        say("pretrain: finished earlier in this run")
        metrics = read_json(done)
    else:
        metrics = _pretrain(recipe, train_frame, out, list(callbacks), say)
        atomic_write_json(done, {k: v for k, v in metrics.items() if k != "history"})
    model_cfg = recipe.model.model_copy(update={"from_": str((out / "model").resolve())})
    return recipe.model_copy(update={"model": model_cfg}), metrics


def _pretrain(recipe, train_frame: pd.DataFrame, out: Path, callbacks: list, say) -> dict:
    cfg = recipe.pretrain
    if cfg.objective == "mim":
        return _pretrain_mim(recipe, train_frame, out, callbacks, say)
    texts = load_corpus(cfg, train_frame, recipe.base_dir, whole_files=cfg.objective == "clm")
    say(f"pretrain: {cfg.objective} on {len(texts):,} texts")
    # The vocabulary also covers the task's own text, or a character tokenizer trained on an
    # external corpus alone would not know the characters the task is written in.
    own = train_frame["text"].astype(str).tolist() if cfg.corpus and "text" in train_frame else []
    run = _pretrain_mlm if cfg.objective == "mlm" else _pretrain_clm
    return run(recipe, texts, texts + own, out, callbacks)


def pretrain_train_config(recipe):
    """The training settings for pretraining: the recipe's `train:` with pretrain's own budget."""
    cfg = recipe.pretrain
    update = {"epochs": cfg.epochs, "max_steps": cfg.max_steps, "early_stopping": None}
    for key in ("lr", "batch_size", "warmup"):
        if getattr(cfg, key) is not None:
            update[key] = getattr(cfg, key)
    return recipe.train.model_copy(update=update)


def _tokenizer(recipe, vocab_texts: list[str], out: Path):
    """The pretrained model's tokenizer; from scratch, one trained on the corpus and saved first,
    so that a resumed pretraining reads its checkpoints with the very same vocabulary."""
    from danlu.models import resolve_pretrained
    from danlu.train.tokenizer import train_tokenizer

    if recipe.model.from_:
        return load_pretrained(AutoTokenizer, resolve_pretrained(recipe.model.from_, recipe.base_dir))
    saved = out / "tokenizer"
    if (saved / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(saved)
    tok = recipe.tokenizer
    tokenizer = train_tokenizer(vocab_texts, tok.kind, tok.vocab_size, tok.min_frequency, tok.lowercase)
    save_atomically(saved, tokenizer.save_pretrained)
    return tokenizer


def _pretrain_mlm(recipe, texts: list[str], vocab_texts: list[str], out: Path, callbacks) -> dict:
    from danlu.models import resolve_pretrained
    from danlu.tasks.text_classification import TextClassification
    from danlu.train.pretrain import pretrain_mlm

    cfg = recipe.pretrain
    block = cfg.block_size or recipe.model.max_length
    tokenizer = _tokenizer(recipe, vocab_texts, out)
    if recipe.model.from_:  # continued pretraining of a checkpoint (domain adaptation)
        model = load_pretrained(BertForMaskedLM, resolve_pretrained(recipe.model.from_, recipe.base_dir))
    else:
        task = TextClassification(recipe)
        task.tokenizer = tokenizer
        torch.manual_seed(recipe.train.seed)
        model = BertForMaskedLM(task.bert_config(positions=block))
    return pretrain_mlm(model, tokenizer, texts, pretrain_train_config(recipe), out, cfg.masked_share, block,
                        recipe.train.seed, callbacks=callbacks)


def _pretrain_mim(recipe, train_frame: pd.DataFrame, out: Path, callbacks, say) -> dict:
    from transformers import ViTForMaskedImageModeling

    from danlu.errors import RecipeError
    from danlu.models import resolve_pretrained
    from danlu.tasks.image_classification import ImageClassification
    from danlu.train.mim import load_image_corpus, pretrain_mim

    images = load_image_corpus(recipe.pretrain, train_frame, recipe.base_dir)
    say(f"pretrain: mim on {len(images):,} images")
    task = ImageClassification(recipe)
    task.setup(train_frame)  # the processor (size, pixel statistics) the classifier will use too
    if recipe.model.from_:  # continued pretraining of a ViT checkpoint
        model = load_pretrained(ViTForMaskedImageModeling, resolve_pretrained(recipe.model.from_, recipe.base_dir))
    else:
        config = task.vit_config()
        if config.image_size % config.patch_size:
            raise RecipeError(f"pretrain: mim reconstructs whole patches: the image size {config.image_size} must be "
                              f"a multiple of model.patch_size {config.patch_size}")
        torch.manual_seed(recipe.train.seed)
        model = ViTForMaskedImageModeling(config)
    return pretrain_mim(model, task, images, pretrain_train_config(recipe), out, recipe.pretrain.masked_share,
                        recipe.train.seed, callbacks=callbacks)


def _pretrain_clm(recipe, texts: list[str], vocab_texts: list[str], out: Path, callbacks) -> dict:
    from danlu.tasks.causal_lm import CausalLM
    from danlu.train.engine import fit

    task = CausalLM(recipe)
    saved = out / "tokenizer"
    if not recipe.model.from_ and (saved / "tokenizer_config.json").exists():
        task.tokenizer = AutoTokenizer.from_pretrained(saved)
        task.tokenizer.model_max_length = task.block
    else:
        task.setup(pd.DataFrame({"text": vocab_texts}))
        if not recipe.model.from_:
            save_atomically(saved, task.tokenizer.save_pretrained)
    train_texts, held_texts = _hold_out(texts)
    torch.manual_seed(recipe.train.seed)
    model = task.build_model()
    held = task.encode(pd.DataFrame({"text": held_texts}))
    result = fit(model, task.encode_train(pd.DataFrame({"text": train_texts})), held, task.collate,
                 pretrain_train_config(recipe), out / "checkpoints", out / "history.json", None, None, False,
                 large_model=True, callbacks=callbacks)
    scores = task.evaluate(result.model, held)
    save_atomically(out / "model", lambda tmp: task.save(result.model, tmp))
    return {"objective": "clm", "eval_loss": scores["loss"], "perplexity": scores["perplexity"],
            "steps": result.steps, "seconds": round(result.seconds, 1), "history": result.history}


def _hold_out(texts: list[str], share: float = 0.05) -> tuple[list[str], list[str]]:
    """5% of the corpus measures perplexity: every 20th document, or the end of a single one."""
    if len(texts) >= 20:
        every = int(round(1 / share))
        return ([t for i, t in enumerate(texts) if i % every != every - 1],
                [t for i, t in enumerate(texts) if i % every == every - 1])
    joined = "\n".join(texts)
    cut = int(len(joined) * (1 - share))
    return [joined[:cut]], [joined[cut:]]


def summary(metrics: dict | None) -> dict | None:
    """The figures the report shows for the pretraining stage."""
    if not metrics:
        return None
    loss = metrics.get("eval_loss")
    return {"objective": metrics.get("objective", "mlm"), "steps": metrics.get("steps"),
            "seconds": metrics.get("seconds"),
            "held-out loss": None if loss is None or (isinstance(loss, float) and math.isnan(loss)) else round(loss, 4),
            "perplexity": None if metrics.get("perplexity") is None else round(float(metrics["perplexity"]), 2),
            "blocks": metrics.get("blocks"), "images": metrics.get("images")}

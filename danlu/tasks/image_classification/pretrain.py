"""Pretraining for the image classifier on its images alone, then the classifier starts from the weights:
masked image modelling (SimMIM) for the ViT, the pixels of hidden patches reconstructed; rotation
prediction or contrastive views (danlu.tasks.image_classification.pretext) for the cnn and vgg nets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import ViTForMaskedImageModeling

from danlu.errors import RecipeError
from danlu.models import load_pretrained, resolve_pretrained
from danlu.run import Run, save_atomically
from danlu.train.mim import load_image_corpus, pretrain_mim
from danlu.train.pretrain import pretrain_settings

HELD_OUT_SHARE = 20  # one image in 20 (at least one) measures the held-out pretext loss, as for mim


def pretrain_mim_stage(task, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
    recipe = task.recipe
    images = load_image_corpus(recipe.pretrain, train, recipe.base_dir)
    say(f"pretrain: mim on {len(images):,} images")
    task.setup(train)  # the processor (size, pixel statistics) the classifier will use too
    if recipe.model.from_:  # continued pretraining of a ViT checkpoint
        model = load_pretrained(ViTForMaskedImageModeling, resolve_pretrained(recipe.model.from_, recipe.base_dir))
    else:
        config = task.vit_config()
        if config.image_size % config.patch_size:
            raise RecipeError(f"pretrain: mim reconstructs whole patches: the image size {config.image_size} must be "
                              f"a multiple of model.patch_size {config.patch_size}")
        torch.manual_seed(recipe.train.seed)
        model = ViTForMaskedImageModeling(config)
    return pretrain_mim(model, task, images, pretrain_settings(recipe), out, recipe.pretrain.masked_share,
                        recipe.train.seed, callbacks=list(callbacks))


def pretrain_pretext_stage(task, train: pd.DataFrame, out: Path, say) -> dict:
    """Train the recipe's cnn/vgg body on `pretrain.objective` (rotation | contrastive) over the
    training images (or pretrain.corpus) and save the whole classic net, head untrained, to out/model:
    the classifier's training then loads it as `model.from`."""
    from danlu.tasks.image_classification.pretext import Pretext, pretext_accuracy
    from danlu.train.examples import LazyExamples
    from danlu.train.loop import fit_loop

    recipe = task.recipe
    objective = recipe.pretrain.objective
    images = load_image_corpus(recipe.pretrain, train, recipe.base_dir)
    say(f"pretrain: {objective} on {len(images):,} images")
    task.setup(train)  # input side, grey or RGB, pixel statistics: the classifier's own
    if task.arch not in ("cnn", "vgg"):
        raise RecipeError(f"pretrain: '{objective}' trains a convolutional body (model.arch: cnn or vgg), "
                          f"not {task.arch}")
    torch.manual_seed(recipe.train.seed)
    model = task.build_model()
    rows = [(image, None) for image in images]
    order = np.random.default_rng(recipe.train.seed).permutation(len(rows))
    held = max(1, len(rows) // HELD_OUT_SHARE) if len(rows) > 1 else 0
    fitted = LazyExamples([rows[i] for i in order[held:]], task.encode_one)
    held_out = LazyExamples([rows[i] for i in order[:held]], task.encode_one) if held else None
    stage = Run(out)
    result = fit_loop(Pretext(model, objective), fitted, held_out, task.collate, pretrain_settings(recipe),
                      stage.checkpoints, stage.history_path, compute_metrics=pretext_accuracy, metric=None,
                      greater_is_better=False, large_model=False)
    trained = result.model.classifier
    save_atomically(stage.model_dir, trained.save_pretrained)
    evals = [h for h in result.history if "eval_loss" in h]
    return {"objective": objective, "images": len(rows), "eval_loss": evals[-1]["eval_loss"] if evals else float("nan"),
            "pretext_accuracy": evals[-1].get("eval_pretext_accuracy") if evals else None, "perplexity": None,
            "steps": result.steps, "seconds": round(result.seconds, 1), "history": result.history}

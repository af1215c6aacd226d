"""Masked image modelling (SimMIM) for the ViT image classifier: the pixels of hidden patches are
reconstructed, then the classifier starts from the encoder's weights."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from transformers import ViTForMaskedImageModeling

from danlu.errors import RecipeError
from danlu.models import load_pretrained, resolve_pretrained
from danlu.train.mim import load_image_corpus, pretrain_mim
from danlu.train.pretrain import pretrain_settings


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

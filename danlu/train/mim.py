"""Masked image modelling (SimMIM) for ViT: hide a share of the patches, reconstruct their pixels.

transformers' ViTForMaskedImageModeling does the modelling (a mask token replaces hidden patches,
a 1x1 conv + pixel shuffle decodes the pixels, L1 loss on the masked patches only); this module
feeds it images through the image-classification task's own processor, draws the patch masks and
saves a model whose `vit` weights load straight into ViTForImageClassification.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from danlu.data.paths import display_path, is_glob, resolve_data_path, resolve_data_paths
from danlu.errors import DataError
from danlu.run import Run, save_atomically

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_image_corpus(cfg, train_frame, recipe_dir: Path | None) -> list:
    """The images to pretrain on: the training split's images (labels ignored), or every image file
    under `pretrain.corpus` (a folder, searched recursively, or one glob pattern)."""
    if cfg.corpus is None:
        if "image" not in train_frame:
            raise DataError("pretrain.corpus: the task's training split has no image column to pretrain on")
        return train_frame["image"].tolist()
    if is_glob(cfg.corpus):
        found = resolve_data_paths(cfg.corpus, recipe_dir)
    else:
        folder = resolve_data_path(cfg.corpus, recipe_dir)
        if not folder.is_dir():
            raise DataError(f"pretrain.corpus: {display_path(folder)} is not a folder of images "
                            "(give a folder or a glob such as photos/*.jpg)")
        found = sorted(folder.rglob("*"))
    paths = [str(p) for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not paths:
        raise DataError(f"pretrain.corpus: {cfg.corpus} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    _check_readable(paths, cfg.corpus)
    return paths


def _check_readable(paths: list[str], where: str) -> None:
    """Opens every file now with the data stage's own check, so a broken one is named before
    training, not at step N."""
    from danlu.data.images import image_fingerprint

    with ThreadPoolExecutor(max_workers=8) as pool:  # file reads: I/O, as in the quality gate
        results = list(pool.map(image_fingerprint, paths, chunksize=64))
    broken = [f"{display_path(p)} ({why})" for p, (_, why) in zip(paths, results) if why]
    if broken:
        raise DataError(f"pretrain.corpus: {len(broken):,} of {len(paths):,} files under {where} are not readable "
                        f"images: {', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}")


class PatchMasks:
    """Collates a batch with the task's collator and adds a random patch mask per image, passed as
    `labels`: Trainer reports an evaluation loss only for batches that carry labels."""

    def __init__(self, collate, patches: int, share: float):
        self.collate, self.patches = collate, patches
        self.hidden = min(patches - 1, max(1, round(share * patches)))

    def __call__(self, batch: list[dict]) -> dict:
        out = self.collate(batch)
        n = out["pixel_values"].shape[0]
        picked = torch.rand(n, self.patches).topk(self.hidden, dim=1).indices
        out["labels"] = torch.zeros(n, self.patches, dtype=torch.bool).scatter_(1, picked, True)
        return out


class MaskedImage(nn.Module):
    """ViTForMaskedImageModeling with its patch mask arriving as `labels`."""

    def __init__(self, mim):
        super().__init__()
        self.mim = mim
        self.config = mim.config

    def forward(self, pixel_values=None, labels=None):
        out = self.mim(pixel_values=pixel_values, bool_masked_pos=labels)
        return {"loss": out.loss}


def pretrain_mim(model, task, images: list, train_cfg, out_dir: Path, mask_prob: float, seed: int,
                 callbacks=()) -> dict:
    """Train a ViTForMaskedImageModeling on `images`, encoded by `task` (an ImageClassification set
    up on the training split); save it with the task's processor to out_dir/model. 5% of the
    images (at least one) measure the held-out reconstruction loss (L1 on masked pixels)."""
    from danlu.train.examples import LazyExamples
    from danlu.train.engine import fit

    rows = [(image, None) for image in images]
    order = np.random.default_rng(seed).permutation(len(rows))
    held = max(1, len(rows) // 20) if len(rows) > 1 else 0
    train = LazyExamples([rows[i] for i in order[held:]], task.encode_one)
    held_out = LazyExamples([rows[i] for i in order[:held]], task.encode_one) if held else None
    grid = model.config.image_size // model.config.patch_size
    result = fit(MaskedImage(model), train, held_out, PatchMasks(task.collate, grid * grid, mask_prob), train_cfg,
                 Run(out_dir).checkpoints, Run(out_dir).history_path, compute_metrics=None, metric=None,
                 greater_is_better=False, large_model=True, callbacks=list(callbacks))
    evals = [h["eval_loss"] for h in result.history if "eval_loss" in h]
    trained = result.model.mim
    save_atomically(Run(out_dir).model_dir, lambda tmp: (trained.save_pretrained(tmp),
                                                          task.processor.save_pretrained(tmp)))
    return {"objective": "mim", "images": len(rows), "eval_loss": evals[-1] if evals else float("nan"),
            "perplexity": None, "steps": result.steps, "seconds": round(result.seconds, 1), "history": result.history}

"""How good generated images are, measured by a domain classifier trained inside the run.

Inception weights cannot be downloaded here, so the Fréchet distance is the common "FID with a domain
classifier": a small CNN (two conv-ReLU-maxpool blocks and a hidden layer, the classic MNIST net) learns
the training images' classes, and its hidden layer's features stand in for Inception's pool features. The same classifier says how confidently each generated image is one
class (`confident_share`) and which (`class_shares`). `frechet_distance_real` measures as many training
images as there are samples against the same held-out images: the floor a perfect generator would reach.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from safetensors.torch import load_file, save_file
from torch import nn

BATCH = 256  # images per forward pass when measuring
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)), the Fréchet distance of two Gaussians
    (Dowson and Landau 1982), as FID computes it (Heusel et al. 2017)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    with warnings.catch_warnings():  # a singular product (a feature never active) is handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(root).all():  # a singular product: nudge both, as pytorch-fid does
        offset = np.eye(len(cov1)) * 1e-6
        root = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    root = np.real(root)  # rounding leaves tiny imaginary parts
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root), 0.0))


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


class DomainCNN(nn.Module):
    """(conv 3x3, ReLU, maxpool 2) per entry of `channels`, then a hidden layer (the features) and the classes.
    It normalises its own input (the training pixels' mean and std), like danlu's classic nets."""

    def __init__(self, input_shape: list[int], channels: list[int], hidden: int, num_labels: int,
                 mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.config = {"input_shape": list(input_shape), "channels": list(channels), "hidden": hidden,
                       "num_labels": num_labels, "mean": float(mean), "std": float(std)}
        layers, width, (h, w) = [], input_shape[0], input_shape[1:]
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width, h, w = out, h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * max(h, 1) * max(w, 1), hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_labels)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body((pixels.float() - self.config["mean"]) / self.config["std"])  # (B, hidden)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))  # (B, classes) logits

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))

    @classmethod
    def load(cls, folder: Path) -> "DomainCNN":
        model = cls(**json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return model.eval()


@dataclass
class DomainClassifier:
    """The run's measuring instrument: the CNN, and the feature statistics of a sample of training images."""

    model: DomainCNN
    train_mu: np.ndarray
    train_cov: np.ndarray

    def features_and_probs(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Hidden-layer features and class probabilities of (N, C, H, W) pixels in [0, 1]."""
        model = self.model.eval()
        feats, probs = [], []
        with torch.inference_mode():
            for start in range(0, len(pixels), BATCH):
                h = model.features(pixels[start:start + BATCH])
                feats.append(h.numpy())
                probs.append(torch.softmax(model.head(h), -1).numpy())
        return np.concatenate(feats), np.concatenate(probs)

    def measure(self, generated: torch.Tensor, real: torch.Tensor, real_labels: np.ndarray | None,
                conditioned: np.ndarray | None, labels: list, confidence: float) -> dict:
        """The metrics of `generated` images against the `real` images of one split (pixels in [0, 1])."""
        gen_f, gen_p = self.features_and_probs(generated)
        real_f, real_p = self.features_and_probs(real)
        mu, cov = gaussian(real_f)
        gen_mu, gen_cov = gaussian(gen_f)
        chosen = gen_p.argmax(1)
        shares = np.bincount(chosen, minlength=len(labels)) / len(chosen)
        out = {
            "frechet_distance": frechet_distance(gen_mu, gen_cov, mu, cov),
            "frechet_distance_real": frechet_distance(self.train_mu, self.train_cov, mu, cov),
            "confident_share": float((gen_p.max(1) >= confidence).mean()),
            "confident_share_real": float((real_p.max(1) >= confidence).mean()),
            "class_shares": {str(label): float(s) for label, s in zip(labels, shares)},
            "samples": len(generated), "n": len(real),
        }
        if real_labels is not None:
            out["classifier_accuracy"] = float((real_p.argmax(1) == real_labels).mean())
        if conditioned is not None:  # the share of samples the classifier reads as the label they were drawn for
            out["label_agreement"] = float((chosen == conditioned).mean())
        return out


def train_domain_classifier(pixels: torch.Tensor, label_ids: np.ndarray, classes: int, cfg, seed: int,
                            reference: int) -> DomainClassifier:
    """A small CNN fitted on the training pixels (N, C, H, W in [0, 1]) with Adam for cfg.epochs; then the
    feature statistics of `reference` training images drawn with `seed` (the floor's sample)."""
    generator = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # its weights; the caller's random state is given back below
    model = DomainCNN(list(pixels.shape[1:]), list(cfg.channels), cfg.hidden, classes, float(pixels.mean()),
                      float(pixels.std()) + 1e-6)
    torch.random.set_rng_state(state)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    targets = torch.as_tensor(label_ids, dtype=torch.int64)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(pixels), generator=generator)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(pixels[idx]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    picked = torch.randperm(len(pixels), generator=generator)[:reference]
    instrument = DomainClassifier(model, np.zeros(1), np.zeros((1, 1)))
    feats, _ = instrument.features_and_probs(pixels[picked])
    instrument.train_mu, instrument.train_cov = gaussian(feats)
    return instrument


def gaussian_samples(pixels: np.ndarray, label_ids: np.ndarray, n: int, seed: int,
                     components: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The baseline generator: per class, a Gaussian in pixel space (mean image plus its `components`
    principal directions, scikit-learn's PCA), sampled in proportion to the class counts; (images in
    [0, 1], their class ids)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    flat = pixels.reshape(len(pixels), -1)
    classes, counts = np.unique(label_ids, return_counts=True)
    drawn = rng.choice(classes, size=n, p=counts / counts.sum())
    out = np.zeros((n, flat.shape[1]), dtype=np.float32)
    for cls in classes:
        rows = flat[label_ids == cls]
        where = np.flatnonzero(drawn == cls)
        k = min(components, len(rows) - 1, flat.shape[1])
        if k < 1:
            out[where] = rows.mean(0)
            continue
        pca = PCA(n_components=k, random_state=seed).fit(rows)
        codes = rng.normal(size=(len(where), k)) * np.sqrt(pca.explained_variance_)
        out[where] = pca.inverse_transform(codes)
    return np.clip(out, 0, 1).reshape((n, *pixels.shape[1:])), drawn

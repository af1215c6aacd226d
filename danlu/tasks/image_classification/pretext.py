"""Self-supervised objectives for the convolutional classifiers (cnn, vgg), on the images alone.

`rotation` (RotNet, Gidaris et al. 2018): every image is shown at 0, 90, 180 and 270 degrees and the
net names the turn; recognising which way is up takes knowing what the objects are. `contrastive`
(SimCLR, Chen et al. 2020): two random views of each image (danlu.tasks.image_classification.augment)
must find each other among the batch's other views (NT-Xent loss). Both put a small MLP on the body
(discarded afterwards: the features before it transfer better) and train the body the classifier
then starts from.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from danlu.tasks.image_classification.augment import crop_and_flip, simclr_view

PROJECTION = 128  # SimCLR's output width
TEMPERATURE = 0.5  # SimCLR's choice for CIFAR-10
EVAL_SEED = 0  # the held-out views are drawn alike at every evaluation, so their losses compare


def _projector(width: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, outputs))


class Pretext(nn.Module):
    """forward(pixel_values in [0, 1]) -> {"loss", "logits"}: the objective's loss, and per image
    whether it got its own pretext task right (1.0 or 0.0; its mean is the pretext accuracy)."""

    def __init__(self, classifier, objective: str):
        super().__init__()
        self.classifier = classifier  # a ClassicModel: its input statistics and body are used
        self.objective = objective
        width = classifier.head[-1].in_features
        self.projector = _projector(width, 4 if objective == "rotation" else PROJECTION)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        net = self.classifier
        return self.projector(net.body((x - net.mean) / net.std))

    def forward(self, pixel_values=None, **_):
        x = pixel_values.float()
        gen = None if self.training else torch.Generator().manual_seed(EVAL_SEED)
        if self.objective == "rotation":
            return self._rotation(x, gen)
        return self._contrastive(x, gen)

    def _rotation(self, x: torch.Tensor, gen) -> dict:
        x = crop_and_flip(x, (0.5, 1.0), gen)  # a little variety; a flipped image is still upright
        turned = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])  # (4B, C, H, W)
        target = torch.arange(4).repeat_interleave(x.shape[0]).to(x.device)
        logits = self._features(turned)
        right = (logits.argmax(1) == target).float()
        return {"loss": F.cross_entropy(logits, target), "logits": right.view(4, -1).mean(0, keepdim=True).T}

    def _contrastive(self, x: torch.Tensor, gen) -> dict:
        n = x.shape[0]
        z = F.normalize(self._features(torch.cat([simclr_view(x, gen), simclr_view(x, gen)])), dim=1)  # (2B, P)
        sim = z @ z.T / TEMPERATURE
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=x.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(x.device)  # each view's partner
        right = (sim.argmax(1) == target).float()
        return {"loss": F.cross_entropy(sim, target), "logits": right.view(2, -1).mean(0, keepdim=True).T}


def pretext_accuracy(predictions) -> dict:
    """compute_metrics for the plain loop's evaluation: the held-out images' pretext accuracy."""
    return {"pretext_accuracy": float(predictions.predictions.mean())}

"""The DCGAN: one PreTrainedModel holding the generator and the discriminator.

Registered with the Auto classes under danlu's own model type, so the loop's checkpoints and
`save_pretrained` (safetensors, config.json) work as for any transformers model, and
`AutoModel.from_pretrained(RUN/model)` builds it once danlu is imported (no code is read from a run).

`forward(pixel_values)` is the discriminator's verdict on real images (what predict and serve answer:
how real each image looks); `generate(noise, labels)` draws images. Training is the model's own
(danlu.train.loop's manual optimisation): per batch, one discriminator update (real images towards the
smoothed target, generated ones towards 0), then one generator update (the non-saturating loss: its
images towards "real"). One Adam optimizer with a parameter group per network, each with its own rate
and betas, is two optimizers: Adam's state is per parameter, and a step moves only the parameters that
have a gradient, which the training step gives to one network at a time.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

GAN_TYPE = "danlu_dcgan"
LABEL_EMBEDDING = 32  # dimensions of the generator's label embedding, concatenated to the noise


class GanConfig(PretrainedConfig):
    model_type = GAN_TYPE

    def __init__(self, image_channels: int = 1, image_size: int = 28, latent: int = 64, conditional: bool = False,
                 generator_channels=(128, 64), discriminator_channels=(64, 128), spectral_norm: bool = False,
                 label_smoothing: float = 1.0, lr_generator: float = 2e-4, lr_discriminator: float = 2e-4,
                 betas=(0.5, 0.999), preview: int = 64, seed: int = 0, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.image_channels, self.image_size, self.latent = image_channels, image_size, latent
        self.conditional = conditional
        self.generator_channels = list(generator_channels)
        self.discriminator_channels = list(discriminator_channels)
        self.spectral_norm = spectral_norm
        self.label_smoothing = label_smoothing
        self.lr_generator, self.lr_discriminator, self.betas = lr_generator, lr_discriminator, list(betas)
        self.preview, self.seed = preview, seed
        self.initializer_range = initializer_range  # DCGAN's N(0, 0.02) weights


def start_side(config: GanConfig) -> int:
    """The side of the generator's first maps: the image side halved once per block."""
    return config.image_size // 2 ** len(config.generator_channels)


class Generator(nn.Module):
    def __init__(self, config: GanConfig):
        super().__init__()
        widths, side = config.generator_channels, start_side(config)
        self.widths, self.side = widths, side
        extra = LABEL_EMBEDDING if config.conditional else 0
        self.embed = nn.Embedding(config.num_labels, LABEL_EMBEDDING) if config.conditional else None
        self.project = nn.Sequential(nn.Linear(config.latent + extra, widths[0] * side * side, bias=False),
                                     nn.BatchNorm1d(widths[0] * side * side), nn.ReLU())
        blocks: list[nn.Module] = []
        for width, after in zip(widths, widths[1:]):
            blocks += [nn.ConvTranspose2d(width, after, 4, 2, 1, bias=False), nn.BatchNorm2d(after), nn.ReLU()]
        blocks += [nn.ConvTranspose2d(widths[-1], config.image_channels, 4, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = noise if self.embed is None else torch.cat([noise, self.embed(labels)], dim=1)  # (B, latent [+ 32])
        x = self.project(x).view(len(x), self.widths[0], self.side, self.side)
        return self.blocks(x)  # (B, C, H, W) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, config: GanConfig):
        super().__init__()
        norm = _spectral if config.spectral_norm else (lambda layer: layer)
        layers: list[nn.Module] = []
        width, side = config.image_channels, config.image_size
        for i, out in enumerate(config.discriminator_channels):
            layers.append(norm(nn.Conv2d(width, out, 4, 2, 1, bias=config.spectral_norm or i == 0)))
            if i and not config.spectral_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2))
            width, side = out, side // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        features = width * max(side, 1) ** 2
        self.real = norm(nn.Linear(features, 1))
        # Projection discriminator: logit(x, y) = real(h) + <embed(y), h>; for every class at once.
        self.project = norm(nn.Embedding(config.num_labels, features)) if config.conditional else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.body(images)  # (B, F)
        logits = self.real(h)  # (B, 1)
        if self.project is not None:
            logits = logits + h @ self.project.weight.T  # (B, classes)
        return logits


def _spectral(layer: nn.Module) -> nn.Module:
    return parametrizations.spectral_norm(layer)


def logit_at(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Each example's realness as its own label (conditional), or the one logit."""
    if logits.shape[1] == 1 or labels is None:
        return logits[:, 0] if logits.shape[1] == 1 else logits.max(1).values
    return logits.gather(1, labels[:, None])[:, 0]


class GanModel(PreTrainedModel):
    config_class = GanConfig
    base_model_prefix = "gan"
    main_input_name = "pixel_values"

    def __init__(self, config: GanConfig):
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.record: list[dict] = []  # one entry per epoch: mean losses and the preview grid (PNG, base64)
        self._sums: dict[str, float] = {}  # the epoch's loss sums so far
        self._batches = 0
        self.post_init()

    def _init_weights(self, module):
        # A spectrally normalised layer's weight is computed from `original`: initialise that one.
        if parametrize.is_parametrized(module, "weight"):
            nn.init.normal_(module.parametrizations.weight.original, 0.0, self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
            return
        super()._init_weights(module)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_) -> SequenceClassifierOutput:
        logits = self.discriminator(pixel_values)  # (B, classes): realness as each class; unconditional (B, 1)
        loss = None
        if labels is not None:  # the discriminator's loss on real images (target: real)
            loss = nn.functional.binary_cross_entropy_with_logits(logit_at(logits, labels).float(),
                                                                  torch.ones(len(logits), device=logits.device))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    # -- drawing ------------------------------------------------------------------------
    def noise(self, n: int, seed: int) -> torch.Tensor:
        """Noise from its own generator: the global random state (the training's) is left alone."""
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.config.latent, generator=generator).to(self.device)

    @torch.no_grad()
    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1], (B, C, H, W), with the generator in eval mode (BatchNorm's running statistics)."""
        was = self.generator.training
        self.generator.eval()
        try:
            labels = labels.to(self.device) if labels is not None else None
            return (self.generator(noise, labels if self.config.conditional else None) + 1) / 2
        finally:
            self.generator.train(was)

    def preview_labels(self, n: int) -> torch.Tensor | None:
        return torch.arange(n) % self.config.num_labels if self.config.conditional else None

    # -- training (danlu.train.loop's manual optimisation) ---------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        c = self.config
        betas = tuple(c.betas)
        return torch.optim.Adam([
            {"params": list(self.discriminator.parameters()), "lr": c.lr_discriminator, "betas": betas},
            {"params": list(self.generator.parameters()), "lr": c.lr_generator, "betas": betas},
        ])

    def training_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        real, labels = batch["pixel_values"], batch.get("labels")
        if len(real) < 2:  # BatchNorm cannot normalise one image: a last batch of one is left out
            return {}
        labels = labels if self.config.conditional else None
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = self.generator(torch.randn(len(real), self.config.latent, device=real.device), labels)
        # The discriminator: real images towards the (smoothed) target, generated ones towards 0.
        on_real = logit_at(self.discriminator(real), labels)
        on_fake = logit_at(self.discriminator(fake.detach()), labels)
        loss_d = (bce(on_real, torch.full_like(on_real, self.config.label_smoothing))
                  + bce(on_fake, torch.zeros_like(on_fake)))
        optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        optimizer.step()  # only the discriminator has gradients
        # The generator: its images towards "real" in the eyes of the updated discriminator.
        optimizer.zero_grad(set_to_none=True)
        judged = logit_at(self.discriminator(fake), labels)
        loss_g = bce(judged, torch.ones_like(judged))
        loss_g.backward()
        for p in self.discriminator.parameters():
            p.grad = None  # the generator's loss must not move the discriminator
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses = {"loss_discriminator": loss_d.item(), "loss_generator": loss_g.item(),
                  "real_score": torch.sigmoid(on_real).mean().item(),
                  "fake_score": torch.sigmoid(on_fake).mean().item()}
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._batches += 1
        return losses

    def on_train_epoch_end(self, epoch: int) -> dict:
        means = {f"epoch_{k}": v / max(self._batches, 1) for k, v in self._sums.items()}
        grid = self.generate(self.noise(self.config.preview, self.config.seed), self.preview_labels(self.config.preview))
        self.record.append({"epoch": epoch + 1, **means, "preview": png_base64(grid_of(to_uint8(grid)))})
        self._sums, self._batches = {}, 0
        return means

    def checkpoint_state(self) -> dict:
        return {"record": self.record, "sums": self._sums, "batches": self._batches}

    def load_checkpoint_state(self, state: dict) -> None:
        self.record = list(state.get("record", []))
        self._sums, self._batches = dict(state.get("sums", {})), int(state.get("batches", 0))


# -- pictures ------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, C) uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def grid_of(images: np.ndarray, columns: int | None = None, gap: int = 2):
    """(B, H, W, C) uint8 -> one PIL image, `columns` per row (default: a square), a dark gap between."""
    from PIL import Image

    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    sheet = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, c), 40, dtype=np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        sheet[gap + r * (h + gap):gap + r * (h + gap) + h, gap + k * (w + gap):gap + k * (w + gap) + w] = image
    return Image.fromarray(sheet[..., 0] if c == 1 else sheet)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def register() -> None:
    """Make danlu's model type known to the Auto classes (done on import; idempotent)."""
    AutoConfig.register(GAN_TYPE, GanConfig, exist_ok=True)
    AutoModel.register(GanConfig, GanModel, exist_ok=True)


register()

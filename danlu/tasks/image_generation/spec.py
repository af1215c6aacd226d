"""The image-generation task as the registry knows it, with its recipe section `gan:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from pydantic import Field

from danlu.recipe.sections import Section, Width
from danlu.registry import Capabilities, TaskSpec

METRICS = ("frechet_distance", "frechet_distance_real", "confident_share", "confident_share_real",
           "classifier_accuracy", "label_agreement", "samples")


class GeneratorConfig(Section):
    """Noise (and a label's embedding) -> a linear layer to channels[0] maps at side/2^k, then k transposed
    convolutions (4x4, stride 2) that double the side, each but the last with BatchNorm and ReLU, the last to
    the image's channels with tanh. k = len(channels): the side must be divisible by 2^k (28: two blocks)."""

    channels: list[Width] = Field(default=[128, 64], min_length=1, max_length=8)


class DiscriminatorConfig(Section):
    """k strided 4x4 convolutions with LeakyReLU(0.2) (BatchNorm after all but the first, unless spectral norm),
    then one realness logit; class-conditional: plus the projection of a label embedding (Miyato 2018)."""

    channels: list[Width] = Field(default=[64, 128], min_length=1, max_length=8)
    spectral_norm: bool = False  # every layer's weight divided by its largest singular value (Miyato 2018)


class DomainClassifierConfig(Section):
    """The small CNN trained on the training images inside the run (conv 3x3 + ReLU + maxpool per channel
    entry, then a hidden layer): its hidden features give the Fréchet distance, its probabilities the
    confidence and the class shares of the generated images."""

    channels: list[Width] = Field(default=[16, 32], min_length=1, max_length=4)
    hidden: Width = 128
    epochs: int = Field(default=3, ge=1, le=1000)
    batch_size: int = Field(default=64, ge=1, le=100_000)
    lr: float = Field(default=1e-3, gt=0, le=10)


class GanConfig(Section):
    """A DCGAN (Radford et al. 2016) with the usual stabilisers. The two networks train with Adam at their own
    rates (two time-scale update rule, Heusel et al. 2017); train.lr and train.optimizer are not used."""

    latent: int = Field(default=64, ge=1, le=4096)  # noise dimensions
    conditional: bool = False  # class-conditional: the label column steers the generator
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    # The discriminator's target for real images: 0.9 is one-sided label smoothing (Salimans et al. 2016).
    label_smoothing: float = Field(default=1.0, ge=0.5, le=1.0)
    lr_generator: float = Field(default=2e-4, gt=0, le=10)
    lr_discriminator: float = Field(default=2e-4, gt=0, le=10)
    betas: tuple[float, float] = (0.5, 0.999)
    samples: int = Field(default=1000, ge=2, le=100_000)  # generated for the metrics of each split
    preview: int = Field(default=64, ge=1, le=1024)  # images in each grid over training (one per epoch)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # the fixed noise of the previews and the measured samples
    confidence: float = Field(default=0.9, gt=0, lt=1)  # confident_share: the classifier's top probability >= this
    classifier: DomainClassifierConfig = Field(default_factory=DomainClassifierConfig)


def _model_keys(recipe):
    if recipe.model.from_ or recipe.model.arch is not None:
        key = "model.from" if recipe.model.from_ else "model.arch"
        return (key, "image generation builds the DCGAN of the recipe's gan: section; remove it")
    return None


def _betas(recipe):
    if not all(0 <= b < 1 for b in recipe.gan.betas):
        return ("gan.betas", f"Adam's betas lie in [0, 1), not {list(recipe.gan.betas)}")
    return None


def _one_update_per_batch(recipe):
    if recipe.train.grad_accum != 1:
        return ("train.grad_accum", "the GAN updates each network once per batch; set 1")
    return None


SPEC = TaskSpec(
    name="image-generation",
    kind="generation",
    task_class="danlu.tasks.image_generation.task:ImageGeneration",
    roles=("image", "label"),
    input_roles=("image",),
    main_metric="frechet_distance",
    greater_is_better=False,
    metrics=METRICS,
    summary="images like the training images (a DCGAN, class-conditional or not): danlu generate RUN --n 64",
    starter="danlu.tasks.image_generation:starter.yaml",
    sample="danlu.tasks.image_generation.sample:sample",
    sections={"gan": GanConfig},
    checks=(_model_keys, _betas, _one_update_per_batch),
    capabilities=Capabilities(generate_images=True),
)
SPECS = (SPEC,)

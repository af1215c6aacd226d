"""The image-classification task as the registry knows it."""

from danlu.evaluate.names import CLASSIFICATION
from danlu.registry import Capabilities, TaskSpec

PRETEXT = ("rotation", "contrastive")  # the self-supervised objectives of the convolutional nets
CONV = ("cnn", "vgg", None)  # None: the default arch, a cnn


def _mim_needs_vit(recipe):
    pre = recipe.pretrain
    if pre is not None and pre.objective == "mim" and not recipe.model.from_ and recipe.model.arch != "vit":
        return ("pretrain.objective", f"'mim' pretrains a ViT; set model.arch: vit (or model.from a ViT "
                                      f"checkpoint), not {recipe.model.arch or 'cnn'}")
    return None


def _pretext_needs_conv(recipe):
    pre = recipe.pretrain
    if pre is not None and pre.objective in PRETEXT and not recipe.model.from_ and recipe.model.arch not in CONV:
        return ("pretrain.objective", f"'{pre.objective}' pretrains a convolutional body; set model.arch: vgg "
                                      f"or cnn, not {recipe.model.arch}")
    return None


def _arch(recipe):
    if recipe.model.arch not in (None, "mlp", "cnn", "vgg", "vit"):
        return ("model.arch", f"image classification builds mlp, cnn, vgg or vit models, not '{recipe.model.arch}'")
    if recipe.model.arch == "vgg" and recipe.model.channels is not None:
        return ("model.channels", "a vgg's widths come with its model.size (tiny, small, base); drop model.channels")
    return None


def _classic_transfer(recipe):
    """The classic nets have a body and a head, no embeddings or transformer layers, and train in
    danlu's plain loop (no Trainer callbacks for gradual unfreezing, no peft)."""
    t, arch = recipe.transfer, recipe.model.arch
    if t is None or recipe.model.from_ or arch in ("vit", "bert", "gpt"):
        return None
    name = arch or "cnn"
    if t.freeze not in ("none", "backbone", 0):
        return ("transfer.freeze", f"a {name} has no embeddings or transformer layers to freeze; "
                                   "freeze: backbone trains its head alone")
    if t.gradual_unfreeze or t.lora is not None:
        return ("transfer", f"gradual unfreezing and LoRA are for the ViT; a {name} takes freeze: backbone")
    return None


SPEC = TaskSpec(
    name="image-classification",
    kind="classification",
    task_class="danlu.tasks.image_classification.task:ImageClassification",
    roles=("image", "label"),
    input_roles=("image",),
    main_metric="accuracy",
    greater_is_better=True,
    metrics=CLASSIFICATION,
    summary="an image -> one of a fixed set of classes (digits, objects, defects)",
    starter="danlu.tasks.image_classification:starter.yaml",
    checks=(_mim_needs_vit, _pretext_needs_conv, _arch, _classic_transfer),
    sample="danlu.tasks.image_classification.sample:sample",
    capabilities=Capabilities(
        cross_validation=True, class_balance=True, pretrain=("mim",) + PRETEXT, transformer_layers=True, distill=True,
        compress=("onnx-fp32", "onnx-int8", "torch-int8", "prune"), export=("onnx", "safetensors"),
        gradient_input="pixel_values", private=True,
    ),
)
SPECS = (SPEC,)

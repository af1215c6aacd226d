"""The image-classification task as the registry knows it."""

from danlu.evaluate.names import CLASSIFICATION
from danlu.registry import Capabilities, TaskSpec


def _mim_needs_vit(recipe):
    pre = recipe.pretrain
    if pre is not None and pre.objective == "mim" and not recipe.model.from_ and recipe.model.arch != "vit":
        return ("pretrain.objective", f"'mim' pretrains a ViT; set model.arch: vit (or model.from a ViT "
                                      f"checkpoint), not {recipe.model.arch or 'cnn'}")
    return None


def _arch(recipe):
    if recipe.model.arch not in (None, "mlp", "cnn", "vit"):
        return ("model.arch", f"image classification builds mlp, cnn or vit models, not '{recipe.model.arch}'")
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
    checks=(_mim_needs_vit, _arch),
    sample="danlu.tasks.image_classification.sample:sample",
    capabilities=Capabilities(
        cross_validation=True, class_balance=True, pretrain=("mim",), transformer_layers=True, distill=True,
        compress=("onnx-fp32", "onnx-int8", "torch-int8", "prune"), export=("onnx", "safetensors"),
        gradient_input="pixel_values", private=True,
    ),
)
SPECS = (SPEC,)

"""The text-classification task as the registry knows it."""

from danlu.evaluate.names import CLASSIFICATION
from danlu.recipe.sections import TokenizerConfig
from danlu.registry import Capabilities, TaskSpec

def _arch(recipe):
    if recipe.model.arch not in (None, "bert"):
        return ("model.arch", f"text classification builds 'bert' encoders, not '{recipe.model.arch}'")
    return None


SPEC = TaskSpec(
    name="text-classification",
    kind="classification",
    task_class="danlu.tasks.text_classification.task:TextClassification",
    roles=("text", "label"),
    input_roles=("text",),
    main_metric="accuracy",
    greater_is_better=True,
    metrics=CLASSIFICATION,
    summary="a string -> one of a fixed set of classes (sentiment, topic, intent)",
    starter="danlu.tasks.text_classification:starter.yaml",
    sections={"tokenizer": TokenizerConfig},
    checks=(_arch,),
    sample="danlu.tasks.text_classification.sample:sample",
    unused=lambda recipe: ("tokenizer",) if recipe.model.from_ else (),
    capabilities=Capabilities(
        cross_validation=True, class_balance=True, pretrain=("mlm",), joint=True, transformer_layers=True,
        distill=True, student=True, compress=("onnx-fp32", "onnx-int8", "torch-int8", "prune"),
        export=("onnx", "safetensors"), gradient_input="inputs_embeds", private=True,
    ),
)
SPECS = (SPEC,)

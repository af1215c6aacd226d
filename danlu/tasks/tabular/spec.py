"""The tabular tasks as the registry knows them."""

from danlu.evaluate.names import CLASSIFICATION, REGRESSION
from danlu.registry import Capabilities, TaskSpec


def _mlp_only(recipe):
    if recipe.model.arch not in (None, "mlp"):
        return ("model.arch", f"tabular tasks build an mlp, not '{recipe.model.arch}'")
    return None


COMMON = dict(roles=("label",), input_roles=(), checks=(_mlp_only,))
CLASSIFICATION_SPEC = TaskSpec(
    name="tabular-classification",
    kind="classification",
    task_class="danlu.tasks.tabular.task:TabularClassification",
    main_metric="accuracy",
    greater_is_better=True,
    metrics=CLASSIFICATION,
    summary="a row of features -> one of a fixed set of classes (credit risk, churn, diagnosis)",
    starter="danlu.tasks.tabular:classification.yaml",
    sample="danlu.tasks.tabular.sample:classification",
    capabilities=Capabilities(cross_validation=True, class_balance=True, distill=True,
                              compress=("onnx-fp32", "onnx-int8", "torch-int8", "prune"),
                              export=("onnx", "safetensors"), gradient_input="inputs", private=True),
    **COMMON,
)
REGRESSION_SPEC = TaskSpec(
    name="tabular-regression",
    kind="regression",
    task_class="danlu.tasks.tabular.task:TabularRegression",
    main_metric="rmse",
    greater_is_better=False,
    metrics=REGRESSION,
    summary="a row of features -> a number (price, demand, time to failure)",
    starter="danlu.tasks.tabular:regression.yaml",
    sample="danlu.tasks.tabular.sample:regression",
    capabilities=Capabilities(cross_validation=True, compress=("onnx-fp32", "onnx-int8", "torch-int8", "prune"),
                              export=("onnx", "safetensors")),
    **COMMON,
)
SPECS = (CLASSIFICATION_SPEC, REGRESSION_SPEC)

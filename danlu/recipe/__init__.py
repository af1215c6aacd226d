"""The recipe: one YAML file that drives a run, validated as a whole before anything runs.

    sections.py  the common sections (model, train, evaluate, pretrain ...) and shared building blocks
    schema.py    Recipe, and the schema of each task: the common sections plus the task's own
    files.py     reading the file safely (regular UTF-8 files, no duplicate keys, no alias bombs)
    load.py      load_recipe: read -> overrides -> schema -> task defaults -> cross-field rules
    checks.py    the cross-field rules, read from the task registry's capabilities
"""

from danlu.recipe.load import apply_overrides, load_recipe, recipe_from_dict
from danlu.recipe.schema import Recipe, recipe_class
from danlu.recipe.sections import (CompressConfig, DistillConfig, EarlyStoppingConfig, EvaluateConfig, JointConfig,
                                   LoraConfig, ModelConfig, PretrainConfig, Section, StudentConfig, TokenizerConfig,
                                   TrainConfig, TransferConfig)

__all__ = [
    "Recipe", "recipe_class", "load_recipe", "recipe_from_dict", "apply_overrides", "Section", "ModelConfig",
    "TokenizerConfig", "TrainConfig", "EarlyStoppingConfig", "EvaluateConfig", "PretrainConfig", "JointConfig",
    "LoraConfig", "TransferConfig", "DistillConfig", "StudentConfig", "CompressConfig",
]

"""The recipe schema: the common sections, plus the sections of the task the recipe names.

`recipe_class(task)` assembles one pydantic model per registered task, so a task's own settings
(causal-lm's `generate:`, the text tasks' `tokenizer:`) are declared beside its code, and a key of
another task's section is an unknown key here like any typo.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, create_model

from danlu import registry
from danlu.data.config import DataConfig, QualityConfig
from danlu.recipe.sections import (CompressConfig, DistillConfig, EvaluateConfig, JointConfig, ModelConfig,
                                   PretrainConfig, PrivacyConfig, Section, TrackConfig, TrainConfig, TransferConfig,
                                   TuneConfig)
from danlu.recipe.sections import DistributedConfig


class Recipe(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str = Field(max_length=100)
    data: DataConfig
    quality: QualityConfig = QualityConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    pretrain: PretrainConfig | None = None
    joint: JointConfig | None = None
    transfer: TransferConfig | None = None
    distill: DistillConfig | None = None
    compress: CompressConfig | None = None
    track: TrackConfig | None = None
    tune: TuneConfig | None = None
    distributed: DistributedConfig | None = None  # how --nproc / torchrun share the training
    privacy: PrivacyConfig | None = None  # DP-SGD training (danlu.trust.privacy)

    # Where the recipe came from: relative data paths are resolved against it.
    _path: Path | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path | None:
        return self._path.parent if self._path else None

    @property
    def spec(self) -> registry.TaskSpec:
        return registry.get(self.task)

    @property
    def main_metric(self) -> str:
        return self.evaluate.metric or self.spec.main_metric

    def to_yaml(self) -> str:
        unused = set(self.spec.unused(self)) if self.spec.unused else set()
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=unused)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@functools.lru_cache(maxsize=None)
def _assembled(spec: registry.TaskSpec) -> type[Recipe]:
    own = {key: (section, Field(default_factory=section)) for key, section in spec.sections.items()}
    return create_model(f"Recipe[{spec.name}]", __base__=Recipe, task=(Literal[spec.name], ...), **own)


def recipe_class(task: str) -> type[Recipe]:
    """The schema of a recipe for `task` (a registered task name)."""
    return _assembled(registry.get(task))

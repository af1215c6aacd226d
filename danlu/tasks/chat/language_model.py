"""causal-lm's task, reused by chat for what the two share: a tokenizer trained on the text, a GPT-2
style decoder built from the recipe's size, and `clm` pretraining (causal_lm/pretrain.py).

The one difference: a tokenizer trained here also holds the chat template's special tokens
(<|im_start|>, <|im_end|> for ChatML), so a model pretrained on plain text can later learn to end
its replies with the end-of-turn token, and the template check at fine-tuning finds it there.
"""

from __future__ import annotations

import pandas as pd

from danlu import registry
from danlu.tasks.causal_lm.spec import GenerateConfig
from danlu.tasks.causal_lm.task import CausalLM


class LanguageModelRecipe:
    """The chat recipe as causal-lm's task reads one: the same sections, and causal-lm's own `generate:`
    with no report samples (the pretraining stage writes none)."""

    def __init__(self, recipe):
        self._recipe = recipe
        self.generate = GenerateConfig(samples=0)

    def __getattr__(self, name):
        return getattr(self._recipe, name)


class ChatLanguageModel(CausalLM):
    def __init__(self, recipe, tokens: list[str]):
        super().__init__(registry.get("causal-lm"), LanguageModelRecipe(recipe))
        self.tokens = list(tokens)

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        super().setup(train)
        if not self.pretrained_path() and self.tokens:
            self.tokenizer.add_special_tokens({"additional_special_tokens": self.tokens})

"""A tiny causal-lm run for tests that need one (generation, the OpenAI routes)."""

from pathlib import Path


def train_tiny_lm(root: Path, text: str, steps: int, batch_size: int) -> Path:
    """A one-layer character-level GPT trained for a few steps on `text`: the run directory."""
    from danlu.pipeline import train
    from danlu.recipe import recipe_from_dict

    (root / "corpus.txt").write_text(text)
    recipe = recipe_from_dict({
        "name": "tiny-lm", "task": "causal-lm",
        "data": {"source": "corpus.txt", "split": {"validation": 0.1, "test": 0}},
        "model": {"layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64, "max_length": 16},
        "tokenizer": {"kind": "char", "min_frequency": 1},
        "train": {"max_steps": steps, "batch_size": batch_size, "lr": 0.01, "progress": False, "precision": "fp32"},
        "generate": {"samples": 0},
    }, recipe_path=root / "recipe.yaml")
    return train(recipe, root / "run").root

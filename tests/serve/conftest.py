"""Shared by the serve tests: one tiny trained text classifier."""

import pytest

GOOD = ["a wonderful film", "great acting and a great story", "i loved it", "truly wonderful", "great fun"]
BAD = ["a terrible film", "awful acting and a dull story", "i hated it", "truly awful", "dull and boring"]


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    from danlu.pipeline import train
    from danlu.recipe import recipe_from_dict

    tmp = tmp_path_factory.mktemp("serve")
    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    (tmp / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows * 6))
    recipe = recipe_from_dict({
        "name": "reviews", "task": "text-classification",
        "data": {"source": str(tmp / "reviews.csv")},
        "quality": {"on_fail": "warn"},
        "model": {"arch": "bert", "size": "tiny", "layers": 1, "max_length": 32},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "train": {"epochs": 1, "progress": False},
    })
    return train(recipe, tmp / "run").root


LM_TEXT = "".join(f"the cat sat on the mat {i % 7}.\nthe dog ran to the log.\n" for i in range(150))


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
    """A tiny character-level causal LM, trained for a few steps (a few seconds). The corpus is one
    document, so the model has never seen an end-of-text token follow text: its samples run to max_tokens."""
    from lmkit import train_tiny_lm

    return train_tiny_lm(tmp_path_factory.mktemp("serve-lm"), LM_TEXT, steps=20, batch_size=8)

"""Shared by the serve tests: a tiny trained text classifier, table classifier and causal LM."""

import pytest

from servekit import train_table_run, train_text_run


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    return train_text_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def table_run(tmp_path_factory):
    return train_table_run(tmp_path_factory.mktemp("serve-table"))


@pytest.fixture(scope="session")
def runners(table_run, text_run):
    """The two classifiers loaded as `danlu serve` loads them, by kind."""
    from danlu.serve.runner import load_runner

    return {"table": load_runner(table_run), "text": load_runner(text_run)}


LM_TEXT = "".join(f"the cat sat on the mat {i % 7}.\nthe dog ran to the log.\n" for i in range(150))


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
    """A tiny character-level causal LM, trained for a few steps (a few seconds). The corpus is one
    document, so the model has never seen an end-of-text token follow text: its samples run to max_tokens."""
    from lmkit import train_tiny_lm

    return train_tiny_lm(tmp_path_factory.mktemp("serve-lm"), LM_TEXT, steps=20, batch_size=8)

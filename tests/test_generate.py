"""`danlu generate`: seeded, streamed sampling from a causal-lm run, and the verse line-structure figures."""

import json

import pytest
import typer
from typer.testing import CliRunner

from danlu.errors import DanluError
from danlu.predict import generate_text as generate
from danlu.tasks.causal_lm.generate import dominant_lengths, line_lengths
from danlu.generate_commands import register
from lmkit import train_tiny_lm

TEXT = "".join(f"the cat sat on mat {i % 7}.\nthe dog ran to the log.\n" for i in range(150))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_lm(tmp_path_factory.mktemp("lm"), TEXT, steps=30, batch_size=16)


def test_generate_is_deterministic_for_a_seed_and_streams_pieces(run_dir):
    once = "".join(generate(run_dir, "the ", max_new_tokens=60, seed=1, stream=False))
    again = "".join(generate(run_dir, "the ", max_new_tokens=60, seed=1, stream=False))
    assert once == again and len(once) > 20
    pieces = list(generate(run_dir, "the ", max_new_tokens=60, seed=1))
    assert len(pieces) > 1 and "".join(pieces) == once  # streaming gives the same text, piece by piece
    other = "".join(generate(run_dir, "the ", max_new_tokens=60, seed=2, stream=False))
    assert other != once


def test_generation_runs_past_the_trained_context(run_dir):
    # 16 positions: the window slides; the text is 100 characters of a char-level model (or stops at eos)
    text = "".join(generate(run_dir, "", max_new_tokens=100, temperature=0, stream=False))
    assert 16 < len(text) <= 100


def test_generate_command_prints_the_prompt_and_continuation(run_dir):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer's subcommand parsing
    result = CliRunner().invoke(app, ["generate", str(run_dir), "the dog", "--max-new-tokens", "30", "--seed", "3",
                                      "--no-stream"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the dog") and len(result.output) > len("the dog") + 5


def test_generate_refuses_a_run_of_another_task(tmp_path):
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "danlu.json").write_text(json.dumps({"task": "text-classification"}))
    with pytest.raises(DanluError, match="text-classification run"):
        list(generate(tmp_path / "run", "x"))
    with pytest.raises(DanluError, match="no such run"):
        list(generate(tmp_path / "missing", "x"))


def test_line_structure_of_verse():
    poem = "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。"
    assert line_lengths(poem) == [5, 5, 5, 5]
    assert line_lengths("白日依山盡，黃河入海", complete=False) == [5]  # the cut-off line is left out
    corpus = [poem] * 9 + ["朝辭白帝彩雲間，千里江陵一日還。"] * 2
    lengths, share = dominant_lengths(corpus)
    assert lengths == {5} and share == 0.9

"""causal-lm: tokenizers, windows and blocks, a tiny GPT that learns, a run that loads without danlu."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from danlu.data import load_splits
from danlu.errors import DanluError, DataError
from danlu.pipeline import check_data, evaluate_run, train
from danlu.recipe import recipe_from_dict
from danlu.inference import TorchForward
from danlu.tasks import make_task
from danlu.tasks.causal_lm.task import TokenBlocks, TokenWindows
from danlu.train.engine import fit
from danlu.train.tokenizer import train_tokenizer

VERSE = "春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少。"
ENGLISH = "".join(f"To be, or not to be: that is question {i}.\nWhether 'tis nobler in the mind.\n"
                  for i in range(120))


def recipe(tmp_path, **sections):
    if not (tmp_path / "corpus.txt").exists():
        (tmp_path / "corpus.txt").write_text(ENGLISH)
    raw = {"name": "lm", "task": "causal-lm", "data": {"source": "corpus.txt", "split": {"validation": 0.1, "test": 0}},
           "model": {"layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64, "max_length": 16},
           "tokenizer": {"kind": "char", "min_frequency": 1},
           "train": {"max_steps": 40, "batch_size": 16, "lr": 0.01, "warmup": 0, "progress": False,
                     "eval_every": 20, "checkpoint_every": 20, "precision": "fp32"},
           "generate": {"prompts": ["To be"], "samples": 1, "max_new_tokens": 20}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe_from_dict(raw, recipe_path=tmp_path / "r.yaml")


@pytest.mark.parametrize("kind", ["char", "byte_bpe"])
def test_tokenizers_round_trip_chinese_and_english(kind, tmp_path):
    tok = train_tokenizer([VERSE, ENGLISH], kind, vocab_size=300, min_frequency=1, lowercase=False)
    for text in (VERSE, "  To  be\n\nor 'not' , that .", "To be, or not"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    if kind == "char":
        assert len(tok(VERSE, add_special_tokens=False)["input_ids"]) == len(VERSE)  # one id per character
        assert tok.decode(tok("春€", add_special_tokens=False)["input_ids"]) == "春<unk>"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.decode(again(VERSE, add_special_tokens=False)["input_ids"]) == VERSE
    assert again.eos_token == "<|endoftext|>"


def test_windows_are_seeded_per_index_and_epoch_and_blocks_score_every_token_once():
    ids = np.arange(1000, dtype=np.int64)
    windows = TokenWindows(ids, block=16, seed=3)
    assert len(windows) == 62 and windows[5]["input_ids"].shape == (16,)
    first = windows[5]["input_ids"].copy()
    assert np.array_equal(first, TokenWindows(ids, 16, seed=3)[5]["input_ids"])  # deterministic
    windows.set_epoch(1)
    assert not np.array_equal(first, windows[5]["input_ids"])  # a new epoch sees fresh windows
    assert np.all(np.diff(windows[7]["input_ids"]) == 1)  # contiguous text

    blocks = TokenBlocks(ids, block=16)
    scored = np.concatenate([blocks[i]["input_ids"][1:] for i in range(len(blocks))])
    assert np.array_equal(scored, ids[1:])  # each token after the first predicted exactly once
    assert blocks.tokens() == 999


def test_collate_pads_a_short_last_block_out_of_the_loss(tmp_path):
    task = make_task(recipe(tmp_path))
    task.setup(pd.DataFrame({"text": [ENGLISH]}))
    blocks = task.encode(pd.DataFrame({"text": [ENGLISH[:40]]}))
    batch = task.collate([blocks[0], blocks[len(blocks) - 1]])
    assert batch["input_ids"].shape == (2, 16)
    short = len(blocks[len(blocks) - 1]["input_ids"])
    assert (batch["labels"][1, short:] == -100).all() and batch["attention_mask"][1, :short].all()
    full = task.collate([blocks[0], blocks[0]])
    assert "attention_mask" not in full and torch.equal(full["labels"], full["input_ids"])


def test_tiny_gpt_learns(tmp_path):
    torch.manual_seed(0)
    task = make_task(recipe(tmp_path))
    task.setup(pd.DataFrame({"text": [ENGLISH]}))
    model = task.build_model()
    train_ds = task.encode(pd.DataFrame({"text": [ENGLISH]}), train=True)
    val = task.encode(pd.DataFrame({"text": [ENGLISH[:400]]}))
    before = task.evaluate(TorchForward(model), val)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=16, shuffle=True, collate_fn=task.collate)
    model.train()
    for batch in loader:
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    after = task.evaluate(TorchForward(model), val)
    assert after["loss"] < before["loss"] - 1.0
    assert math.isclose(after["perplexity"], math.exp(after["loss"]))
    assert after["n"] == 399


def test_run_trains_reports_samples_and_loads_without_danlu(tmp_path):
    (tmp_path / "corpus.txt").write_text(ENGLISH)
    (tmp_path / "held_out.txt").write_text(ENGLISH[:500])
    run = train(recipe(tmp_path), tmp_path / "run")
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["validation"]["loss"] < math.log(40)  # well below a uniform guess over the characters
    history = json.loads(run.history_path.read_text())
    assert any("eval_loss" in h for h in history)
    report = (run.root / "report.md").read_text()
    assert "## Samples" in report and "prompt: 'To be'" in report

    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    ids = tok("To be", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert tok.decode(out[0]).startswith("To be")

    held = evaluate_run(run.root, tmp_path / "held_out.txt")
    assert held["n"] == 499 and math.isclose(held["perplexity"], math.exp(held["loss"]))


def test_poem_records_join_lists_and_globs_read_several_files(tmp_path):
    poems = [{"title": "t", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]}] * 3
    for name in ("a.1.json", "a.2.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(poems, ensure_ascii=False))
    r = recipe(tmp_path, data={"source": None, "train": "a.*.json", "validation": ["b.json"],
                               "columns": {"text": "paragraphs"}})
    splits = load_splits(r.data, ["text"], tmp_path)
    assert len(splits.frames["train"]) == 6 and len(splits.frames["validation"]) == 3
    assert splits.frames["train"]["text"][0] == "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。"
    files = set(splits.frames["train"]["_source"].map(lambda s: s.rsplit("/", 1)[-1]))
    assert files == {"a.1.json", "a.2.json"}


def test_one_document_is_split_by_characters(tmp_path):
    (tmp_path / "corpus.txt").write_text("x" * 900 + "y" * 100)
    splits, _, _ = check_data(recipe(tmp_path))
    assert splits.frames["train"]["text"][0] == "x" * 900
    assert splits.frames["validation"]["text"][0] == "y" * 100


def test_causal_lm_defaults_and_explicit_values(tmp_path):
    (tmp_path / "corpus.txt").write_text(ENGLISH)
    r = recipe_from_dict({"name": "lm", "task": "causal-lm", "data": {"source": "corpus.txt"}},
                         recipe_path=tmp_path / "r.yaml")
    assert (r.tokenizer.kind, r.tokenizer.lowercase, r.data.txt, r.model.activation) == \
        ("byte_bpe", False, "file", "gelu")
    r = recipe(tmp_path, tokenizer={"lowercase": True}, data={"txt": "lines"})
    assert r.tokenizer.lowercase is True and r.data.txt == "lines"


def test_empty_or_binary_corpus_or_too_little_text_is_a_clear_error(tmp_path):
    (tmp_path / "corpus.txt").write_text("  \n\n")
    with pytest.raises(DataError, match="corpus.txt is empty"):
        check_data(recipe(tmp_path))
    (tmp_path / "corpus.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    with pytest.raises(DataError, match="not valid UTF-8"):
        check_data(recipe(tmp_path))
    (tmp_path / "corpus.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DanluError, match="cannot tell the format"):
        check_data(recipe(tmp_path, data={"source": "corpus.bin"}))
    (tmp_path / "corpus.txt").write_text("short text, long enough to split")
    with pytest.raises(DataError, match="model.max_length"):
        train(recipe(tmp_path, model={"max_length": 64}), tmp_path / "run")


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_a_killed_run_resumes_on_the_same_windows(tmp_path):
    """Three epochs of random windows; killed at step 14, resumed from checkpoint-10: the same weights."""
    r = recipe(tmp_path, train={"max_steps": 24, "batch_size": 8, "checkpoint_every": 5, "keep_checkpoints": 5})
    task = make_task(r)
    task.setup(pd.DataFrame({"text": [ENGLISH]}))
    train_ds = task.encode(pd.DataFrame({"text": [ENGLISH[:1000]]}), train=True)  # 62 windows: 8 steps an epoch

    def run(folder, callbacks=()):
        torch.manual_seed(0)
        return fit(task.build_model(), train_ds, None, task.collate, r.train, folder / "ckpt", folder / "h.json",
                   None, None, False, large_model=True, callbacks=list(callbacks))

    full = run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part", [_StopAt(14)])
    resumed = run(tmp_path / "part")
    assert resumed.resumed_from.endswith("checkpoint-10") and resumed.steps == 24 and full.epochs == 3
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_clm_pretraining_on_a_corpus_then_training_on_the_task_text(tmp_path):
    """A decoder learns a (Chinese) corpus first, then the task's text, with one tokenizer for both."""
    (tmp_path / "poems.txt").write_text("\n".join([VERSE] * 40))
    r = recipe(tmp_path, pretrain={"objective": "clm", "corpus": "poems.txt", "max_steps": 20, "batch_size": 8},
               data={"source": "corpus.txt", "split": {"validation": 0.1, "test": 0}})
    run = train(r, tmp_path / "run")
    pre = json.loads((run.root / "pretrain" / "metrics.json").read_text())
    assert pre["objective"] == "clm" and pre["steps"] == 20 and math.isfinite(pre["eval_loss"])
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    for text in ("春眠", "To be"):  # the corpus's characters and the task's
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert AutoModelForCausalLM.from_pretrained(run.model_dir).config.n_positions == 16
    assert "pretrained in this run (clm, 20 steps)" in (run.root / "report.md").read_text()

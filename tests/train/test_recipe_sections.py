"""The recipe's pretrain:, joint:, transfer: and distill: sections, run end to end through `train()`."""

import json
import re

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForMaskedLM, TrainerCallback

from danlu.errors import DanluError, DataError, RecipeError
from danlu.pipeline import train
from danlu.recipe import recipe_from_dict
from danlu.run import Run

GOOD = ["a wonderful film", "great acting and a great story", "i loved it", "truly wonderful", "great fun",
        "a great cast", "wonderful and moving"]
BAD = ["a terrible film", "awful acting and a dull story", "i hated it", "truly awful", "dull and boring",
       "a dull cast", "awful and slow"]


@pytest.fixture
def data(tmp_path):
    rows = [(f"{t} {i}", "pos") for i in range(12) for t in GOOD] + [(f"{t} {i}", "neg") for i in range(12) for t in BAD]
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def recipe(tmp_path, data, **sections):
    body = {
        "name": "sections", "task": "text-classification",
        "data": {"source": str(data), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "quality": {"on_fail": "warn"},
        "model": {"arch": "bert", "size": "tiny", "layers": 2, "embedding": 32, "heads": 2, "feed_forward": 64,
                  "max_length": 16},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "progress": False, "precision": "fp32", "seed": 0},
    }
    body.update(sections)
    return recipe_from_dict(body, recipe_path=tmp_path / "r.yaml")


def test_mlm_pretraining_runs_first_and_the_classifier_starts_from_it(tmp_path, data):
    r = recipe(tmp_path, data, pretrain={"objective": "mlm", "epochs": 4, "block_size": 16, "lr": 3e-3})
    run = train(r, tmp_path / "run")
    pre = tmp_path / "run" / "pretrain"
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["objective"] == "mlm" and metrics["perplexity"] > 1 and metrics["steps"] > 0
    history = json.loads((pre / "history.json").read_text())
    assert any("loss" in h for h in history)  # the pretraining loss curve is recorded
    assert (pre / "model" / "config.json").exists() and (pre / "tokenizer" / "tokenizer_config.json").exists()
    report = (run.root / "report.md").read_text()
    assert "Pretraining" in report and "pretrained in this run" in report and "perplexity" in report
    assert "plots/pretrain_loss.png" in report
    # The recipe in the report is the one written, not the one pointing at RUN/pretrain.
    assert str(pre) not in report
    # The classifier's tokenizer is the corpus tokenizer and the model loads without danlu.
    clf = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    assert clf.config.vocab_size == BertForMaskedLM.from_pretrained(pre / "model").config.vocab_size


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt


def test_a_killed_pretraining_resumes_from_its_checkpoint(tmp_path, data, monkeypatch):
    from danlu.pipeline import pretrain as stage

    r = recipe(tmp_path, data, pretrain={"objective": "mlm", "max_steps": 12, "block_size": 16},
               train={"epochs": 1, "batch_size": 16, "progress": False, "precision": "fp32",
                      "checkpoint_every": 4, "keep_checkpoints": 5})
    real = stage.pretrain_stage
    monkeypatch.setattr("danlu.pipeline.stages.pretrain_stage",
                        lambda *a, **k: real(*a, callbacks=[_StopAt(6)], **k))
    with pytest.raises(KeyboardInterrupt):
        train(r, tmp_path / "run")
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "pretrain" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-4"] and not (tmp_path / "run" / "pretrain" / "model").exists()
    monkeypatch.setattr("danlu.pipeline.stages.pretrain_stage", real)
    messages = []
    train(r, tmp_path / "run", on_stage=messages.append)
    history = json.loads((tmp_path / "run" / "pretrain" / "history.json").read_text())
    assert max(h.get("step", 0) for h in history) == 12
    assert (tmp_path / "run" / "pretrain" / "model" / "config.json").exists()
    # The same command resumed the run in place and finished it.
    assert messages[0].startswith("resuming") and Run(tmp_path / "run").state()["status"] == "done"


def test_an_empty_or_numeric_corpus_ends_with_a_clear_message(tmp_path, data):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        train(recipe(tmp_path, data, pretrain={"corpus": str(empty)}), tmp_path / "a")
    numbers = tmp_path / "numbers.csv"
    pd.DataFrame({"text": [str(i * 1.5) for i in range(50)]}).to_csv(numbers, index=False)
    with pytest.raises(DataError, match="does not look like text"):
        train(recipe(tmp_path, data, pretrain={"corpus": str(numbers)}), tmp_path / "b")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"ok line\n\xff\xfe\x00\x81 binary\n")
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        train(recipe(tmp_path, data, pretrain={"corpus": str(binary)}), tmp_path / "c")
    with pytest.raises(DataError, match="no column 'body'"):
        train(recipe(tmp_path, data, pretrain={"corpus": str(numbers), "column": "body"}), tmp_path / "d")


def test_sections_are_checked_against_the_task(tmp_path, data):
    with pytest.raises(RecipeError, match="pretrain.objective: 'clm'"):
        recipe(tmp_path, data, pretrain={"objective": "clm"})
    with pytest.raises(RecipeError, match="transfer.lora: LoRA already keeps"):
        recipe(tmp_path, data, transfer={"freeze": "embeddings", "lora": {"r": 4}})
    with pytest.raises(RecipeError, match="did you mean 'distill.temperature'"):
        recipe(tmp_path, data, distill={"teacher": "x", "temprature": 2})


def test_joint_objective_trains_and_saves_a_plain_classifier(tmp_path, data):
    run = train(recipe(tmp_path, data, joint={"w_pre": 0.5, "w_fin": 1.0}), tmp_path / "run")
    clf = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    assert not any("mlm" in name for name, _ in clf.named_parameters())
    assert "joint objective: 0.5 x MLM" in (run.root / "report.md").read_text()


def test_frozen_backbone_trains_only_the_head(tmp_path, data):
    first = train(recipe(tmp_path, data), tmp_path / "base")
    r = recipe(tmp_path, data, model={"from": str(first.root), "max_length": 16}, transfer={"freeze": "backbone"})
    run = train(r, tmp_path / "frozen")
    before = AutoModelForSequenceClassification.from_pretrained(first.model_dir)
    after = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    assert torch.equal(before.bert.encoder.layer[0].output.dense.weight, after.bert.encoder.layer[0].output.dense.weight)
    assert not torch.equal(before.classifier.weight, after.classifier.weight)


def test_lora_reports_its_trainable_share_and_merges(tmp_path, data):
    first = train(recipe(tmp_path, data), tmp_path / "base")
    r = recipe(tmp_path, data, model={"from": str(first.root), "max_length": 16},
               transfer={"lora": {"r": 4, "alpha": 8, "target": ["query", "value"]}})
    run = train(r, tmp_path / "lora")
    report = (run.root / "report.md").read_text()
    assert "LoRA r=4" in report
    merged = AutoModelForSequenceClassification.from_pretrained(run.model_dir)  # no peft needed
    assert not any("lora" in name for name, _ in merged.named_parameters())
    before = AutoModelForSequenceClassification.from_pretrained(first.model_dir)
    assert not torch.equal(before.bert.encoder.layer[0].attention.self.query.weight,
                           merged.bert.encoder.layer[0].attention.self.query.weight)  # adapters merged in


def test_distilled_student_learns_from_a_teacher_run(tmp_path, data):
    teacher = train(recipe(tmp_path, data), tmp_path / "teacher")
    r = recipe(tmp_path, data, model={"arch": "bert", "layers": 1, "embedding": 16, "heads": 2, "feed_forward": 32,
                                      "max_length": 16},
               distill={"teacher": str(teacher.root), "temperature": 2.0, "alpha": 0.7})
    plain = []
    run = train(r, tmp_path / "student", on_stage=plain.append)
    assert "distilled from" in (run.root / "report.md").read_text()
    assert json.loads(run.metrics_path.read_text())["test"]["accuracy"] >= 0.5
    with pytest.raises(DanluError, match="no finished run"):
        train(recipe(tmp_path, data, distill={"teacher": "nowhere"}), tmp_path / "orphan")
    # Augmented: each training text once more, perturbed and labelled by the teacher.
    messages = []
    r = recipe(tmp_path, data, distill={"teacher": str(teacher.root), "augment": 1})
    run = train(r, tmp_path / "augmented", on_stage=messages.append)
    assert "1 teacher-labelled perturbed copies" in (run.root / "report.md").read_text()

    def examples(messages):
        return int(re.search(r"([\d,]+) examples", next(m for m in messages if m.startswith("train:"))).group(1))

    assert examples(messages) == 2 * examples(plain)


def test_augmented_texts_are_perturbed_copies():
    from danlu.pipeline.distill import augment_texts

    texts = ["a wonderful film with a great cast", "dull"]
    out = augment_texts(texts, copies=3, seed=0)
    assert len(out) == 6 and out == augment_texts(texts, copies=3, seed=0)
    assert any(o != t for o, t in zip(out, texts * 3))  # something changed
    assert all(set(o.split()) <= set(" ".join(texts).split()) | {"[MASK]"} for o in out)

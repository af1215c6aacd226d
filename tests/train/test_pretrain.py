"""MLM pretraining and the joint objective on a tiny corpus."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from danlu.errors import DanluError
from danlu.recipe import TrainConfig
from danlu.train.pretrain import JointModel, pack_blocks, pretrain_mlm
from danlu.train.tokenizer import train_tokenizer

TEXTS = ["the film was good and the cast was good", "the plot was bad and the film was bad",
         "a good cast in a bad film", "good good good", "bad bad bad"] * 30


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=120, min_frequency=1)


def config(tok):
    return BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=32, pad_token_id=tok.pad_token_id)


def test_blocks_are_full_and_start_with_cls(tok):
    blocks = pack_blocks(tok, TEXTS, 16)
    assert all(b["input_ids"][0] == tok.cls_token_id for b in blocks.items)
    assert all(len(b["input_ids"]) == 16 for b in blocks.items[:-1])
    with pytest.raises(DanluError, match="no text"):
        pack_blocks(tok, ["", ""], 16)


def test_mlm_pretraining_lowers_perplexity_and_feeds_a_classifier(tok, tmp_path):
    cfg = TrainConfig(epochs=8, batch_size=16, lr=3e-3, progress=False, precision="fp32")
    result = pretrain_mlm(config(tok), tok, TEXTS, cfg, tmp_path, mask_prob=0.15, block_size=16, seed=0)
    evals = [h["eval_loss"] for h in result["history"] if "eval_loss" in h]
    assert evals[-1] < evals[0] and result["perplexity"] < len(tok) / 2  # uniform guessing: len(tok)
    clf = BertForSequenceClassification.from_pretrained(tmp_path / "model", num_labels=2)
    from transformers import BertForMaskedLM

    mlm = BertForMaskedLM.from_pretrained(tmp_path / "model")
    assert torch.equal(clf.bert.encoder.layer[0].output.dense.weight, mlm.bert.encoder.layer[0].output.dense.weight)


def test_joint_model_adds_the_mlm_loss_only_in_training(tok):
    torch.manual_seed(0)
    clf = BertForSequenceClassification(BertConfig(**{**config(tok).to_dict(), "num_labels": 2}))
    joint = JointModel(clf, tok, w_pre=0.5, w_fin=1.0)
    batch = tok(TEXTS[:4], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 0, 1])
    joint.train()
    torch.manual_seed(1)
    both = joint(**batch, labels=labels).loss
    clf.train()
    torch.manual_seed(1)
    task_only = clf(**batch, labels=labels).loss
    assert both > task_only  # the MLM term is positive
    joint.eval()
    assert torch.allclose(joint(**batch, labels=labels).loss, clf.eval()(**batch, labels=labels).loss)
    assert not any(k.startswith("mlm.bert") for k in joint.state_dict())  # nothing shared twice


def test_masked_only_head_gives_the_full_models_loss(tok):
    from danlu.train.pretrain import MaskedOnly, mlm_collator

    torch.manual_seed(0)
    from transformers import BertForMaskedLM

    mlm = BertForMaskedLM(config(tok)).eval()
    torch.manual_seed(1)
    batch = mlm_collator(tok, 0.3)([{"input_ids": ids} for ids in tok(TEXTS[:6])["input_ids"]])
    full = mlm(**batch).loss
    assert torch.allclose(MaskedOnly(mlm)(**batch).loss, full, atol=1e-5)

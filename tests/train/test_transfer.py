"""What to train: freezing, gradual unfreezing, LoRA; and distillation's loss."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from danlu.errors import DanluError
from danlu.train.distill import distill_loss
from danlu.train.transfer import GradualUnfreeze, apply_lora, freeze, merge_lora


def bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3,
                                                     num_attention_heads=2, intermediate_size=64, num_labels=2))


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_embeddings_layers_and_backbone():
    m = bert()
    freeze(m, "embeddings")
    assert not any(n.startswith("bert.embeddings") for n in trainable(m))
    assert any(n.startswith("bert.encoder.layer.0") for n in trainable(m))

    m = bert()
    freeze(m, 2)
    names = trainable(m)
    assert not any(n.startswith(("bert.encoder.layer.0.", "bert.encoder.layer.1.", "bert.embeddings")) for n in names)
    assert any(n.startswith("bert.encoder.layer.2.") for n in names)

    m = bert()
    freeze(m, "backbone")
    assert trainable(m) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                            "classifier.bias"}
    with pytest.raises(DanluError, match="3 layers"):
        freeze(bert(), 5)


def test_gradual_unfreeze_adds_one_layer_per_epoch_from_the_top():
    m = bert()
    cb = GradualUnfreeze(m)
    assert not any(".encoder." in n for n in trainable(m))
    state = type("S", (), {"epoch": 1.0})()
    cb.on_epoch_begin(None, state, None)
    assert any(n.startswith("bert.encoder.layer.2.") for n in trainable(m))
    assert not any(n.startswith("bert.encoder.layer.1.") for n in trainable(m))
    for _ in range(3):
        cb.on_epoch_begin(None, state, None)
    assert trainable(m) == {n for n, _ in m.named_parameters()}


def test_lora_trains_a_small_share_and_merges_back_to_a_plain_model(tmp_path):
    m = bert()
    x = torch.randint(0, 100, (2, 7))
    peft_model = apply_lora(m, r=4, alpha=8, dropout=0.0, target=["query", "value"])
    total = sum(p.numel() for p in peft_model.parameters())
    share = sum(p.numel() for p in peft_model.parameters() if p.requires_grad) / total
    assert share < 0.2
    # Nudge an adapter so that merging has something to fold in.
    lora_b = next(p for n, p in peft_model.named_parameters() if "lora_B" in n)
    torch.nn.init.normal_(lora_b)
    peft_model.eval()
    before = peft_model(input_ids=x).logits
    merged = merge_lora(peft_model)
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert torch.allclose(before, merged(input_ids=x).logits, atol=1e-5)
    merged.save_pretrained(tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()


def test_distill_loss_mixes_soft_and_hard_targets():
    student = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    hard = torch.nn.functional.cross_entropy(student, labels)
    assert torch.isclose(distill_loss(student, student, labels, 2.0, 0.5), 0.5 * hard)  # soft term is 0
    assert distill_loss(student, -student, labels, 2.0, 1.0) > 0
    assert torch.isclose(distill_loss(student, -student, labels, 2.0, 0.0), hard)

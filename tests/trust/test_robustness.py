"""Robustness: strength 0 is the clean metric exactly, perturbations really perturb, attacks really attack,
and out-of-range strengths are one clear message."""

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from danlu.cli import app
from danlu.errors import DanluError
from danlu.inference import TorchForward
from danlu.trust.robustness import IMAGE, TEXT, check_strengths, measure, perturbations
from trustkit import trained_sample


@pytest.fixture(scope="module", params=["tabular-classification", "text-classification", "image-classification",
                                        "audio-classification"])
def trained(request, tmp_path_factory):
    torch.set_num_threads(1)
    return trained_sample(request.param, tmp_path_factory.mktemp(request.param))


def test_strength_zero_reproduces_the_clean_metric_exactly(trained):
    forward = TorchForward(trained.model)
    clean = trained.task.evaluate(forward, trained.task.encode(trained.test))[trained.task.spec.main_metric]
    result = measure(trained.task, forward, trained.test, trained.features, [0.0, 0.5])
    assert result["clean"] == clean
    zero = [r for r in result["rows"] if r["strength"] == 0.0]
    assert len(zero) == len(perturbations(trained.task.spec.input_roles, trained.features)) >= 1
    assert all(r["metric"] == clean for r in zero), zero


def test_a_perturbation_changes_the_rows_it_gets_and_repeats_with_its_seed(trained):
    for name, p in perturbations(trained.task.spec.input_roles, trained.features).items():
        a, b = p.apply(trained.test, 0.5, 7), p.apply(trained.test, 0.5, 7)
        column = next((c for c in ("text", "image", "audio") if c in a), None) or trained.features[0]
        as_values = (lambda f: [np.asarray(v).tolist() for v in f[column]]) if column in ("image", "audio") else \
            (lambda f: f[column].astype(str).tolist())
        assert as_values(a) == as_values(b), name
        assert as_values(a) != as_values(trained.test), name


def test_the_gradient_attacks_only_lower_the_metric_and_a_large_one_lowers_it(trained):
    forward = TorchForward(trained.model)
    if trained.task.spec.capabilities.gradient_input is None:
        with pytest.raises(DanluError, match="no input to take gradients through"):
            measure(trained.task, forward, trained.test, trained.features, [0.0], attack_epsilons=[0.1])
        return
    result = measure(trained.task, forward, trained.test, trained.features, [0.0], names=None,
                     attack_epsilons=[0.0, 3.0])
    by = {(a["attack"], a["epsilon"]): a["metric"] for a in result["attacks"]}
    assert by[("fgsm", 0.0)] == by[("pgd", 0.0)] == result["clean"]
    assert by[("pgd", 3.0)] < result["clean"] and by[("fgsm", 3.0)] <= result["clean"]


def test_character_and_pixel_noise_at_full_strength_differs_from_the_input():
    rng = __import__("random").Random(0)
    text = "the quick brown fox jumps over the lazy dog"
    assert all(fn(text, 0.0, rng) == text for fn in TEXT.values())
    assert all(fn(text, 1.0, rng) != text for fn in TEXT.values())
    pixels = np.full((8, 8, 3), 100, dtype=np.uint8)
    grid = np.random.default_rng(0)
    assert all(np.array_equal(fn(pixels, 0.0, grid), pixels) for fn in IMAGE.values())
    assert all(not np.array_equal(fn(pixels, 1.0, grid), pixels) for name, fn in IMAGE.items() if name != "blur")


def test_a_strength_out_of_range_is_one_clear_message(tmp_path):
    with pytest.raises(DanluError, match=r"--strength: strength 1.5 is out of range.*\[0, 1\]"):
        check_strengths([0.1, 1.5], "--strength")
    body = {"name": "t", "task": "tabular-classification", "data": {"source": "builtin:iris"},
            "evaluate": {"robustness": {"strengths": [0.0, 1.5]}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(body))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "evaluate.robustness.strengths" in result.output and "1" in result.output

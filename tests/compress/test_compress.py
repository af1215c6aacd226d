"""danlu compress on tiny runs: the files, the figures, ONNX parity, int8 sizes, pruning sparsity."""

import json

import numpy as np
import pytest
import torch

from danlu.compress.build import parse_variants
from danlu.inference import batches as batches_of
from danlu.compress.runtime import load_variant
from danlu.errors import DanluError
from danlu.tasks import load_task

FIGURES = ("name", "format", "precision", "main_metric", "main_value", "metrics", "latency", "size_bytes",
           "peak_rss_bytes", "rss_before_bytes", "memory_method", "threads", "split", "examples", "vs_baseline")


def test_variants_land_with_every_figure(text_compressed):
    run, figures = text_compressed
    folder = run / "variants"
    table = json.loads((folder / "variants.json").read_text())
    assert [v["name"] for v in table] == ["pytorch-fp32", "onnx-fp32", "onnx-int8", "torch-int8",
                                          "prune-structured-0.3"]
    for v in table:
        assert all(v.get(k) is not None for k in FIGURES), v["name"]
        assert v["split"] == "test" and v["metrics"]["accuracy"] == v["main_value"]
        for batch in ("1", "8"):
            lat = v["latency"][batch]
            assert 0 < lat["p50_ms"] <= lat["p95_ms"] and lat["throughput_per_s"] > 0 and lat["calls"] >= 20
        assert v["peak_rss_bytes"] >= v["rss_before_bytes"] > 0
        assert (folder / v["name"] / "variant.json").exists()
    for name in ("onnx-fp32", "onnx-int8"):
        assert (folder / name / "model.onnx").exists()
    assert (folder / "torch-int8" / "model.pt").exists()
    assert (folder / "prune-structured-0.3" / "model.safetensors").exists()
    report = (folder / "report.md").read_text()
    assert "accuracy_latency.png" in report and "| onnx-int8 |" in report
    assert (folder / "accuracy_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(folder.glob(".*"))  # no temporary folders left behind


def _first_batches(run, size=8):
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe
    from danlu.run import Run

    task, model = load_task(Run(run).model_dir)
    recipe = load_recipe(Run(run).recipe_path, base_dir=Run(run).state().get("recipe_dir"))
    data = task.encode(check_data(recipe)[0].frames["test"])
    return task, model, batches_of(task, data, size)[0]


def test_onnx_fp32_matches_pytorch_and_int8_stays_close(text_compressed, iris_compressed):
    for run in (text_compressed[0], iris_compressed[0]):
        task, model, batches = _first_batches(run)
        onnx32 = load_variant(run, "onnx-fp32", task=task)
        for batch in batches[:3]:  # padded batches of different lengths: the dynamic axes at work
            with torch.no_grad():
                expected = model(**batch).logits.numpy()
            np.testing.assert_allclose(onnx32.forward(batch), expected, atol=1e-4)
    run, figures = text_compressed
    by_name = {v["name"]: v for v in figures}
    assert by_name["onnx-fp32"]["max_abs_logit_diff"] < 1e-4
    assert by_name["pytorch-fp32"]["main_value"] >= 0.9  # the fixture learned its keywords
    for name in ("onnx-int8", "torch-int8"):
        assert by_name[name]["agreement_with_baseline"] >= 0.9
        assert by_name[name]["main_value"] >= by_name["pytorch-fp32"]["main_value"] - 0.05


def test_int8_variants_are_smaller_on_disk(text_compressed):
    sizes = {v["name"]: v["size_bytes"] for v in text_compressed[1]}
    assert sizes["onnx-int8"] < 0.6 * sizes["onnx-fp32"]
    assert sizes["torch-int8"] < 0.6 * sizes["pytorch-fp32"]


def test_structured_pruning_removes_feed_forward_neurons(text_compressed):
    run, figures = text_compressed
    entry = {v["name"]: v for v in figures}["prune-structured-0.3"]
    variant = load_variant(run, "prune-structured-0.3")
    assert variant.forward.model.config.intermediate_size == round(512 * 0.7)
    assert entry["sparsity"] == pytest.approx(0.3, abs=1 / 512)
    assert entry["recovery"]["steps"] == 3
    assert entry["parameters"] < {v["name"]: v for v in figures}["pytorch-fp32"]["parameters"]


def test_magnitude_pruning_reaches_the_sparsity(iris_compressed):
    run, figures = iris_compressed
    entry = {v["name"]: v for v in figures}["prune-magnitude-0.5"]
    model = load_variant(run, "prune-magnitude-0.5").forward.model
    hidden = model.body[0].weight  # the output layer is not pruned
    assert entry["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert float((hidden == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert entry["recovery"]["steps"] == 3


def test_chained_variant_is_pruned_and_quantized(iris_compressed):
    run, figures = iris_compressed
    chained = {v["name"]: v for v in figures}["prune-structured-0.3+onnx-int8"]
    assert chained["format"] == "onnx" and chained["precision"] == "int8"
    assert chained["sparsity"] == pytest.approx(5 / 16)  # 16 hidden units, 11 kept
    import onnx

    ops = {n.op_type for n in onnx.load(run / "variants" / chained["name"] / "model.onnx").graph.node}
    assert "MatMulInteger" in ops and "Gemm" not in ops  # the MLP's Gemm layers were quantized too


def test_bad_variant_names_fail_before_any_work():
    with pytest.raises(DanluError, match="did you mean 'onnx-int8'"):
        parse_variants("onnx-int9")
    with pytest.raises(DanluError, match="between 0 and 1"):
        parse_variants("prune-magnitude-1.5")
    with pytest.raises(DanluError, match="named 'student'"):
        parse_variants("distil")
    specs = parse_variants("onnx-int8, prune-structured-0.3+torch-int8,onnx-int8")
    assert [(s.name, s.prune, s.format) for s in specs] == [
        ("pytorch-fp32", None, "pytorch-fp32"), ("onnx-int8", None, "onnx-int8"),
        ("prune-structured-0.3+torch-int8", ("structured", 0.3), "torch-int8")]


def test_gemm_rewrite_keeps_the_outputs(iris_compressed):
    import onnx
    import onnxruntime as ort

    from danlu.compress.build import gemm_to_matmul

    proto = onnx.load(iris_compressed[0] / "variants" / "onnx-fp32" / "model.onnx")
    assert "Gemm" in {n.op_type for n in proto.graph.node}
    x = {"inputs": np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)}
    before = ort.InferenceSession(proto.SerializeToString()).run(None, x)[0]
    gemm_to_matmul(proto)
    assert "Gemm" not in {n.op_type for n in proto.graph.node}
    np.testing.assert_allclose(ort.InferenceSession(proto.SerializeToString()).run(None, x)[0], before, atol=1e-5)

"""`danlu match --min-robust-metric`: a variant whose worst metric under perturbation (danlu robust) falls short,
or was never measured, is excluded, saying why."""

import json

import pytest

from danlu.errors import DanluError
from danlu.match import Constraints, choose, match_run


def variant(name, acc, robust=None, p95=1.0, mb=1.0):
    out = {"name": name, "main_metric": "accuracy", "main_value": acc, "greater_is_better": True,
           "latency": {"1": {"p50_ms": p95 / 2, "p95_ms": p95, "throughput_per_s": 100.0}}, "size_bytes": int(mb * 1e6)}
    return out | ({"robust_value": robust} if robust is not None else {})


def test_the_robust_floor_excludes_a_variant_that_breaks_under_perturbation():
    table = [variant("pytorch-fp32", 0.90, robust=0.80), variant("onnx-int8", 0.91, robust=0.60),
             variant("prune", 0.92)]
    assert choose(table, Constraints()).chosen["name"] == "prune"
    decision = choose(table, Constraints(min_robust_metric=0.75))
    assert decision.chosen["name"] == "pytorch-fp32"
    assert "worst accuracy under perturbation 0.6 < 0.75" in decision.reasons["onnx-int8"]
    assert "not measured" in decision.reasons["prune"]


def test_match_run_reads_the_robustness_table_of_the_run(tmp_path):
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "variants.json").write_text(json.dumps(
        [variant("pytorch-fp32", 0.90), variant("onnx-int8", 0.91)]))
    with pytest.raises(DanluError, match="--min-robust-metric: .*robustness.json not found"):
        match_run(tmp_path, Constraints(min_robust_metric=0.7))
    (tmp_path / "robustness.json").write_text(json.dumps({"variants": {"pytorch-fp32": 0.8, "onnx-int8": 0.5}}))
    decision, path = match_run(tmp_path, Constraints(min_robust_metric=0.7))
    assert decision.chosen["name"] == "pytorch-fp32"
    assert json.loads(path.read_text())["constraints"]["min_robust_metric"] == 0.7

"""danlu.match.choose on hand-made variant tables: each constraint, ties, nothing fits, cost."""

import json

import pytest
from typer.testing import CliRunner

from danlu.errors import DanluError
from danlu.match import Constraints, choose, match_run


def variant(name, acc, p95, mb, throughput=100.0, p95_b32=None, metric="accuracy", greater=True):
    latency = {"1": {"p50_ms": p95 / 2, "p95_ms": p95, "throughput_per_s": throughput}}
    if p95_b32 is not None:
        latency["32"] = {"p50_ms": p95_b32 / 2, "p95_ms": p95_b32, "throughput_per_s": throughput * 10}
    return {"name": name, "main_metric": metric, "main_value": acc, "greater_is_better": greater,
            "latency": latency, "size_bytes": int(mb * 1e6)}


TABLE = [
    variant("pytorch-fp32", 0.900, 14.0, 91.0, throughput=80),
    variant("onnx-fp32", 0.900, 6.0, 91.0, throughput=200),
    variant("onnx-int8", 0.895, 2.0, 23.0, throughput=600),
    variant("prune-structured-0.3", 0.870, 9.0, 70.0, throughput=120),
]


def test_no_constraints_picks_the_best_metric_and_breaks_the_tie_on_p95():
    d = choose(TABLE, Constraints())
    assert d.chosen["name"] == "onnx-fp32"  # ties pytorch-fp32 on accuracy, lower p95
    assert "ties on accuracy" in d.reasons["pytorch-fp32"] and "p95" in d.reasons["pytorch-fp32"]
    assert "accuracy 0.8950 vs 0.9000" in d.reasons["onnx-int8"]


def test_each_constraint_excludes_and_says_by_how_much():
    d = choose(TABLE, Constraints(p95_ms=10))
    assert d.chosen["name"] == "onnx-fp32"
    assert "p95 14 ms > 10 ms (40.0% past the limit)" in d.reasons["pytorch-fp32"]

    d = choose(TABLE, Constraints(max_mb=50))
    assert d.chosen["name"] == "onnx-int8"
    assert "size 91 MB > 50 MB (82.0% past the limit)" in d.reasons["onnx-fp32"]

    d = choose(TABLE, Constraints(min_metric=0.88, max_mb=80))
    assert d.chosen["name"] == "onnx-int8"
    assert "accuracy 0.87 < 0.88" in d.reasons["prune-structured-0.3"]


def test_tie_on_metric_and_p95_goes_to_the_smaller_variant():
    table = [variant("a", 0.9, 5.0, 40.0), variant("b", 0.9, 5.0, 20.0)]
    d = choose(table, Constraints())
    assert d.chosen["name"] == "b"
    assert "size 40 MB vs 20 MB" in d.reasons["a"]


def test_lower_is_better_metric_is_a_ceiling_and_the_lowest_wins():
    table = [variant("a", 3.0, 5.0, 10.0, metric="rmse", greater=False),
             variant("b", 2.0, 5.0, 10.0, metric="rmse", greater=False),
             variant("c", 1.5, 50.0, 10.0, metric="rmse", greater=False)]
    d = choose(table, Constraints(min_metric=2.5, p95_ms=10))
    assert d.chosen["name"] == "b"
    assert "rmse 3 > 2.5" in d.reasons["a"]


def test_nothing_fits_names_the_closest_constraint():
    d = choose(TABLE, Constraints(p95_ms=1.5, min_metric=0.85))
    assert d.chosen is None
    name, miss = d.closest
    assert (name, miss.constraint) == ("onnx-int8", "p95_ms")  # 2 ms vs 1.5: the only miss, 33% over
    assert "--p95-ms 2 would admit it" in d.message

    # Every variant misses two constraints: the smallest summed miss is named.
    d = choose(TABLE, Constraints(p95_ms=1, max_mb=10, min_metric=0.95))
    assert d.chosen is None and d.closest[0] == "onnx-int8"
    assert d.message.count("past the limit") == 3 and "it also misses" in d.message


def test_relaxing_to_the_suggested_limit_admits_the_variant():
    d = choose(TABLE, Constraints(min_metric=0.91))
    assert d.closest[0] in ("pytorch-fp32", "onnx-fp32") and "--min-metric 0.9 " in d.message
    assert choose(TABLE, Constraints(min_metric=0.9)).chosen is not None


def test_cost_per_million_requests_uses_the_throughput_at_the_batch():
    d = choose(TABLE, Constraints(max_mb=50, cost_per_hour=0.5))
    assert d.cost_per_million == pytest.approx(0.5 / (600 * 3600) * 1e6)
    table = [variant("x", 0.9, 5.0, 10.0, throughput=50, p95_b32=40.0)]
    d = choose(table, Constraints(p95_ms=50, cost_per_hour=2.0, batch=32))
    assert d.cost_per_million == pytest.approx(2.0 / (500 * 3600) * 1e6)
    with pytest.raises(DanluError, match="no latency measured at batch 8"):
        choose(table, Constraints(batch=8))


def test_match_run_writes_deployment_and_fails_when_nothing_fits(tmp_path):
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "variants.json").write_text(json.dumps(TABLE))
    decision, path = match_run(tmp_path, Constraints(p95_ms=10, max_mb=50, min_metric=0.89))
    got = json.loads(path.read_text())
    assert got["variant"] == "onnx-int8" and got["cost_per_million_requests"] == pytest.approx(0.5 / 600 / 3600 * 1e6)
    assert set(got["others"]) == {"pytorch-fp32", "onnx-fp32", "prune-structured-0.3"}
    with pytest.raises(DanluError, match="closest: onnx-int8"):
        match_run(tmp_path, Constraints(p95_ms=1))


def test_match_command_exits_1_when_nothing_fits(tmp_path):
    import typer

    from danlu.compress.commands import register

    app = typer.Typer()
    register(app)
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "variants.json").write_text(json.dumps(TABLE))
    result = CliRunner().invoke(app, ["match", str(tmp_path), "--p95-ms", "1", "--min-metric", "0.85"])
    assert result.exit_code == 1 and "closest: onnx-int8" in result.output
    result = CliRunner().invoke(app, ["match", str(tmp_path), "--max-mb", "50"])
    assert result.exit_code == 0, result.output
    assert "chosen: onnx-int8" in result.output and "per million requests" in result.output


def test_non_positive_limits_are_refused():
    with pytest.raises(DanluError, match="--p95-ms must be positive"):
        choose(TABLE, Constraints(p95_ms=0))

"""A run's compressed variants (RUN/variants/variants.json, written by `danlu compress`) for the variants
page, and `danlu match`'s choice for the constraints a user sets there with sliders: the same pure
function (danlu.match.choose), so the page never disagrees with the command."""

from __future__ import annotations

from danlu.errors import DanluError
from danlu.match import Constraints, choose, figures_at
from danlu.run import Run, read_json


def table(run: Run) -> list[dict]:
    if not run.variants_table.exists():
        return []
    try:
        found = read_json(run.variants_table)
    except (OSError, ValueError):
        return []
    return [v for v in found if isinstance(v, dict) and "name" in v] if isinstance(found, list) else []


def batches(variants: list[dict]) -> list[int]:
    """The batch sizes every variant was timed at."""
    common = None
    for v in variants:
        sizes = {int(k) for k in (v.get("latency") or {}) if str(k).isdigit()}
        common = sizes if common is None else common & sizes
    return sorted(common or ())


def points(variants: list[dict], batch: int) -> list[dict]:
    """One point per variant: its main metric against its p95 latency at `batch`, and its size."""
    out = []
    for v in variants:
        figures = figures_at(v, batch)
        out.append({"name": v["name"], "metric": v.get("main_value"), "p95_ms": figures["p95_ms"],
                    "p50_ms": figures.get("p50_ms"), "throughput_per_s": figures.get("throughput_per_s"),
                    "mb": v["size_bytes"] / 1e6})
    return out


def decide(variants: list[dict], constraints: Constraints) -> dict:
    """What `danlu match` would choose: {"chosen", "message", "reasons", "cost_per_million"}."""
    try:
        decision = choose(variants, constraints)
    except DanluError as exc:
        return {"chosen": None, "message": str(exc), "reasons": {}, "cost_per_million": None}
    return {"chosen": decision.chosen["name"] if decision.chosen else None, "message": decision.message,
            "reasons": decision.reasons, "cost_per_million": decision.cost_per_million}

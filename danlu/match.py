"""`danlu match RUN`: the variant to deploy under latency, size and quality constraints.

`choose` is a pure function of the measured table (RUN/variants/variants.json) and the
constraints; `match_run` reads the table, writes RUN/variants/deployment.json and says why.

Rule: among the variants meeting every constraint, the best main metric wins (highest, or lowest
for a lower-is-better metric such as rmse); a tie goes to the lower p95 latency at the requested
batch size, then to the smaller size on disk, then to the name. `--min-metric` means "at least
this good": a floor for accuracy-like metrics, a ceiling for error metrics. MB = 10^6 bytes.
Cost per million requests = cost_per_hour / (throughput_per_s * 3600) * 1e6, with the throughput
measured at the requested batch size (one process with the threads compress used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import DanluError
from danlu.run import Run, atomic_write_json, read_json


@dataclass
class Constraints:
    p95_ms: float | None = None
    max_mb: float | None = None
    min_metric: float | None = None
    cost_per_hour: float | None = 0.5
    batch: int = 1
    # the worst metric of `danlu robust RUN --variant ...` (RUN/robustness.json), at least this good
    min_robust_metric: float | None = None


@dataclass
class Violation:
    constraint: str  # "p95_ms" | "max_mb" | "min_metric" | "min_robust_metric"
    value: float
    limit: float
    relative: float  # how far past the limit, as a share of the limit

    def describe(self, metric: str = "metric") -> str:
        what = {"p95_ms": ("p95", " ms", ">"), "max_mb": ("size", " MB", ">")}.get(self.constraint)
        if self.constraint == "min_robust_metric":
            metric = f"worst {metric} under perturbation"
            if self.value != self.value:  # NaN: not measured
                return f"{metric} not measured (run `danlu robust RUN --variant NAME`)"
        name, unit, sign = what or (metric, "", "<" if self.value < self.limit else ">")
        return f"{name} {self.value:.4g}{unit} {sign} {self.limit:.4g}{unit} ({self.relative:.1%} past the limit)"


@dataclass
class Decision:
    chosen: dict | None
    reasons: dict[str, str] = field(default_factory=dict)  # every other variant -> why it lost
    violations: dict[str, list[Violation]] = field(default_factory=dict)
    closest: tuple[str, Violation] | None = None  # when nothing fits: (variant, the constraint it misses)
    cost_per_million: float | None = None
    message: str = ""


FLAGS = {"p95_ms": "--p95-ms", "max_mb": "--max-mb", "min_metric": "--min-metric",
         "min_robust_metric": "--min-robust-metric"}


def figures_at(variant: dict, batch: int) -> dict:
    latency = variant.get("latency", {})
    if str(batch) not in latency:
        raise DanluError(f"variant {variant['name']}: no latency measured at batch {batch} "
                         f"(measured: {', '.join(sorted(latency, key=int))}); rerun compress with --batch {batch}")
    return latency[str(batch)]


def violations(variant: dict, c: Constraints) -> list[Violation]:
    out = []
    p95 = figures_at(variant, c.batch)["p95_ms"]
    if c.p95_ms is not None and p95 > c.p95_ms:
        out.append(Violation("p95_ms", p95, c.p95_ms, (p95 - c.p95_ms) / c.p95_ms))
    mb = variant["size_bytes"] / 1e6
    if c.max_mb is not None and mb > c.max_mb:
        out.append(Violation("max_mb", mb, c.max_mb, (mb - c.max_mb) / c.max_mb))
    greater = variant.get("greater_is_better", True)
    for name, value, limit in (("min_metric", variant.get("main_value"), c.min_metric),
                               ("min_robust_metric", variant.get("robust_value"), c.min_robust_metric)):
        if limit is not None and (value is None or (value < limit if greater else value > limit)):
            gap = float("inf") if value is None else abs(value - limit)
            out.append(Violation(name, float("nan") if value is None else value, limit, gap / max(abs(limit), 1e-12)))
    return out


def _rank(variant: dict, batch: int) -> tuple:
    value = variant.get("main_value")
    score = float("-inf") if value is None else (value if variant.get("greater_is_better", True) else -value)
    return (-score, figures_at(variant, batch)["p95_ms"], variant["size_bytes"], variant["name"])


def choose(variants: list[dict], constraints: Constraints) -> Decision:
    """The best variant meeting every constraint (see the module's rule), and why each other one lost."""
    if not variants:
        raise DanluError("no variants to choose from: run `danlu compress RUN` first")
    for flag, value in (("--p95-ms", constraints.p95_ms), ("--max-mb", constraints.max_mb)):
        if value is not None and value <= 0:
            raise DanluError(f"{flag} must be positive, got {value:g}")
    decision = Decision(chosen=None)
    fits = []
    for v in variants:
        found = violations(v, constraints)
        decision.violations[v["name"]] = found
        if found:
            metric = v.get("main_metric", "metric")
            decision.reasons[v["name"]] = "fails " + "; ".join(x.describe(metric) for x in found)
        else:
            fits.append(v)
    if not fits:
        decision.closest = _closest(variants, decision.violations)
        name, miss = decision.closest
        metric = variants[0].get("main_metric", "metric")
        rest = [x.describe(metric) for x in decision.violations[name] if x is not miss]
        decision.message = (f"no variant meets every constraint; closest: {name}, whose {miss.describe(metric)}"
                            + (f"; it also misses {'; '.join(rest)}" if rest
                               else f": {FLAGS[miss.constraint]} {_admitting(miss):g} would admit it"))
        return decision
    fits.sort(key=lambda v: _rank(v, constraints.batch))
    best = decision.chosen = fits[0]
    for v in fits[1:]:
        decision.reasons[v["name"]] = _lost_to(v, best, constraints.batch)
    throughput = figures_at(best, constraints.batch)["throughput_per_s"]
    if constraints.cost_per_hour is not None and throughput:
        decision.cost_per_million = constraints.cost_per_hour / (throughput * 3600) * 1e6
    decision.message = f"chosen: {best['name']}"
    return decision


def _closest(variants: list[dict], found: dict[str, list[Violation]]) -> tuple[str, Violation]:
    """The constraint nearest to being met: the smallest miss among variants that miss only one
    constraint (relaxing it alone admits them); else the variant with the smallest summed miss."""
    single = [(vs[0].relative, name, vs[0]) for name, vs in found.items() if len(vs) == 1]
    if single:
        _, name, miss = min(single, key=lambda t: (t[0], t[1]))
        return name, miss
    name = min(found, key=lambda n: (sum(x.relative for x in found[n]), n))
    return name, min(found[name], key=lambda x: x.relative)


def _admitting(miss: Violation) -> float:
    """The limit, rounded to 4 decimals on the side that still admits the value."""
    scaled = miss.value * 1e4
    return (math.ceil(scaled) if miss.value > miss.limit else math.floor(scaled)) / 1e4


def _lost_to(v: dict, best: dict, batch: int) -> str:
    metric = v.get("main_metric", "metric")
    if v.get("main_value") != best.get("main_value"):
        return f"fits, but {metric} {v['main_value']:.4f} vs {best['main_value']:.4f} for {best['name']}"
    p95, best_p95 = figures_at(v, batch)["p95_ms"], figures_at(best, batch)["p95_ms"]
    if p95 != best_p95:
        return f"fits, ties on {metric}, but p95 {p95:.3g} ms vs {best_p95:.3g} ms for {best['name']}"
    if v["size_bytes"] != best["size_bytes"]:
        return (f"fits, ties on {metric} and p95, but size {v['size_bytes'] / 1e6:.3g} MB vs "
                f"{best['size_bytes'] / 1e6:.3g} MB for {best['name']}")
    return f"fits, ties with {best['name']} on every figure (chosen by name)"


def match_run(run_dir, constraints: Constraints) -> tuple[Decision, Path]:
    """Choose from RUN/variants/variants.json; write deployment.json; DanluError when nothing fits."""
    run = Run(run_dir)
    table_path = run.variants_table
    if not table_path.exists():
        raise DanluError(f"{table_path} not found: run `danlu compress {run.root}` first")
    variants = read_json(table_path)
    if constraints.min_robust_metric is not None:
        variants = _with_robustness(run, variants)
    decision = choose(variants, constraints)
    if decision.chosen is None:
        raise DanluError(decision.message)
    best = decision.chosen
    out = run.deployment_path
    atomic_write_json(out, {
        "variant": best["name"], "path": best.get("path"), "format": best.get("format"),
        "constraints": {k: getattr(constraints, k) for k in ("p95_ms", "max_mb", "min_metric", "min_robust_metric",
                                                             "batch")},
        "rule": "best main metric among the variants meeting every constraint; ties: lower p95, smaller size",
        "main_metric": best.get("main_metric"), "main_value": best.get("main_value"),
        "latency": figures_at(best, constraints.batch), "size_bytes": best["size_bytes"],
        "peak_rss_bytes": best.get("peak_rss_bytes"), "threads": best.get("threads"),
        "metrics": best.get("metrics"), "cost_per_hour": constraints.cost_per_hour,
        "cost_per_million_requests": decision.cost_per_million,
        "others": decision.reasons,
    })
    return decision, out


ROBUSTNESS_FILE = "robustness.json"  # written by `danlu robust` (danlu.trust_commands)


def _with_robustness(run: Run, variants: list[dict]) -> list[dict]:
    """Each variant with `robust_value`: its worst metric in RUN/robustness.json, where it was measured."""
    path = run.root / ROBUSTNESS_FILE
    if not path.exists():
        raise DanluError(f"--min-robust-metric: {path} not found; run `danlu robust {run.root} --variant NAME` "
                         "for the variants first")
    measured = read_json(path).get("variants", {})
    return [{**v, **({"robust_value": measured[v["name"]]} if v["name"] in measured else {})} for v in variants]

"""variants.json and report.md (an accuracy-vs-latency table and chart) for a compressed run.

The chart is a matplotlib Figure drawn by the Agg canvas, as in danlu/report.py: no display, no
pyplot state.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from danlu.run import atomic_write_bytes, atomic_write_json, atomic_write_text

CHART = "accuracy_latency.png"


def write_all(folder: Path, variants: list[dict], context: dict) -> None:
    atomic_write_json(folder / "variants.json", variants)
    png = chart(variants, context)
    atomic_write_bytes(folder / CHART, png)
    atomic_write_text(folder / "report.md", markdown(variants, context))


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.1f}"


def _num(v, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(variants: list[dict], ctx: dict) -> str:
    metric, n = ctx["main_metric"], str(ctx["batch"])
    lines = [
        f"# Compressed variants of {ctx['run']}",
        "",
        f"Measured on the **{ctx['split']}** split ({ctx['examples']:,} examples), {ctx['threads']} thread(s) "
        f"for PyTorch and ONNX Runtime alike. Latency is the time of one call on already-collated real "
        f"examples after warm-up, the variants called in turn on each batch so that they share the machine's "
        f"load: batch 1 over {ctx['latency_examples']:,} sampled examples, batch {n} over the whole split. "
        f"Size counts the network's files (weights, graph, config.json), not the tokenizer "
        f"or preprocessor the variants share. Peak memory: {ctx['memory_method']}; +RSS is that peak "
        f"minus what the process held before loading the variant.",
        "",
        f"| variant | {metric} | Δ vs fp32 | p50 b1 ms | p95 b1 ms | p50 b{n} ms | p95 b{n} ms | ex/s b{n} "
        f"| speed-up b1 | size MB | × smaller | peak RSS MB | +RSS MB | sparsity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        one, big, rel = v["latency"]["1"], v["latency"][n], v.get("vs_baseline", {})
        sparse = _num(v.get("sparsity"), 2)
        lines.append(
            f"| {v['name']} | {_num(v['main_value'])} | {_num(rel.get('metric_delta'), 4)} "
            f"| {one['p50_ms']:.2f} | {one['p95_ms']:.2f} | {big['p50_ms']:.2f} | {big['p95_ms']:.2f} "
            f"| {big['throughput_per_s']:,.0f} | {_num(rel.get('speedup_p50_b1'), 2)} | {_mb(v['size_bytes'])} "
            f"| {_num(rel.get('size_ratio'), 2)} | {_mb(v['peak_rss_bytes'])} | {_mb(v.get('added_rss_bytes'))} "
            f"| {sparse} |")
    lines += ["", f"![{metric} against latency]({CHART})", ""]
    notes = [f"- **{v['name']}**: {v['notes']}" for v in variants if v.get("notes")]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    students = [v for v in variants if v.get("student")]
    if students:
        s = students[0]["student"]
        shape = s["shape"]
        student = (f"The student variants are a {shape['layers']}-layer BERT ({shape['embedding']} wide, "
                   f"{s['parameters']:,} parameters against the run's {s['teacher_parameters']:,}) trained from "
                   f"scratch on the run's soft labels and the true labels ({s['run']}, `student` in "
                   "variants.json); the student reads its input with its own tokenizer.")
    else:
        student = ("A distilled student is made with `--variants student` or a `compress.student` section "
                   "in the recipe.")
    lines += [
        "Pruned variants were fine-tuned for a few steps on the train split afterwards (`recovery` in "
        "variants.json). Magnitude pruning leaves dense weights: it shrinks neither the files nor the "
        "latency, only the non-zero count. " + student,
        "",
        "Choose one with `danlu match RUN --p95-ms … --max-mb … --min-metric …`.",
        "",
    ]
    return "\n".join(lines)


def chart(variants: list[dict], ctx: dict) -> bytes:
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    biggest = max(w["size_bytes"] for w in variants) or 1
    for i, v in enumerate(variants):
        x, y = v["latency"]["1"]["p50_ms"], v["main_value"]
        if y is None:
            continue
        ax.scatter([x], [y], s=30 + 200 * v["size_bytes"] / biggest, alpha=0.7)
        # Variants often sit on top of each other (same accuracy, similar latency): stagger the labels.
        ax.annotate(v["name"], (x, y), textcoords="offset points", xytext=(6, 10 * (i % 3) - 8), fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.15)  # room for the labels
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set(xlabel="p50 latency at batch 1 (ms, log scale)", ylabel=f"{ctx['main_metric']} ({ctx['split']})",
           title="Quality against latency (marker area ~ size on disk)")
    ax.grid(alpha=0.3)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()

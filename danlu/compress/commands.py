"""The `compress`, `match` and `export` commands; `register(app)` adds them to danlu's Typer app.

Parsing and printing only; the work is in danlu.compress.pipeline, danlu.match and
danlu.compress.export. Imports are inside the commands so that `danlu --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from danlu.compress import DEFAULT_VARIANTS
from danlu.console import friendly as _friendly
from danlu.console import out, stage

def compress(
    run: Path = typer.Argument(..., help="a finished run directory"),
    variants: Optional[str] = typer.Option(
        None, "--variants", show_default=False,
        help="comma-separated: onnx-fp32, onnx-int8, torch-int8, prune-magnitude-<s>, prune-structured-<s>, "
             "student (a distilled student, shaped by the recipe's compress.student, else a tiny BERT), or a "
             "chain such as prune-structured-0.3+onnx-int8 or student+onnx-int8; pytorch-fp32 (the baseline) "
             f"is always measured (default: {','.join(DEFAULT_VARIANTS)}, and student when the recipe has a "
             "compress.student section)"),
    batch: int = typer.Option(32, "--batch", help="the larger batch size measured (besides 1)"),
    recovery_steps: int = typer.Option(200, "--recovery-steps", help="fine-tune steps after pruning (0: none)"),
    threads: int = typer.Option(1, "--threads", help="threads for PyTorch and ONNX Runtime alike while measuring"),
    latency_examples: int = typer.Option(300, "--latency-examples", help="examples timed one by one at batch 1"),
):
    """Make deployment variants of a run's model and measure each on its test split."""
    from danlu.compress.pipeline import compress_run

    with _friendly():
        names = variants.split(",") if variants is not None else None
        figures = compress_run(run, names, batch=batch, recovery_steps=recovery_steps, threads=threads,
                               latency_examples=latency_examples,
                               say=stage)
        table = Table("variant", figures[0]["main_metric"], "p50 b1 ms", "p95 b1 ms", f"p95 b{batch} ms",
                      f"ex/s b{batch}", "size MB", "peak RSS MB")
        for v in figures:
            one, big = v["latency"]["1"], v["latency"][str(batch)]
            value = "–" if v["main_value"] is None else f"{v['main_value']:.4f}"
            table.add_row(v["name"], value, f"{one['p50_ms']:.2f}", f"{one['p95_ms']:.2f}",
                          f"{big['p95_ms']:.2f}", f"{big['throughput_per_s']:,.0f}", f"{v['size_bytes'] / 1e6:.1f}",
                          f"{v['peak_rss_bytes'] / 1e6:.0f}")
        out.print(table)
        from danlu.run import Run

        out.print(f"report: {escape(str(Run(run).variants / 'report.md'))}", highlight=False)


def match(
    run: Path = typer.Argument(..., help="a run directory compressed with `danlu compress`"),
    p95_ms: Optional[float] = typer.Option(None, "--p95-ms", help="largest acceptable p95 latency (ms)"),
    max_mb: Optional[float] = typer.Option(None, "--max-mb", help="largest acceptable size on disk (MB = 10^6 B)"),
    min_metric: Optional[float] = typer.Option(None, "--min-metric",
                                               help="the main metric must be at least this good"),
    cost_per_hour: float = typer.Option(0.5, "--cost-per-hour", help="price of the serving machine per hour"),
    batch: int = typer.Option(1, "--batch", help="the batch size the latency and throughput refer to"),
    min_robust_metric: Optional[float] = typer.Option(
        None, "--min-robust-metric", help="the worst metric under `danlu robust`'s perturbations must be at least this good"),
):
    """Pick the best variant meeting every constraint and write variants/deployment.json."""
    from danlu.match import Constraints, match_run

    with _friendly():
        decision, path = match_run(run, Constraints(p95_ms, max_mb, min_metric, cost_per_hour, batch,
                                                                min_robust_metric))
        best = decision.chosen
        lat = best["latency"][str(batch)]
        out.print(f"[green]chosen:[/] {escape(best['name'])}: {best['main_metric']} {best['main_value']:.4f}, "
                  f"p95 {lat['p95_ms']:.2f} ms at batch {batch}, {best['size_bytes'] / 1e6:.1f} MB, "
                  f"{lat['throughput_per_s']:,.0f} examples/s", highlight=False, soft_wrap=True)
        if decision.cost_per_million is not None:
            out.print(f"cost: {decision.cost_per_million:.4g} per million requests at {cost_per_hour:g}/hour",
                      highlight=False)
        for name, why in decision.reasons.items():
            out.print(f"  {escape(name)}: {escape(why)}", highlight=False, soft_wrap=True)
        out.print(f"wrote {escape(str(path))}", highlight=False)


def export(
    run: Path = typer.Argument(..., help="a finished run directory"),
    fmt: str = typer.Option(..., "--format", help="onnx | safetensors"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="folder (default RUN/export/<format>)"),
    variant: Optional[str] = typer.Option(None, "--variant", help="export this variant instead (e.g. onnx-int8)"),
):
    """Write the model as ONNX or safetensors, with its tokenizer / processor files beside it."""
    from danlu.compress.export import export_run

    with _friendly():
        files = export_run(run, fmt, output, variant)
        typer.echo(json.dumps({"format": fmt, "files": [str(p) for p in files]}, indent=2))  # machine-readable


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)
    app.command("match")(match)
    app.command("export")(export)

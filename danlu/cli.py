"""The `danlu` command: one verb per stage; parsing only, then a call into the stage."""

from __future__ import annotations

import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from danlu import registry
from danlu.console import err, friendly, out
from danlu.console import stage as _stage
from danlu.errors import DanluError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="danlu (丹炉): from raw data to a checked, trained, evaluated and reported model.")


def _task_help() -> str:
    return "one of the registered tasks: " + "; ".join(f"{s.name} ({s.summary})" for s in registry.specs())


def _templates() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("danlu.templates").iterdir()
                  if p.name.endswith(".yaml"))


@app.command(help="Write a commented starter recipe for TASK, or an industry template (--template NAME).\n\n"
             "Tasks:\n\n" + "\n\n".join(f"{s.name}: {s.summary}" for s in registry.specs()))
def init(task: Optional[str] = typer.Argument(None, help=_task_help()),
         template: Optional[str] = typer.Option(None, "--template", help="an industry template instead: "
                                                + ", ".join(_templates())),
         output: Path = typer.Option(None, "-o", "--output", help="where to write (default: <task>.yaml)")):
    from danlu.recipe.starters import starter_text

    with friendly():
        if (task is None) == (template is None):
            raise DanluError("give a task (danlu init text-classification) or a template (danlu init --template "
                             f"credit_risk); templates: {', '.join(_templates())}")
        if template is not None:
            if template not in _templates():
                import difflib

                close = difflib.get_close_matches(template, _templates(), n=1)
                raise DanluError(f"no template '{template}'" + (f"; did you mean '{close[0]}'?" if close else "")
                                 + f" Templates: {', '.join(_templates())}")
            text = resources.files("danlu.templates").joinpath(f"{template}.yaml").read_text(encoding="utf-8")
        else:
            text = starter_text(registry.get(task).name)
        target = output or Path(f"{template or task}.yaml")
        if target.exists():
            raise DanluError(f"{target} exists; choose another -o")
        target.write_text(text, encoding="utf-8")
        out.print(f"wrote {escape(str(target))}: edit it, then `danlu check {escape(str(target))}` and "
                  f"`danlu train {escape(str(target))}`", highlight=False)


@app.command()
def check(recipe: Path, overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
          output: Path = typer.Option(None, "-o", "--output", help="also save the data report in this folder")):
    """Load the data and run the quality gate (exit 1 when it fails with on_fail: stop)."""
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe
    from danlu.run import Run

    with friendly():
        rec = load_recipe(recipe, overrides or [])
        run = None
        if output:
            output.mkdir(parents=True, exist_ok=True)
            run = Run(output)
        splits, report, warnings = check_data(rec, run)
        out.print(report.to_markdown(), highlight=False, markup=False)
        for w in warnings:
            err.print(f"[yellow]warning:[/] {escape(str(w))}", highlight=False)
        # The report's counts: the rows each split scores (a forecaster's frames also hold context rows).
        sizes = ", ".join(f"{k}: {c.get('kept', len(splits.frames[k])):,}" for k, c in report.counts.items())
        verdict = "[yellow]data check passed with warnings[/]" if warnings else "[green]data check passed[/]"
        out.print(f"{verdict} ({sizes})", highlight=False)


@app.command()
def train(recipe: Path, overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
          output: Path = typer.Option(None, "-o", "--output", help="run directory (default runs/<name>-<time>)"),
          runs_root: Path = typer.Option(Path("runs"), "--runs-root", help="where default run directories go"),
          estimate: bool = typer.Option(False, "--estimate", help="estimate memory and time first (a probe of a "
                                        "few steps); the report shows them beside the measured figures"),
          nproc: int = typer.Option(1, "--nproc", min=1, help="train on N processes of this machine (torchrun; "
                                    "the recipe's distributed: section says how); train.batch_size stays the "
                                    "global batch")):
    """Check the data, train, evaluate, save the model and write the report."""
    from danlu.pipeline import train as run_training
    from danlu.recipe import load_recipe
    from danlu.train.distributed import is_main

    with friendly():
        rec = load_recipe(recipe, overrides or [])
        if nproc > 1:
            from danlu.pipeline.launch import launch_training

            run = launch_training(rec, recipe, overrides or [], output, runs_root, nproc, say=_stage)
        else:
            run = run_training(rec, output, runs_root, on_stage=_stage, estimate=estimate)
        if not is_main():
            return  # the main process prints the results
        _print_results(run, rec)


@app.command("estimate")
def estimate_command(recipe: Path, overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
                     device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or an accelerator's "
                                                          "name (T4, A100-80GB, H100...): does it fit?"),
                     cost_per_hour: Optional[float] = typer.Option(None, "--cost-per-hour", min=0,
                                                                   help="the price of an hour of the device"),
                     as_json: bool = typer.Option(False, "--json", help="print the figures as one JSON object")):
    """Parameters, memory per device (weights, gradients, optimizer state, activations), whether it fits,
    time per step and epoch from a short probe on this machine, and the run's cost; before training."""
    from danlu.recipe import load_recipe
    from danlu.scale.estimate import device_named, estimate_recipe
    from danlu.train.estimate import rows

    with friendly():
        rec = load_recipe(recipe, overrides or [])
        target = device_named(device)
        found = estimate_recipe(rec, say=None if as_json else _stage)
        if as_json:
            print(json.dumps({**found.to_dict(), "device": target.name, "device_memory": target.memory,
                              "fits": found.memory <= target.memory}))
            return
        table = Table("estimate", escape(rec.name), box=None)
        for what, value in rows(found, target, cost_per_hour):
            table.add_row(escape(what), escape(value))
        out.print(table)


@app.command()
def tune(recipe: Path, overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
         trials: Optional[int] = typer.Option(None, "--trials", min=1, help="the study's total of finished trials "
                                              "(default tune.trials)"),
         storage: Optional[str] = typer.Option(None, "--storage", help="a database URL shared by every process "
                                               "(default: SQLite in RUNS_ROOT/tune-STUDY/study.db)"),
         study: Optional[str] = typer.Option(None, "--study", help="the study's name (default: the recipe's)"),
         runs_root: Path = typer.Option(Path("runs"), "--runs-root", help="where the trials' run directories go")):
    """Search the recipe's tune: space with Optuna; write the best trial as a complete recipe (best.yaml)."""
    from danlu.scale.tune import tune as run_tuning
    from danlu.train import silence_transformers

    with friendly():
        silence_transformers()
        result = run_tuning(recipe, overrides or [], trials, storage, study, runs_root, say=_stage)
        out.print(f"best recipe: {escape(str(result.best_recipe))}", highlight=False)
        out.print(f"report: {escape(str(result.report))}", highlight=False)


@app.command("eval")
def evaluate(run: Path, data: Path = typer.Option(..., "--data", help="a labelled file with the run's columns")):
    """Evaluate a finished run on new labelled data."""
    from danlu.evaluate.metrics import scalar_metrics
    from danlu.pipeline import evaluate_run

    with friendly():
        metrics = evaluate_run(run, data)
        _metrics_table({escape(data.name): metrics}, None)
        print(json.dumps(scalar_metrics(metrics)))


@app.command()
def predict(run: Path, input: str = typer.Argument(..., help="a string, an image path, or a file of rows"),
            batch_size: int = typer.Option(64, "--batch-size")):
    """Print one JSON line of prediction per input."""
    from danlu.predict import predict_input

    with friendly():
        for line in predict_input(run, input, batch_size):
            print(json.dumps(line, ensure_ascii=False))


@app.command()
def runs(root: Path = typer.Option(Path("runs"), "--root"),
         tracker: bool = typer.Option(False, "--tracker", help="also show where each run is tracked (track:)")):
    """List runs with their status and main metric."""
    from danlu.run import Run

    table = Table(box=None)
    for column in ("run", "task", "status", "main metric", "updated") + (("tracker",) if tracker else ()):
        table.add_column(column, no_wrap=True)
    interrupted = False
    for path in sorted(p for p in root.glob("*") if (p / "state.json").exists()):
        run = Run(path)
        state, metrics, status = run.state(), run.metrics(), run.status()
        interrupted |= status == "interrupted"
        table.add_row(escape(str(path)), escape(state.get("task", "?")), status,
                      escape(_main(metrics, state.get("main_metric"))), state.get("updated", ""),
                      *((escape((state.get("tracker") or {}).get("link", "-")),) if tracker else ()))
    Console(width=400).print(table, highlight=False)  # one line per run, however narrow the terminal
    if interrupted:
        out.print("an interrupted run resumes from its last checkpoint: run the same `danlu train` command "
                  "again (with -o RUN if it was given one)", highlight=False)


@app.command()
def quickstart(output: Path = typer.Option(None, "-o", "--output")):
    """Train the quickstart recipe (handwritten digits, bundled with scikit-learn)."""
    from danlu.pipeline import train as run_training
    from danlu.recipe import load_recipe

    with friendly():
        path = resources.files("danlu.starters").joinpath("quickstart.yaml")
        with resources.as_file(path) as recipe_path:
            rec = load_recipe(recipe_path)
        run = run_training(rec, output, on_stage=_stage)
        _print_results(run, rec)


def _main(metrics: dict, name: str | None) -> str:
    """The run's main metric on its test split (else validation, else cross-validation)."""
    for split in ("test", "validation"):
        values = metrics.get(split) or {}
        if name in values:
            return f"{split} {name} {values[name]:.4f}"
    stats = (metrics.get("cross_validation") or {}).get(name)
    return f"cv {name} {stats['mean']:.4f}" if stats else "-"


def _metrics_table(metrics: dict, main: str | None) -> None:
    from danlu.evaluate.metrics import scalar_metrics

    scalars = {split: scalar_metrics(m) for split, m in metrics.items() if split != "cross_validation"}
    names = sorted({k for m in scalars.values() for k in m if k != "n"}, key=lambda k: (k != main, k))
    table = Table("metric", *scalars.keys())
    for name in names:
        table.add_row(name, *(f"{m[name]:.4f}" if name in m else "" for m in scalars.values()))
    table.add_row("n", *(str(m.get("n", "")) for m in scalars.values()))
    out.print(table)
    for name, stats in (metrics.get("cross_validation") or {}).items():
        out.print(f"cross-validation {name}: {stats['mean']:.4f} ± {stats['std']:.4f}")


def _baselines(metrics: dict, main: str) -> None:
    for split in ("validation", "test"):
        found = (metrics.get("baselines") or {}).get(split)
        model = (metrics.get(split) or {}).get(main)
        if found and model is not None:
            others = ", ".join(f"{name} {m[main]:.4f}" for name, m in found.items() if m.get(main) is not None)
            out.print(f"baselines on {split} ({main}): {others}; the model: {model:.4f}", highlight=False)
            return


def _print_results(run, recipe) -> None:
    from danlu.pipeline.baselines import compare
    from danlu.tasks import new_task

    metrics = run.metrics()
    main = recipe.main_metric
    from danlu.run import split_metrics

    _metrics_table({**split_metrics(metrics), "cross_validation": metrics.get("cross_validation")}, main)
    if metrics.get("decision"):
        d = metrics["decision"]
        out.print(f"decision: predict {escape(str(d['class']))} when its probability >= {d['threshold']:.4f} "
                  f"({escape(d['chosen_by'])}); predict and serve apply it", highlight=False)
    _baselines(metrics, main)
    for warning in compare(metrics, metrics.get("baselines") or {}, main, recipe.spec,
                           new_task(recipe.task).baseline_names()):
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    out.print(f"model:  {escape(str(run.model_dir))}", highlight=False)
    out.print(f"report: {escape(str(run.report_md))} (and report.html)", highlight=False)


def _register_stage_commands() -> None:
    # Each later stage keeps its commands beside its code; importing them loads no torch.
    from danlu.compress.commands import register as compress_commands
    from danlu.generate_commands import register as generate_commands
    from danlu.serve.commands import register as serve_commands
    from danlu.studio.commands import register as studio_commands
    from danlu.trust_commands import register as trust_commands

    compress_commands(app)
    serve_commands(app)
    generate_commands(app)
    studio_commands(app)
    trust_commands(app)


_register_stage_commands()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="danlu")


if __name__ == "__main__":
    sys.exit(main())

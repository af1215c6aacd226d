"""`danlu robust RUN` and `danlu explain RUN INPUT`: robustness and explanations for a finished run.

The split a robustness table measures is read again through the run's own recipe (its data stage,
quality gate and data.limit included), so it is the split the run was evaluated on. Results land in the
run folder: robustness.json (+ .png, the curves), metrics.json["robustness"], and explanations under
explain/ (JSON, HTML for text, PNG maps for images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from danlu.console import friendly, out
from danlu.errors import DanluError
from danlu.match import ROBUSTNESS_FILE


def robust_run(run_dir, split: str = "test", strengths=(0.0, 0.05, 0.1, 0.2), perturbations=None, attack=(),
               limit: int | None = 1000, seed: int = 0, variants=(), say=lambda msg: None) -> dict:
    from danlu.compress import BASELINE
    from danlu.pipeline.stages import check_data
    from danlu.recipe import load_recipe
    from danlu.recipe.sections import RobustnessConfig
    from danlu.run import Run, atomic_write_bytes, atomic_write_json, read_json
    from danlu.tasks import load_task
    from danlu.trust.robustness import check_strengths, curves_png, measure_split

    from danlu.train import silence_transformers

    silence_transformers()  # no weight-loading bars among the table's lines
    run = Run(run_dir)
    model_dir = run.require_model()
    check_strengths(strengths, "--strength")
    try:
        config = RobustnessConfig(split=split, strengths=list(strengths), perturbations=perturbations or None,
                                  attack=list(attack), limit=limit, seed=seed)
    except ValueError as exc:
        raise DanluError(f"danlu robust: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    say(f"data: {split} of {run.root}")
    splits, _, _ = check_data(recipe)
    from danlu.inference import TorchForward

    task, model = load_task(model_dir)
    result = measure_split(task, TorchForward(model), splits.frames, splits.features, config, say)
    result["variants"] = {BASELINE: result["worst"]}
    for name in variants:
        from danlu.compress.runtime import load_variant

        variant = load_variant(run.root, name, task=task)
        say(f"variant {name}")
        measured = measure_split(variant.task, variant.forward, splits.frames, splits.features,
                                 config.model_copy(update={"attack": []}), say)
        result["variants"][name] = measured["worst"]
    atomic_write_json(run.root / ROBUSTNESS_FILE, result)
    metrics = read_json(run.metrics_path) if run.metrics_path.exists() else {}
    atomic_write_json(run.metrics_path, {**metrics, "robustness": result})
    atomic_write_bytes(run.root / "robustness.png", curves_png(result))
    return result


def explain_run(run_dir, value: str, variant: str | None = None, output: Path | None = None) -> tuple[list, list]:
    """(explanations, files written): attributions for the rows of INPUT, as `danlu predict` reads it."""
    from danlu.predict import _rows
    from danlu.run import Run, atomic_write_bytes, atomic_write_json, atomic_write_text
    from danlu.tasks import load_task
    from danlu.train import silence_transformers
    from danlu.trust.explain import explain_frame, map_png, require_gradients, tokens_html

    silence_transformers()
    run = Run(run_dir)
    if variant is not None:
        from danlu.compress.runtime import load_variant

        found = load_variant(run.root, variant)
        task, model = found.task, found.forward.model
    else:
        task, model = load_task(run.require_model())
    require_gradients(task, model)
    frame = _rows(run, task, value)
    explanations = explain_frame(task, model, frame)
    folder = Path(output) if output else run.root / "explain"
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "explanations.json"]
    atomic_write_json(written[0], explanations)
    if "text" in frame.columns:
        written.append(folder / "explanations.html")
        atomic_write_text(written[-1], tokens_html(explanations, frame["text"].astype(str).tolist()))
    for i, item in enumerate(explanations):
        if "map" in item:
            written.append(folder / f"map-{i}.png")
            atomic_write_bytes(written[-1], map_png(item))
    return explanations, written


def robust(run: Path = typer.Argument(..., help="a finished run directory"),
           split: str = typer.Option("test", "--split", help="validation | test"),
           strength: Optional[List[float]] = typer.Option(None, "--strength",
                                                          help="a strength in [0, 1]; repeat for several"),
           perturbation: Optional[List[str]] = typer.Option(None, "--perturbation", help="repeat; default: all"),
           attack: Optional[List[float]] = typer.Option(None, "--attack", help="an FGSM/PGD epsilon; repeat"),
           limit: int = typer.Option(1000, "--limit", help="rows measured (a seeded sample)"),
           variant: Optional[List[str]] = typer.Option(None, "--variant",
                                                       help="also measure this compressed variant; repeat")):
    """Measure the main metric under perturbed inputs and gradient attacks; writes RUN/robustness.json."""
    from danlu.trust.robustness import table_lines

    with friendly():
        result = robust_run(run, split, strength or [0.0, 0.05, 0.1, 0.2], perturbation, attack or [], limit,
                            variants=variant or (), say=lambda m: out.print(escape(m), highlight=False))
        for line in table_lines(result):
            out.print(escape(line), highlight=False, soft_wrap=True)


def explain(run: Path = typer.Argument(..., help="a finished run directory"),
            input: str = typer.Argument(..., help="a string, an image path, or a file of rows"),
            variant: Optional[str] = typer.Option(None, "--variant", help="a compressed variant instead"),
            output: Optional[Path] = typer.Option(None, "-o", "--output", help="folder (default RUN/explain)")):
    """Integrated Gradients attributions per input: JSON, HTML for text, PNG maps for images."""
    with friendly():
        explanations, written = explain_run(run, input, variant, output)
        for item in explanations:
            print(json.dumps(item if "map" not in item else {k: v for k, v in item.items() if k != "map"},
                             ensure_ascii=False))
        for path in written:
            out.print(f"wrote {escape(str(path))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("robust")(robust)
    app.command("explain")(explain)

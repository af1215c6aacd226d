"""`danlu generate RUN "prompt"` (text) or `danlu generate RUN --n 64 [--label 3]` (images): registered on
the CLI app by `register(app)`. Which one a run does is its task's capability in the registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from danlu.console import friendly
from danlu.errors import DanluError

DEFAULT_IMAGES = 64


def register(app: typer.Typer) -> None:
    @app.command()
    def generate(
        run: Path = typer.Argument(..., help="a finished run whose task writes text (or its model folder)"),
        prompt: str = typer.Argument("", help="the text to continue; empty starts a new document"),
        max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1),
        temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="0 = always the likeliest token"),
        top_k: int = typer.Option(50, "--top-k", min=0, help="sample among the k likeliest tokens (0 = all)"),
        top_p: float = typer.Option(0.95, "--top-p", min=0.0, max=1.0, help="nucleus sampling (1 = off)"),
        seed: int = typer.Option(0, "--seed"),
        stream: bool = typer.Option(True, "--stream/--no-stream", help="print tokens as they are sampled"),
        n: Optional[int] = typer.Option(None, "--n", min=1, help=f"images to draw (runs that draw images; "
                                                                f"default {DEFAULT_IMAGES})"),
        label: Optional[str] = typer.Option(None, "--label", help="the class to draw (a class-conditional GAN)"),
        out: Optional[Path] = typer.Option(None, "--out", help="where the images go (default RUN/generated)"),
    ):
        """Continue PROMPT with text sampled from a run whose task writes text (causal-lm), printed as it comes;
        or, for a run whose task draws images (image-generation), write --n images and their grid as PNGs."""
        from danlu.predict import generate_text
        from danlu.train import silence_transformers

        silence_transformers()  # only the text goes to the terminal: no weight-loading bars or advice
        with friendly():
            if _draws_images(run):
                if prompt:
                    raise DanluError(f"{run} draws images: it takes no prompt (--n, --label, --seed, --out)")
                grid, count = draw_images(run, n or DEFAULT_IMAGES, label, seed, out)
                typer.echo(f"{count} images and their grid: {grid}")
                return
            if n is not None or label is not None or out is not None:
                raise DanluError(f"{run}: --n, --label and --out are for runs that draw images; this one writes text")
            sys.stdout.write(prompt)
            for piece in generate_text(run, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                       top_k=top_k or None, top_p=top_p, seed=seed, stream=stream):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")


def _model_dir(run: Path) -> Path:
    from danlu.run import Run

    return run if (run / "danlu.json").exists() else Run(run).require_model()


def _draws_images(run: Path) -> bool:
    from danlu import registry
    from danlu.tasks.base import read_meta

    return registry.get(read_meta(_model_dir(run))["task"]).capabilities.generate_images


def draw_images(run: Path, n: int, label: str | None, seed: int, out: Path | None) -> tuple[Path, int]:
    """`n` images from the run's model as out/0000.png ... (the label in the name when drawn for one) and
    out/grid.png; returns the grid's path and the count."""
    import io

    from PIL import Image

    from danlu.report import slug
    from danlu.run import atomic_write_bytes
    from danlu.tasks import load_task

    model_dir = _model_dir(run)
    task, model = load_task(model_dir)
    images, labels = task.generate_images(model, n, label=label, seed=seed)
    out = out or model_dir.parent / "generated"

    def png(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    for i, array in enumerate(images):
        name = f"{i:04d}" + (f"_{slug(str(labels[i]))}" if labels is not None else "")
        atomic_write_bytes(out / f"{name}.png", png(Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)))
    grid = out / "grid.png"
    atomic_write_bytes(grid, png(task.image_grid(images)))
    return grid, len(images)

"""`danlu generate RUN "prompt"`: registered on the CLI app by `register(app)`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from danlu.console import friendly


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
    ):
        """Continue PROMPT with text sampled from a run whose task writes text (causal-lm), printed as it comes."""
        from danlu.predict import generate_text
        from danlu.train import silence_transformers

        silence_transformers()  # only the text goes to the terminal: no weight-loading bars or advice
        with friendly():
            sys.stdout.write(prompt)
            for piece in generate_text(run, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                       top_k=top_k or None, top_p=top_p, seed=seed, stream=stream):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")

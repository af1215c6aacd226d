"""`danlu generate RUN "prompt"`: registered on the CLI app by `register(app)`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def generate(
        run: Path = typer.Argument(..., help="a finished causal-lm run (or its model folder)"),
        prompt: str = typer.Argument("", help="the text to continue; empty starts a new document"),
        max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1),
        temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="0 = always the likeliest token"),
        top_k: int = typer.Option(50, "--top-k", min=0, help="sample among the k likeliest tokens (0 = all)"),
        top_p: float = typer.Option(0.95, "--top-p", min=0.0, max=1.0, help="nucleus sampling (1 = off)"),
        seed: int = typer.Option(0, "--seed"),
        stream: bool = typer.Option(True, "--stream/--no-stream", help="print tokens as they are sampled"),
    ):
        """Continue PROMPT with text sampled from a causal-lm run, printed as it comes."""
        import transformers

        from danlu.cli import friendly  # imported here: cli imports this module to register it
        from danlu.generate import generate as generate_text

        # Only the text goes to the terminal: no weight-loading bars or generation advice.
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        with friendly():
            sys.stdout.write(prompt)
            for piece in generate_text(run, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                       top_k=top_k or None, top_p=top_p, seed=seed, stream=stream):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")

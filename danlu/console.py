"""What every command prints through: the consoles, and `friendly()`, which turns a DanluError into
one clear message and exit 1. User text (file names, column names, values) is printed exactly as it
is: rich markup is never read out of it."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from danlu.errors import DanluError

out = Console()
err = Console(stderr=True)


@contextmanager
def friendly():
    """A DanluError is the user's to fix: one clear message, exit 1, no traceback."""
    try:
        yield
    except DanluError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume from the last checkpoint")
        raise typer.Exit(130) from None


def stage(message: str) -> None:
    out.print(f"[cyan]»[/] {escape(message)}", highlight=False)

"""The `studio` command, added to danlu's Typer app by `register(app)`.

Heavy imports (fastapi, uvicorn, and torch once a playground loads a model) happen inside the command:
every other `danlu` verb imports this module too.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from danlu.errors import DanluError


def register(app: typer.Typer) -> None:
    app.command("studio")(studio)


def studio(runs: Path = typer.Option(Path("runs"), "--runs", help="the runs folder to show"),
           host: str = typer.Option("127.0.0.1", "--host", help="address to bind; anything but localhost "
                                    "needs DANLU_API_KEY"),
           port: int = typer.Option(8765, "--port", min=0, max=65535),
           log_level: str = typer.Option("warning", "--log-level")):
    """A local web dashboard over a runs folder: runs, compare, live training, variants, a playground.

    Binds to 127.0.0.1. With --host 0.0.0.0 (or any address other machines reach) it needs the key in
    DANLU_API_KEY, as `danlu serve` does, and asks every request for it.
    """
    # The playground loads models into this process: torch's OpenMP workers should wait passively, as
    # under `danlu serve` (danlu/serve/commands.py says why).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from danlu.studio.access import is_local

        key = os.environ.get("DANLU_API_KEY") or None
        local = is_local(host)
        if not local and key is None:
            raise DanluError(f"refusing to serve the studio on {host} without a key: other machines could read "
                             "every run. Set DANLU_API_KEY (browsers then log in with it once), or bind to "
                             "127.0.0.1")
        if not runs.is_dir():
            raise DanluError(f"{runs}: no runs folder here; train a run first (danlu quickstart) or pass --runs DIR")
        from danlu.serve import server
        from danlu.serve.app import ServeSettings

        try:
            from danlu.studio.app import create_studio
        except ModuleNotFoundError as exc:  # jinja2 / plotly come with the extra
            raise DanluError(f"the studio needs {exc.name}: pip install 'danlu[studio]'") from None

        app = create_studio(runs, api_key=key, local_only=local)
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        typer.echo(f"danlu studio: {runs.resolve()} on http://{shown}:{port}"
                   + (" (API key required: DANLU_API_KEY)" if key else ""), err=True)
        server.serve(app, ServeSettings(host=host, port=port, log_level=log_level, access_log=False,
                                        graceful_timeout_s=5.0))
    except DanluError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

"""The `serve` command, added to danlu's Typer app by `register(app)`.

Heavy imports (torch, fastapi, uvicorn) happen inside the command: every other `danlu` verb
imports this module too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from danlu.errors import DanluError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(run: Path = typer.Argument(..., help="a finished run directory"),
          variant: Optional[str] = typer.Option(None, "--variant", help="serve this compressed variant (danlu "
                                                "compress); default: the one `danlu match` chose, if any, "
                                                "else the PyTorch model (pytorch-fp32)"),
          host: str = typer.Option("127.0.0.1", "--host", help="address to bind; 0.0.0.0 exposes it to the network"),
          port: int = typer.Option(8000, "--port", min=0, max=65535),
          max_batch: int = typer.Option(32, "--max-batch", min=1, help="most inputs in one model call"),
          max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0,
                                            help="how long a batch waits for company"),
          max_queue: int = typer.Option(256, "--max-queue", min=1,
                                        help="most inputs waiting; beyond it requests get 503"),
          max_body_kb: int = typer.Option(1024, "--max-body-kb", min=1, help="larger bodies get 413"),
          max_header_kb: int = typer.Option(16, "--max-header-kb", min=1,
                                            help="larger request headers (all together) get 431"),
          max_headers: int = typer.Option(100, "--max-headers", min=1, help="more request headers get 431"),
          body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.001,
                                             help="seconds a request body may take to arrive; later: 408"),
          workers_threads: int = typer.Option(1, "--workers-threads", min=1,
                                              help="model calls that may run at once"),
          torch_threads: int = typer.Option(0, "--torch-threads", min=0,
                                            help="intra-op threads per model call; 0: CPUs / workers-threads"),
          precision: str = typer.Option("fp32", "--precision", help="fp32, or bf16 (autocast: faster on "
                                        "CPUs with native bf16, scores move by ~1e-2)"),
          graceful_timeout: float = typer.Option(30.0, "--graceful-timeout", min=0,
                                                 help="seconds open requests get to finish on SIGTERM"),
          log_level: str = typer.Option("info", "--log-level"),
          access_log: bool = typer.Option(True, "--access-log/--no-access-log")):
    """Serve a finished run over HTTP: POST /v1/predict, GET /v1/models, /healthz, /readyz, /metrics.

    Set DANLU_API_KEY to require 'Authorization: Bearer <key>' on /v1 endpoints.
    """
    # Spinning OpenMP workers steal the CPU from the event loop and, on a busy machine, from each
    # other (measured on a shared 2-core box: a forward pass 12 ms passive, 100-1000 ms spinning).
    # OpenMP reads this once, when torch loads: so here, before anything imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from danlu.serve import server
        from danlu.serve.app import ServeSettings, create_app
        from danlu.serve.runner import load_runner

        settings = ServeSettings.from_env(host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                          max_queue=max_queue, max_body_kb=max_body_kb,
                                          max_header_kb=max_header_kb, max_headers=max_headers,
                                          body_timeout_s=body_timeout,
                                          workers_threads=workers_threads, graceful_timeout_s=graceful_timeout,
                                          log_level=log_level, access_log=access_log)
        if precision not in ("fp32", "bf16"):
            raise DanluError(f"--precision {precision}: use fp32 or bf16")
        # Each model call gets its share of the CPUs: with more threads than cores, concurrent
        # calls' OpenMP workers wait on each other.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = torch_threads or max(1, cpus // workers_threads)
        # Loaded before binding: a bad run fails here, not on the first request.
        runner = load_runner(run, variant, precision=precision, threads=threads)
        info = runner.info
        served = f", variant {info.variant}" if info.variant else ""
        if info.chosen_by:
            from danlu.run import Run

            served += f" (chosen by `{info.chosen_by}`: {Run(run).deployment_path})"
        typer.echo(f"serving {info.name} ({info.task}{served}) "
                   f"on http://{host}:{port}" + (" (API key required)" if settings.api_key else ""), err=True)
        server.serve(create_app(runner, settings), settings)
    except DanluError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

"""`danlu serve`: an HTTP server for a finished run.

Layout (each piece replaceable on its own):
    runner.py     TaskRunner: the run's task and a Forward (the PyTorch model, or a compressed
                  variant through danlu.compress.runtime) behind `predict(frame) -> list[dict]`
    batcher.py    MicroBatcher: groups concurrent requests into one model call
    schemas.py    request and response bodies, from the served task's own schemas; 422s that JSON can carry
    middleware.py header limits (431), body size and time limits (413, 408), Prometheus request metrics
                  (pure ASGI)
    metrics.py    the Prometheus registry
    app.py        create_app(runner, settings) -> FastAPI; optional route modules plug in here
    server.py     uvicorn with graceful SIGTERM
    commands.py   register(typer_app): the `serve` command

Kept free of imports here: the CLI imports danlu.serve.commands on every `danlu` call.
"""

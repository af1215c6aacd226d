"""`danlu serve`: an HTTP server for a finished run.

Layout (each piece replaceable on its own):
    runner.py     Runner: a loaded model behind `predict(frame) -> list[dict]` (PyTorch now,
                  compressed variants through danlu.compress.load_variant)
    batcher.py    MicroBatcher: groups concurrent requests into one model call
    schemas.py    request bodies per task, validated by pydantic
    middleware.py body-size limit and Prometheus request metrics (pure ASGI)
    metrics.py    the Prometheus registry
    app.py        create_app(runner, settings) -> FastAPI; optional route modules plug in here
    server.py     uvicorn with graceful SIGTERM
    commands.py   register(typer_app): the `serve` command

Kept free of imports here: the CLI imports danlu.serve.commands on every `danlu` call.
"""

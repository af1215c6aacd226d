"""`danlu studio`: a local web dashboard over a runs folder.

Layout (server-rendered pages from FastAPI + Jinja2; charts drawn by Plotly's JavaScript bundle, served
from the installed `plotly` package, so no page needs the internet):
    folder.py      RunsFolder: run names -> run directories and files inside them, refusing anything that
                   resolves outside the runs folder (`..`, encoded slashes, symlinks)
    summary.py     one row per run for the runs page (task, status, main metric, baseline, duration, size),
                   cached by file times; sorting and filtering
    curves.py      loss and metric curves from history.json; a training run's progress
    recipes.py     recipes flattened to dotted keys, and the keys where runs differ
    variants.py    variants.json as chart points; `danlu match`'s choice for constraints set in the page
    playground.py  the input widget a task takes (from its request schema); each run's `danlu serve` app
                   (serve.app.create_app over serve.runner.load_runner), loaded on first use and
                   reached under /serve/<run>/...: the playground predicts through the same path as serve
    access.py      local-only by default; with a key (DANLU_API_KEY): bearer header or a login cookie
    app.py         create_studio(runs, api_key) -> the ASGI app: pages, JSON for the pages' scripts
    commands.py    register(typer_app): the `studio` command (imports nothing heavy until it runs)
"""

"""The studio's web app: create_studio(runs, api_key, local_only) -> an ASGI app.

Pages are rendered on the server (Jinja2, autoescaped) with the data their charts need embedded as JSON;
studio.js draws the charts with Plotly and polls the JSON routes of a page that changes (a run that is
training, the variants' choice under new constraints, the playground). No page loads anything from
outside the studio: Plotly's bundle is served from the installed `plotly` package.

    GET /                         the runs: sortable (?sort=metric&order=asc), filterable (?q=&task=&status=)
    GET /runs/<run>               one run: metrics per split, baselines, curves, pictures, data report, recipe
    GET /runs/<run>/files/<path>  a picture or report of the run (sandboxed: it runs no script here)
    GET /runs/<run>/variants      the compressed variants, with `danlu match` under sliders
    GET /runs/<run>/playground    try the model (through /serve/<run>/v1/..., the serve app)
    GET /compare?run=A&run=B      curves overlaid, metrics side by side, recipes diffed
    GET /live                     the runs that are training, updating as they write
    GET /api/...                  the JSON those pages poll
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from danlu.errors import DanluError
from danlu.match import Constraints
from danlu.run import NOT_SPLITS
from danlu.studio import curves, recipes, summary, variants
from danlu.studio.access import KeyGate
from danlu.studio.folder import NotFound, RunsFolder, media_type
from danlu.studio.playground import ServeApps, ServeRoutes

# Every studio page: scripts, styles and pictures from the studio only; no framing by other sites.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
               "script-src 'self'; frame-ancestors 'self'")
# A run's own files (report.html comes from the run folder, which anyone may have written): a sandbox,
# its own origin, no script, nothing fetched but its inline pictures.
FILE_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
CHART_PICTURES = ("loss.png", "pretrain_loss.png")  # drawn live on the page instead
STATIC = ("studio.css", "studio.js")
log = logging.getLogger("danlu.studio")


def plotly_bundle() -> Path:
    """plotly.min.js inside the installed `plotly` package (the `studio` extra)."""
    try:
        import plotly
    except ImportError:
        raise DanluError("danlu studio draws its charts with Plotly: pip install 'danlu[studio]'") from None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise DanluError(f"{path}: Plotly's JavaScript bundle is missing from the plotly package; reinstall it")
    return path


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("danlu.studio", "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(number=_number, seconds=_seconds, megabytes=_megabytes)
    return env


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def _seconds(value) -> str:
    if value is None:
        return "–"
    value = int(value)
    return f"{value // 3600}h {value % 3600 // 60:02d}m" if value >= 3600 else (
        f"{value // 60}m {value % 60:02d}s" if value >= 60 else f"{value}s")


def _megabytes(value) -> str:
    return "–" if value is None else f"{value / 1e6:.2f} MB"


def create_studio(runs: str | Path, api_key: str | None = None, local_only: bool = True):
    """The studio over the runs folder `runs`. `api_key`: required on every request but the login form
    and the page assets; `local_only`: answer only requests addressed to localhost (a loopback bind)."""
    folder = RunsFolder(runs)
    bundle = plotly_bundle()
    rows = summary.Summaries(folder)
    apps = ServeApps(folder)
    env = _environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            await apps.close()

    app = FastAPI(title="danlu studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, **values) -> HTMLResponse:
        html = env.get_template(template).render(root=str(folder.root), **values)
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY,
                                           "X-Content-Type-Options": "nosniff"})

    def run_of(name: str):
        try:
            return folder.run(name)
        except NotFound:
            raise HTTPException(404, "no such run in this runs folder") from None

    @app.get("/", response_class=HTMLResponse)
    async def runs_page(sort: str = "updated", order: str = "desc", q: str = "", task: str = "",
                        status: str = ""):
        every = rows.rows()
        shown = summary.select(every, sort, order != "asc", q, task, status)
        return page("runs.html", rows=shown, total=len(every), sort=sort, order=order, q=q, task=task,
                    status=status, tasks=sorted({r.task for r in every}),
                    statuses=sorted({r.status for r in every}), columns=summary.COLUMNS)

    @app.get("/runs/{name}", response_class=HTMLResponse)
    async def run_page(name: str):
        run = run_of(name)
        row = summary.build_row(name, run)
        row.status = run.status()
        metrics = _metrics(run)
        splits = {k: v for k, v in metrics.items() if k not in NOT_SPLITS and isinstance(v, dict)}
        pictures = sorted(p.name for p in run.plots.glob("*.png") if p.name not in CHART_PICTURES) \
            if run.plots.is_dir() else []
        return page("run.html", name=name, row=row, state=run.state(), splits=splits, warnings=_warnings(run),
                    scalars={s: _scalars(m) for s, m in splits.items()},
                    baselines=metrics.get("baselines") or {}, cv=metrics.get("cross_validation") or {},
                    decision=metrics.get("decision"), pictures=pictures,
                    data_report=_text(run.root / "data_report.md"), recipe=_text(run.recipe_path),
                    has_report=(run.root / "report.html").is_file(), has_variants=bool(variants.table(run)),
                    has_model=(run.model_dir / "config.json").is_file(),
                    progress=curves.progress(run, recipes.budget(run)))

    @app.get("/runs/{name}/files/{path:path}")
    async def run_file(name: str, path: str):
        run = run_of(name)
        try:
            found = folder.file(run, path)
        except NotFound:
            raise HTTPException(404, "no such file in this run") from None
        return FileResponse(found, media_type=media_type(found),
                            headers={"Content-Security-Policy": FILE_POLICY, "X-Content-Type-Options": "nosniff"})

    @app.get("/runs/{name}/variants", response_class=HTMLResponse)
    async def variants_page(name: str):
        run = run_of(name)
        table = variants.table(run)
        sizes = variants.batches(table)
        batch = 1 if 1 in sizes else (sizes[0] if sizes else 1)
        try:
            plan = run.deployment()
        except DanluError:
            plan = None
        return page("variants.html", name=name, variants=table, batches=sizes, batch=batch,
                    points=variants.points(table, batch) if sizes else [], plan=plan,
                    metric=(table[0].get("main_metric") if table else None) or "metric",
                    greater=table[0].get("greater_is_better", True) if table else True)

    @app.get("/runs/{name}/playground", response_class=HTMLResponse)
    async def playground_page(name: str):
        run = run_of(name)
        return page("playground.html", name=name, state=run.state(),
                    has_model=(run.model_dir / "config.json").is_file())

    @app.get("/compare", response_class=HTMLResponse)
    async def compare_page(run: list[str] = Query(default=[])):
        chosen = {n: run_of(n) for n in dict.fromkeys(run)}
        every = rows.rows()
        table = {r.name: r for r in every}
        data = [{"name": n, **curves.curves(r)} for n, r in chosen.items()]  # a list: in the order asked
        return page("compare.html", chosen=list(chosen), every=every, rows=[table[n] for n in chosen if n in table],
                    differences=recipes.differences(chosen) if len(chosen) > 1 else [], curves=data,
                    metrics={n: {s: _scalars(m) for s, m in _metrics(r).items()
                                 if s not in NOT_SPLITS and isinstance(m, dict)} for n, r in chosen.items()})

    @app.get("/live", response_class=HTMLResponse)
    async def live_page():
        return page("live.html")

    @app.get("/api/runs/{name}/progress")
    async def progress(name: str):
        run = run_of(name)
        return JSONResponse(curves.progress(run, recipes.budget(run)), headers={"Cache-Control": "no-store"})

    @app.get("/api/live")
    async def live():
        found = []
        for row in rows.rows():
            if row.status == "running":
                run = folder.run(row.name)
                found.append({"name": row.name, "task": row.task, **curves.progress(run, recipes.budget(run))})
        return JSONResponse({"runs": found, "time": time.time()}, headers={"Cache-Control": "no-store"})

    @app.get("/api/runs/{name}/match")
    async def match(name: str, batch: int = 1, p95_ms: float | None = None, max_mb: float | None = None,
                    min_metric: float | None = None, cost_per_hour: float | None = 0.5):
        table = variants.table(run_of(name))
        if not table:
            raise HTTPException(404, "this run has no variants: run `danlu compress RUN`")
        constraints = Constraints(p95_ms=p95_ms, max_mb=max_mb, min_metric=min_metric,
                                  cost_per_hour=cost_per_hour, batch=batch)
        return {**variants.decide(table, constraints), "points": variants.points(table, batch)
                if batch in variants.batches(table) else []}

    @app.get("/api/runs/{name}/playground")
    async def playground(name: str):
        run_of(name)
        try:
            loaded = await apps.get(name)
        except DanluError as exc:
            raise HTTPException(409, str(exc)) from None
        except Exception:  # a model folder that loads nowhere: the page says so instead of hanging on "loading"
            log.exception("loading the model of %s failed", name)
            raise HTTPException(500, "loading the model failed; see the studio's log") from None
        info = loaded.runner.info
        return {"widget": loaded.widget.to_json(), "model": info.name, "task": info.task, "variant": info.variant,
                "chosen_by": info.chosen_by, "card": info.card, "base": f"/serve/{name}"}

    @app.get("/static/plotly.min.js")
    async def plotly_js():
        return FileResponse(bundle, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/static/{file}")
    async def static(file: str):
        if file not in STATIC:
            raise HTTPException(404, "no such file")
        text = resources.files("danlu.studio").joinpath("static", file).read_bytes()
        kind = "text/css" if file.endswith(".css") else "text/javascript"
        return Response(text, media_type=kind, headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    return KeyGate(ServeRoutes(app, apps), api_key, local_only)


def _metrics(run) -> dict:
    try:
        return run.metrics()
    except (OSError, ValueError):
        return {}


def _scalars(metrics: dict) -> dict:
    from danlu.evaluate.metrics import scalar_metrics

    return scalar_metrics(metrics)


def _warnings(run) -> list[str]:
    """The report's warnings (the model no better than a baseline...), as the pipeline wrote them in
    report.md: the studio shows the same verdict the console and the report gave."""
    lines = _text(run.report_md).splitlines()
    if "## Warnings" not in lines:
        return []
    found = []
    for line in lines[lines.index("## Warnings") + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("- "):
            found.append(line[2:].removeprefix("WARNING: "))
    return found


def _text(path: Path, limit: int = 200_000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit]
    except OSError:
        return ""

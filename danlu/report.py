"""The run report: report.md and a self-contained report.html, with plots/ beside them.

The content is built once as a list of sections made of simple blocks (text, table, image,
code...), then rendered twice, to markdown and to HTML. What goes in is one typed object,
`ReportInputs`; a task adds its own sections (confusion matrices, generated samples) through its
`report_sections`. Missing information (no history, no test split, no model facts) just leaves its
section out.

Plots use matplotlib's object API (`Figure` rendered by the Agg canvas), not pyplot: no
display is needed, no global backend is switched for whoever imports danlu, and no figure
is left open in a pyplot registry.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from danlu.evaluate.metrics import scalar_metrics
from danlu.run import atomic_write_bytes, atomic_write_text

MAX_AXIS_LABELS = 30  # above this many classes the heatmap axes carry no label names
MAX_LABEL_CHARS = 18

# A block is a tuple: ("text", str) | ("list", [str]) | ("table", headers, rows)
# | ("image", relpath, png_bytes, alt) | ("code", str, lang) | ("verbatim", markdown_str)
# | ("pre", plain_text): shown exactly as written (a fenced block in markdown)
Block = tuple
Section = tuple[str, list[Block]]


@dataclass
class ReportInputs:
    """Everything a run report shows; a field left empty leaves its section out."""

    name: str
    task: str = ""
    status: str = ""
    created: str = ""
    main_metric: str | None = None
    metrics: dict = field(default_factory=dict)  # split -> metrics (as in metrics.json)
    baselines: dict = field(default_factory=dict)  # split -> baseline name -> scalar metrics
    baseline_names: dict = field(default_factory=dict)  # baseline name -> what it is
    warnings: list[str] = field(default_factory=list)  # shown first, in bold: the model did no better...
    notes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    pretrain_history: list[dict] = field(default_factory=list)
    cross_validation: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # facts: arch, parameters, source ...
    pretrain: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    adaptations: list[str] = field(default_factory=list)
    task_sections: list = field(default_factory=list)  # [(heading, [blocks])] from the task
    data_report_md: str = ""
    recipe_yaml: str = ""


# -- formatting -----------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


table_cell = _fmt  # tasks format their own table cells the same way


def slug(split: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(split)) or "split"


def _short(label: str) -> str:
    label = str(label)
    short = label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
    return short.replace("$", r"\$")  # no accidental mathtext in matplotlib


# -- plots ----------------------------------------------------------------------
def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _loss_plot(history: list[dict]) -> bytes | None:
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="training loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", linewidth=1.2)
    ax.set(xlabel="step", ylabel="loss", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def confusion_plot(labels: list[str], matrix: list[list[int]], split: str) -> bytes:
    counts = np.asarray(matrix, dtype=float)
    k = len(labels)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = min(max(4.0, 0.45 * k + 2.0), 14.0)
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    if k <= MAX_AXIS_LABELS:
        names = [_short(label) for label in labels]
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if k <= 15:
        for i in range(k):
            for j in range(k):
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=colour, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix: {_short(split)}")
    return _png(fig)


# -- content --------------------------------------------------------------------
def _metrics_table(metrics: dict[str, dict], main: str | None) -> Block:
    splits = list(metrics)
    scalars = {split: scalar_metrics(metrics[split] or {}) for split in splits}
    names: list[str] = []
    for split in splits:
        names += [name for name in scalars[split] if name not in names]
    names.sort(key=lambda name: (name != main, name == "n"))  # stable: main first, n last
    rows = [[f"{n} (main)" if n == main else n] + [_fmt(scalars[s].get(n)) for s in splits] for n in names]
    return ("table", ["metric", *splits], rows)


def _baseline_table(info: ReportInputs) -> Block | None:
    """The model's main metric beside each baseline's, per split."""
    main = info.main_metric
    splits = [s for s in info.baselines if main in scalar_metrics(info.metrics.get(s) or {})]
    if not splits or not main:
        return None
    names = list(dict.fromkeys(b for s in splits for b in info.baselines[s]))
    rows = [["model", *(_fmt(info.metrics[s].get(main)) for s in splits)]]
    for name in names:
        what = info.baseline_names.get(name)
        rows.append([f"{name} ({what})" if what else name,
                     *(_fmt(info.baselines[s].get(name, {}).get(main)) for s in splits)])
    return ("table", [main, *splits], rows)


def _sections(info: ReportInputs, plots: dict[str, bytes]) -> list[Section]:
    sections: list[Section] = []
    main = info.main_metric
    facts = [f"{key}: {value}" for key, value in (("task", info.task), ("status", info.status),
                                                  ("created", info.created)) if value]
    if main:
        facts.append(f"main metric: {main}")
    if facts:
        sections.append(("", [("list", facts)]))
    if info.warnings:
        sections.append(("Warnings", [("list", [f"WARNING: {w}" for w in info.warnings])]))
    if info.notes:
        sections.append(("Notes", [("list", [str(note) for note in info.notes])]))
    if any(scalar_metrics(m or {}) for m in info.metrics.values()):
        sections.append(("Metrics", [_metrics_table(info.metrics, main)]))
    baseline = _baseline_table(info)
    if baseline:
        sections.append(("Against the baselines", [baseline, ("text", "Each baseline is fitted on the training "
                                                                     "split only and measured like the model.")]))
    if "loss" in plots:
        sections.append(("Training curve", [("image", "plots/loss.png", plots["loss"], "loss curve")]))
    if "pretrain_loss" in plots:
        sections.append(("Pretraining curve", [("image", "plots/pretrain_loss.png", plots["pretrain_loss"],
                                                "pretraining loss curve")]))
    sections += info.task_sections
    if info.cross_validation:
        rows = [[name, f"{_fmt(s['mean'])} ± {_fmt(s['std'])}", ", ".join(_fmt(v) for v in s.get("folds", []))]
                for name, s in info.cross_validation.items()]
        note = ("text", "Standard deviation is the population std (ddof=0) over the folds.")
        sections.append(("Cross-validation", [("table", ["metric", "mean ± std", "folds"], rows), note]))
    for facts_, title in ((info.model, "Model"), (info.pretrain, "Pretraining"), (info.training, "Training")):
        if facts_:
            rows = [[name, _fmt(value)] for name, value in facts_.items() if value is not None]
            sections.append((title, [("table", ["", "value"], rows)]))
    if info.adaptations:
        sections.append(("What was trained", [("list", [str(a) for a in info.adaptations])]))
    if info.data_report_md:
        sections.append(("Data", [("verbatim", info.data_report_md)]))
    if info.recipe_yaml:
        sections.append(("Recipe", [("code", info.recipe_yaml, "yaml")]))  # collapsible in html
    return sections


def _make_plots(info: ReportInputs) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}
    loss = _loss_plot(info.history)
    if loss:
        plots["loss"] = loss
    pretrain_loss = _loss_plot(info.pretrain_history)
    if pretrain_loss:
        plots["pretrain_loss"] = pretrain_loss
    return plots


# -- rendering ------------------------------------------------------------------
def _md_cell(value: Any) -> str:
    text = str(value).replace("\n", " ").replace("|", r"\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {_md_cell(title)}", ""]
    for heading, blocks in sections:
        if heading:
            out += [f"## {_md_cell(heading)}", ""]
        for block in blocks:
            kind = block[0]
            if kind == "text":
                out.append(_md_cell(block[1]))
            elif kind == "list":
                out += [f"- {_md_cell(item)}" for item in block[1]]
            elif kind == "table":
                out.append("| " + " | ".join(_md_cell(h) for h in block[1]) + " |")
                out.append("|" + "---|" * len(block[1]))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block[2]]
            elif kind == "image":
                out.append(f"![{block[3]}]({block[1]})")
            elif kind == "code":
                fence = "~~~~" if "```" in block[1] else "```"
                out += [fence + block[2], block[1].rstrip("\n"), fence]
            elif kind == "verbatim":
                out.append(block[1].rstrip("\n"))
            elif kind == "pre":
                out += ["~~~~text", block[1].rstrip("\n").replace("~~~~", "~ ~ ~ ~"), "~~~~"]
            out.append("")
    return "\n".join(out)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .3rem .7rem; text-align: left; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
th { background: #f5f5f5; }
img { max-width: 100%; }
pre { background: #f7f7f7; padding: .8rem; overflow-x: auto; font-size: .85rem; }
"""


def _html(title: str, sections: list[Section]) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(title)}</title><style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    for heading, blocks in sections:
        if heading:
            out.append(f"<h2>{esc(heading)}</h2>")
        for block in blocks:
            kind = block[0]
            if kind == "text":
                out.append(f"<p>{esc(block[1])}</p>")
            elif kind == "list":
                out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
                body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                               for row in block[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "image":
                data = base64.b64encode(block[2]).decode("ascii")
                out.append(f'<p><img src="data:image/png;base64,{data}" alt="{esc(block[3])}"></p>')
            elif kind == "code":
                out.append(f"<details><summary>show ({esc(block[2])})</summary><pre>{esc(block[1])}</pre></details>")
            elif kind in ("verbatim", "pre"):
                out.append(f"<pre>{esc(block[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(run_root: Path, info: ReportInputs) -> tuple[Path, Path]:
    """Write report.md, report.html and plots/*.png under `run_root`; return (md, html) paths."""
    run_root = Path(run_root)
    plots = _make_plots(info)
    for name, png in plots.items():
        atomic_write_bytes(run_root / "plots" / f"{name}.png", png)
    sections = _sections(info, plots)
    for _, blocks in sections:  # the tasks' own pictures (confusion matrices) go to plots/ as well
        for block in blocks:
            if block[0] == "image" and block[1].removeprefix("plots/").removesuffix(".png") not in plots:
                atomic_write_bytes(run_root / block[1], block[2])
    title = info.name or "danlu run"
    md_path, html_path = run_root / "report.md", run_root / "report.html"
    atomic_write_text(md_path, _markdown(title, sections))
    atomic_write_text(html_path, _html(title, sections))
    return md_path, html_path

"""The run report: report.md and a self-contained report.html, with plots/ beside them.

The content is built once as a list of sections made of simple blocks (text, table, image,
code...), then rendered twice, to markdown and to HTML. Missing information (no history,
no test split, no model facts) just leaves its section out.

Plots use matplotlib's object API (`Figure` rendered by the Agg canvas), not pyplot: no
display is needed, no global backend is switched for whoever imports danlu, and no figure
is left open in a pyplot registry.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from danlu.evaluate.metrics import MAIN_METRIC, scalar_metrics
from danlu.run import atomic_write_bytes, atomic_write_text

MAX_AXIS_LABELS = 30  # above this many classes the heatmap axes carry no label names
MAX_LABEL_CHARS = 18
MAX_SCATTER_POINTS = 5000

# A block is a tuple: ("text", str) | ("list", [str]) | ("table", headers, rows)
# | ("image", relpath, png_bytes, alt) | ("code", str, lang) | ("verbatim", markdown_str)
# | ("pre", plain_text): shown exactly as written (a fenced block in markdown)
Block = tuple
Section = tuple[str, list[Block]]


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


def _slug(split: str) -> str:
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


def _confusion_plot(labels: list[str], matrix: list[list[int]], split: str) -> bytes:
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


def _scatter_plot(y_true: list[float], y_pred: list[float], split: str) -> bytes:
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if y_true.size > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(y_true.size, MAX_SCATTER_POINTS, replace=False)
        y_true, y_pred = y_true[keep], y_pred[keep]
    fig = Figure(figsize=(4.8, 4.8))
    ax = fig.add_subplot()
    ax.scatter(y_true, y_pred, s=8, alpha=0.5)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="y = x")
    ax.set(xlabel="true", ylabel="predicted", title=f"Predicted vs true: {_short(split)}")
    ax.grid(alpha=0.3)
    ax.legend()
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


def _sections(info: dict, plots: dict[str, bytes]) -> list[Section]:
    sections: list[Section] = []
    task = info.get("task", "")
    main = info.get("main_metric") or MAIN_METRIC.get(task)
    facts = [f"{key}: {info[key]}" for key in ("task", "status", "created") if info.get(key)]
    if main:
        facts.append(f"main metric: {main}")
    if facts:
        sections.append(("", [("list", facts)]))
    if info.get("notes"):
        sections.append(("Notes", [("list", [str(note) for note in info["notes"]])]))

    metrics = info.get("metrics") or {}
    if any(scalar_metrics(m or {}) for m in metrics.values()):
        sections.append(("Metrics", [_metrics_table(metrics, main)]))
    if "loss" in plots:
        sections.append(("Training curve", [("image", "plots/loss.png", plots["loss"], "loss curve")]))
    if "pretrain_loss" in plots:
        sections.append(("Pretraining curve", [("image", "plots/pretrain_loss.png", plots["pretrain_loss"],
                                                "pretraining loss curve")]))
    if info.get("samples"):  # a language model's generated text, shown as written
        blocks = []
        for sample in info["samples"]:
            blocks += [("text", f"prompt: {sample['prompt']!r}"), ("pre", sample["prompt"] + sample["text"])]
        sections.append(("Samples", blocks))

    for split, split_metrics in metrics.items():
        blocks: list[Block] = []
        name = f"confusion_{_slug(split)}"
        if name in plots:
            blocks.append(("image", f"plots/{name}.png", plots[name], "confusion matrix"))
        per_class = (split_metrics or {}).get("per_class") or {}
        if per_class:
            rows = [[label, *(_fmt(c.get(key)) for key in ("precision", "recall", "f1", "support"))]
                    for label, c in per_class.items()]
            blocks.append(("table", ["class", "precision", "recall", "f1", "support"], rows))
        if blocks:
            sections.append((f"Classes: {split}", blocks))
    for split in info.get("predictions") or {}:
        name = f"scatter_{_slug(split)}"
        if name in plots:
            sections.append((f"Predictions: {split}", [("image", f"plots/{name}.png", plots[name], "predicted vs true")]))

    folds = info.get("cross_validation") or {}
    if folds:
        rows = [[name, f"{_fmt(s['mean'])} ± {_fmt(s['std'])}", ", ".join(_fmt(v) for v in s.get("folds", []))]
                for name, s in folds.items()]
        note = ("text", "Standard deviation is the population std (ddof=0) over the folds.")
        sections.append(("Cross-validation", [("table", ["metric", "mean ± std", "folds"], rows), note]))
    for key, title in (("model", "Model"), ("pretrain", "Pretraining"), ("training", "Training")):
        if info.get(key):
            rows = [[name, _fmt(value)] for name, value in info[key].items() if value is not None]
            sections.append((title, [("table", ["", "value"], rows)]))
    if info.get("adaptations"):
        sections.append(("What was trained", [("list", [str(a) for a in info["adaptations"]])]))
    if info.get("data_report_md"):
        sections.append(("Data", [("verbatim", info["data_report_md"])]))
    if info.get("recipe_yaml"):
        sections.append(("Recipe", [("code", info["recipe_yaml"], "yaml")]))  # collapsible in html
    return sections


def _make_plots(info: dict) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}
    loss = _loss_plot(info.get("history") or [])
    if loss:
        plots["loss"] = loss
    pretrain_loss = _loss_plot(info.get("pretrain_history") or [])
    if pretrain_loss:
        plots["pretrain_loss"] = pretrain_loss
    for split, split_metrics in (info.get("metrics") or {}).items():
        cm = (split_metrics or {}).get("confusion_matrix")
        if cm and cm.get("labels"):
            plots[f"confusion_{_slug(split)}"] = _confusion_plot(cm["labels"], cm["matrix"], split)
    for split, pred in (info.get("predictions") or {}).items():
        if pred and len(pred.get("y_true") or []) > 0:
            plots[f"scatter_{_slug(split)}"] = _scatter_plot(pred["y_true"], pred["y_pred"], split)
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


def write_report(run_root: Path, info: dict) -> tuple[Path, Path]:
    """Write report.md, report.html and plots/*.png under `run_root`; return (md, html) paths."""
    run_root = Path(run_root)
    plots = _make_plots(info)
    for name, png in plots.items():
        atomic_write_bytes(run_root / "plots" / f"{name}.png", png)
    title = str(info.get("name") or "danlu run")
    sections = _sections(info, plots)
    md_path, html_path = run_root / "report.md", run_root / "report.html"
    atomic_write_text(md_path, _markdown(title, sections))
    atomic_write_text(html_path, _html(title, sections))
    return md_path, html_path

"""Forecast metrics, the naive baselines, and the report's forecast-against-actual plots.

`mse` and `mae` are on the training scale (every series scaled by its training mean and standard
deviation, the ETT papers' convention), `mse_original` and `mae_original` in the series' own units, and
`mase` is each series' MAE over its in-sample seasonal-naive MAE on the training rows, averaged over
the series. Every window of a split counts once; the mean runs over windows, steps and series.
"""

from __future__ import annotations

import numpy as np

MAX_PLOTTED_SERIES = 3
DEFAULT_PLOTS = 3  # windows drawn when a loaded run is evaluated (its recipe's forecast.plots is not at hand)
MAX_TABLED_SERIES = 50


def metrics(predicted: np.ndarray, labels: np.ndarray, scaling, targets: list[str]) -> dict:
    """Scores of forecasts (windows, horizon, targets) on the training scale against the truth."""
    p, y = predicted.astype(np.float64), labels.astype(np.float64)
    err = p - y
    own = np.abs(scaling.targets_back(p) - scaling.targets_back(y))
    per_mae = own.reshape(-1, own.shape[-1]).mean(axis=0)
    mase = [m / s for m, s in zip(per_mae, scaling.mase_scale) if s]
    found = {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err))),
             "mse_original": float(np.mean(own ** 2)), "mae_original": float(np.mean(own)),
             "mase": float(np.mean(mase)) if mase else None, "n": int(len(p))}
    if len(targets) > 1 and len(targets) <= MAX_TABLED_SERIES:
        flat_err = err.reshape(-1, err.shape[-1])
        found["per_series"] = {
            name: {"mse": float(np.mean(flat_err[:, j] ** 2)), "mae": float(np.mean(np.abs(flat_err[:, j]))),
                   "mae_original": float(per_mae[j]),
                   "mase": float(per_mae[j] / scaling.mase_scale[j]) if scaling.mase_scale[j] else None}
            for j, name in enumerate(targets)}
    return found


def baselines(windows) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (forecasts, truth)} of the naive and seasonal-naive forecasts of every window."""
    lay = windows.layout
    t, context, horizon, season = len(lay.targets), lay.context, lay.horizon, lay.season
    starts = windows.starts[:, None]
    targets = windows.values[:, :t]
    steps = np.arange(1, horizon + 1)
    truth = targets[starts + context - 1 + steps]
    last = targets[starts[:, 0] + context - 1][:, None, :].repeat(horizon, axis=1)
    # Step k of the horizon repeats the value a whole number of seasons before it, inside the context.
    back = season * np.ceil(steps / season).astype(np.int64)
    seasonal = targets[starts + context - 1 + steps - back]
    return {"naive": (last, truth), "seasonal_naive": (seasonal, truth)}


def samples(windows, predicted: np.ndarray, scaling, count: int) -> list[dict]:
    """A few windows spread over the split, in the series' own units: the end of the context, the truth
    and the forecast, for the report's plots."""
    if not count or not len(windows):
        return []
    lay = windows.layout
    shown = lay.targets[:MAX_PLOTTED_SERIES]
    t = len(lay.targets)
    back = min(lay.context, max(2 * lay.horizon, lay.season))
    out = []
    for i in np.unique(np.linspace(0, len(windows) - 1, count).round().astype(int)):
        s = int(windows.starts[i]) + lay.context
        own = scaling.targets_back(windows.values[s - back:s + lay.horizon, :t])
        forecast = scaling.targets_back(predicted[i])
        out.append({"start": str(windows.times.iloc[s]), "past": back,
                    "steps": [str(x) for x in windows.times.iloc[s - back:s + lay.horizon]],
                    "series": {name: {"actual": own[:, j].tolist(), "forecast": forecast[:, j].tolist()}
                               for j, name in enumerate(shown)}})
    return out


def report_sections(metrics: dict, targets: list[str]) -> list:
    from danlu.report import slug

    sections = []
    for split, found in metrics.items():
        found = found or {}
        blocks = []
        if found.get("samples"):
            blocks.append(("image", f"plots/forecast_{slug(split)}.png", forecast_plot(found["samples"], split),
                           "forecasts against the actual values"))
        per = found.get("per_series") or {}
        if per:
            blocks.append(("table", ["series", "mse", "mae", "mae (own units)", "mase"],
                           [[name, *(_cell(m.get(k)) for k in ("mse", "mae", "mae_original", "mase"))]
                            for name, m in per.items()]))
        if blocks:
            sections.append((f"Forecasts: {split}", blocks))
    return sections


def _cell(value):
    from danlu.report import table_cell

    return table_cell(value)


def forecast_plot(windows: list[dict], split: str) -> bytes:
    """One panel per window and series; the object API and the Agg canvas, as danlu.report draws."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(windows[0]["series"])
    fig = Figure(figsize=(4.2 * len(windows), 2.6 * len(names)))
    axes = fig.subplots(len(names), len(windows), squeeze=False, gridspec_kw={"hspace": 0.5})
    for col, window in enumerate(windows):
        past = window["past"]
        for row, name in enumerate(names):
            ax, values = axes[row][col], window["series"][name]
            x = np.arange(-past, len(values["actual"]) - past)
            ax.plot(x, values["actual"], color="black", linewidth=1.0, label="actual")
            ax.plot(x[past:], values["forecast"], color="tab:orange", linewidth=1.2, label="forecast")
            ax.axvline(-0.5, color="grey", linewidth=0.6, linestyle="--")
            ax.grid(alpha=0.3)
            ax.set_title(f"{name}, from {window['start']}", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Forecast against actual: {split} (steps after the forecast's start)", fontsize=9)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()

"""Starting from a saved forecaster (`model.from`) and loading a run's own.

`model.from` may name a finished forecasting run, a folder holding a DLinear or LSTM danlu saved, or a
PatchTSTForPrediction (a folder or a hub id): its patches and encoder are kept; a different horizon or
number of series re-initialises only the prediction head (transformers' ignore_mismatched_sizes). The
context must be the checkpoint's, since its position encodings are one per patch of that context.
"""

from __future__ import annotations

from pathlib import Path

from danlu.errors import DanluError
from danlu.models import resolve_pretrained
from danlu.tasks.forecasting.models import PLAIN_TYPES, load_patchtst, load_plain, model_type
from danlu.tasks.forecasting.series import Layout


def from_pretrained(name: str, base_dir: Path | None, layout: Layout):
    where = resolve_pretrained(name, base_dir)
    local = Path(where).is_dir()
    kind = model_type(where) if local else "patchtst"
    if kind in PLAIN_TYPES:
        return _plain(where, layout)
    if kind != "patchtst":
        raise DanluError(f"model.from: '{where}' holds a {kind or 'model of no known type'}; a forecaster starts "
                         "from a forecasting run, a danlu DLinear or LSTM, or a PatchTSTForPrediction")
    return _patchtst(where, layout)


def _plain(where: str, layout: Layout):
    model = load_plain(where)
    c = model.config
    wanted = {"context": layout.context, "horizon": layout.horizon, "targets": len(layout.targets),
              "past": len(layout.past), "future": len(layout.future)}
    differ = [f"{key} {getattr(c, key)} (here {value})" for key, value in wanted.items() if getattr(c, key) != value]
    if differ:
        raise DanluError(f"model.from: '{where}' was built for another series layout: {', '.join(differ)}; "
                         "a DLinear or LSTM continues only with the same context, horizon and columns")
    return model.train()


def _patchtst(where: str, layout: Layout):
    from transformers import PatchTSTConfig

    try:
        config = PatchTSTConfig.from_pretrained(where)
    except OSError as exc:
        raise DanluError(f"model.from: cannot load '{where}': {str(exc).splitlines()[0]} (a local folder needs "
                         "config.json and weights; a hub id needs internet access)") from None
    if config.model_type != "patchtst":
        raise DanluError(f"model.from: '{where}' is a {config.model_type} model, not PatchTST")
    pad = int(getattr(config, "danlu_pad_end", 0))
    if config.context_length - pad != layout.context:
        raise DanluError(f"model.from: '{where}' reads a context of {config.context_length - pad} steps; set "
                         f"forecast.context: {config.context_length - pad}")
    channels = len(layout.columns)
    overrides = {key: value for key, value in (("prediction_length", layout.horizon),
                                               ("num_input_channels", channels))
                 if getattr(config, key) != value}
    model = load_patchtst(where, targets=len(layout.targets), **overrides)
    return model.train()


def load_saved(model_dir: Path):
    """The model a forecasting run saved (its config.json says which kind)."""
    kind = model_type(model_dir)
    if kind in PLAIN_TYPES:
        return load_plain(model_dir)
    if kind == "patchtst":
        return load_patchtst(str(model_dir)).eval()
    raise DanluError(f"{model_dir}: config.json names no forecaster danlu knows (model_type {kind!r})")

"""The forecasters: DLinear and a small LSTM in plain PyTorch, and transformers' PatchTST wrapped.

Every one takes `past_values` (batch, context, targets + past + future covariates, on the training
scale), optionally `future_covariates` (batch, horizon, future covariates) and `labels` (batch,
horizon, targets), and returns {"loss", "logits"}: the forecast of the targets, on the training scale,
with the mean squared error as the loss, as danlu's engines expect. The plain nets save as config.json +
model.safetensors like danlu's classic nets (transformers' model stack is not imported for them);
PatchTST saves in transformers' own format, so `PatchTSTForPrediction.from_pretrained(RUN/model)` loads it.
"""

from __future__ import annotations

import json
from abc import ABCMeta, abstractmethod
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from danlu.errors import DanluError
from danlu.models.classic import ClassicOutput

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
PLAIN_TYPES = {"danlu_dlinear": "dlinear", "danlu_lstm": "lstm"}
# PatchTST/42 on ETTh1 (Nie et al. 2023): d_model 16, 4 heads, 3 layers, feed-forward 128, dropout 0.3.
PATCHTST_SHAPE = dict(embedding=16, heads=4, layers=3, feed_forward=128, dropout=0.3)
LSTM_SHAPE = dict(embedding=64, layers=2, dropout=0.0)


class InstanceNorm(nn.Module):
    """RevIN (Kim et al. 2022): each window's series scaled by its own mean and spread, then a learnt
    per-series affine map; the forecast goes back through both."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        return (x - mean) / std * self.weight + self.bias, (mean, std)

    def restore(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        return (y - self.bias) / (self.weight + self.eps * self.eps) * std + mean


class NetConfig:
    """The shape of a plain forecaster; saved as config.json."""

    FIELDS = ("arch", "context", "horizon", "targets", "past", "future", "instance_norm", "moving_average",
              "individual", "hidden", "layers", "dropout")

    def __init__(self, arch: str, context: int, horizon: int, targets: int, past: int = 0, future: int = 0,
                 instance_norm: bool = True, moving_average: int = 25, individual: bool = False, hidden: int = 64,
                 layers: int = 2, dropout: float = 0.0, **_ignored):
        self.arch, self.context, self.horizon = arch, int(context), int(horizon)
        self.targets, self.past, self.future = int(targets), int(past), int(future)
        self.instance_norm, self.moving_average, self.individual = bool(instance_norm), int(moving_average), \
            bool(individual)
        self.hidden, self.layers, self.dropout = int(hidden), int(layers), float(dropout)

    @property
    def model_type(self) -> str:
        return f"danlu_{self.arch}"

    @property
    def channels(self) -> int:
        return self.targets + self.past + self.future

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **{k: getattr(self, k) for k in self.FIELDS}}


class PlainForecaster(nn.Module, metaclass=ABCMeta):  # a forecaster without `forecast` cannot be built
    """What the plain nets share: instance normalisation of the targets, the loss, saving."""

    main_input_name = "past_values"

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.norm = InstanceNorm(config.targets) if config.instance_norm else None

    def forward(self, past_values, future_covariates=None, labels=None, **_):
        c = self.config
        x = past_values.float()
        targets, stats = x[:, :, :c.targets], None
        if self.norm is not None:
            targets, stats = self.norm.normalise(targets)
        forecast = self.forecast(targets, x[:, :, c.targets:], future_covariates)
        if self.norm is not None:
            forecast = self.norm.restore(forecast, stats)
        return output(forecast, labels)

    @abstractmethod
    def forecast(self, targets, covariates, future_covariates) -> torch.Tensor:
        """(B, horizon, targets) from the (normalised) targets and the covariates of a window."""

    def save_pretrained(self, folder, **_ignored) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))


def output(forecast: torch.Tensor, labels) -> ClassicOutput:
    loss = None if labels is None else nn.functional.mse_loss(forecast.float(), labels.float())
    return ClassicOutput(loss=loss, logits=forecast)


class MovingAverage(nn.Module):
    """The trend: a centred moving average, the ends repeated so the length stays (DLinear's series_decomp)."""

    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, time, series)
        side = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, side, -1), x, x[:, -1:].expand(-1, side, -1)], dim=1)
        return nn.functional.avg_pool1d(padded.transpose(1, 2), self.kernel, stride=1).transpose(1, 2)


class TimeLinear(nn.Module):
    """A linear map from the context to the horizon along time, shared by every series or one per series."""

    def __init__(self, context: int, horizon: int, series: int, individual: bool):
        super().__init__()
        shape = (series, horizon, context) if individual else (1, horizon, context)
        bound = context ** -0.5  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(shape[:2]).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, context, series) -> (batch, horizon, series)
        if self.weight.shape[0] == 1:  # one map for all: a plain matmul, several times faster than einsum
            return torch.matmul(self.weight[0], x) + self.bias[0][None, :, None]
        return torch.einsum("bls,shl->bhs", x, self.weight) + self.bias.T


class DLinear(PlainForecaster):
    """DLinear (Zeng et al. 2023): the context split into a moving-average trend and the seasonal rest,
    each mapped to the horizon by a linear layer along time; covariates add a linear term, zero at start."""

    def __init__(self, config: NetConfig):
        super().__init__(config)
        c = config
        self.trend = MovingAverage(c.moving_average)
        self.seasonal_head = TimeLinear(c.context, c.horizon, c.targets, c.individual)
        self.trend_head = TimeLinear(c.context, c.horizon, c.targets, c.individual)
        self.covariate_head = _covariate_head(c)

    def forecast(self, targets, covariates, future_covariates):
        trend = self.trend(targets)
        out = self.seasonal_head(targets - trend) + self.trend_head(trend)
        if self.covariate_head is not None:
            out = out + self.covariate_head(_flat(covariates, future_covariates)).view_as(out)
        return out


def _covariate_head(c: NetConfig) -> nn.Linear | None:
    width = c.context * (c.past + c.future) + c.horizon * c.future
    if not width:
        return None
    head = nn.Linear(width, c.horizon * c.targets)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def _flat(covariates: torch.Tensor, future_covariates) -> torch.Tensor:
    parts = [covariates.flatten(1)]
    if future_covariates is not None:
        parts.append(future_covariates.float().flatten(1))
    return torch.cat(parts, dim=1)


class LSTMForecaster(PlainForecaster):
    """An LSTM over the context (targets and covariates at each step); its last state and the future
    covariates of the horizon give the whole horizon at once."""

    def __init__(self, config: NetConfig):
        super().__init__(config)
        c = config
        self.lstm = nn.LSTM(c.channels, c.hidden, num_layers=c.layers, batch_first=True,
                            dropout=c.dropout if c.layers > 1 else 0.0)
        self.head = nn.Linear(c.hidden + c.horizon * c.future, c.horizon * c.targets)

    def forecast(self, targets, covariates, future_covariates):
        c = self.config
        states, _ = self.lstm(torch.cat([targets, covariates], dim=2))
        last = states[:, -1]
        if future_covariates is not None:
            last = torch.cat([last, future_covariates.float().flatten(1)], dim=1)
        return self.head(last).view(-1, c.horizon, c.targets)


PLAIN = {"dlinear": DLinear, "lstm": LSTMForecaster}


class PatchTST(nn.Module):
    """transformers' PatchTSTForPrediction over every input channel (channel-independent patches of 16
    steps, stride 8, instance-normalised by its std scaler), its forecast of the targets' channels scored.

    The context is padded at the end with `patch_stride` copies of its last step, as the paper's code
    does (padding_patch="end": 42 patches of a 336-step context instead of 41). Future covariates are read
    over the context only: PatchTST has no input for the horizon's."""

    main_input_name = "past_values"

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    @property
    def targets(self) -> int:
        return int(self.config.danlu_targets)

    def forward(self, past_values, future_covariates=None, labels=None, **_):
        x = past_values.float()
        pad = int(getattr(self.config, "danlu_pad_end", 0))
        if pad:
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1)], dim=1)
        predicted = self.model(past_values=x).prediction_outputs
        return output(predicted[:, :, :self.targets], labels)

    def save_pretrained(self, folder, **_ignored) -> None:
        self.model.save_pretrained(folder)


# -- building and loading ----------------------------------------------------------------
def build(arch: str, shape: dict, context: int, horizon: int, targets: int, past: int, future: int, cfg):
    """A new forecaster; `shape`: the recipe's model keys (embedding, layers ...), `cfg` its forecast section."""
    if arch == "patchtst":
        return build_patchtst(shape, context, horizon, targets, past + future, cfg)
    merged = {**LSTM_SHAPE, **{k: v for k, v in shape.items() if v is not None}}
    config = NetConfig(arch=arch, context=context, horizon=horizon, targets=targets, past=past, future=future,
                       instance_norm=cfg.instance_norm, moving_average=cfg.moving_average, individual=cfg.individual,
                       hidden=merged["embedding"], layers=merged["layers"], dropout=merged["dropout"])
    return PLAIN[arch](config)


def build_patchtst(shape: dict, context: int, horizon: int, targets: int, covariates: int, cfg) -> PatchTST:
    from transformers import PatchTSTConfig, PatchTSTForPrediction

    s = {**PATCHTST_SHAPE, **{k: v for k, v in shape.items() if v is not None}}
    if s["embedding"] % s["heads"]:
        raise DanluError(f"model.embedding ({s['embedding']}) must be divisible by model.heads ({s['heads']})")
    config = PatchTSTConfig(
        num_input_channels=targets + covariates, context_length=context + cfg.patch_stride,
        prediction_length=horizon, patch_length=cfg.patch_length, patch_stride=cfg.patch_stride,
        d_model=s["embedding"], num_attention_heads=s["heads"], num_hidden_layers=s["layers"],
        ffn_dim=s["feed_forward"], positional_dropout=s["dropout"], path_dropout=s["dropout"],
        ff_dropout=s["dropout"], activation_function=shape.get("activation") or "gelu", pre_norm=False,
        norm_type="batchnorm", positional_encoding_type="random", scaling="std" if cfg.instance_norm else None,
        loss="mse", do_mask_input=False, share_embedding=True, share_projection=True, channel_attention=False,
        pooling_type=None,  # the paper's flatten head: every patch's embedding feeds the forecast, none averaged
        danlu_targets=targets, danlu_pad_end=cfg.patch_stride)
    return PatchTST(PatchTSTForPrediction(config))


def model_type(folder: str | Path) -> str | None:
    try:
        return json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None


def load_plain(folder: str | Path) -> PlainForecaster:
    folder = Path(folder)
    data = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    arch = PLAIN_TYPES.get(data.get("model_type"))
    if arch is None:
        raise DanluError(f"{folder}: not a danlu forecaster (model_type {data.get('model_type')!r})")
    model = PLAIN[arch](NetConfig(**{k: data[k] for k in NetConfig.FIELDS if k in data}))
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model.eval()


def load_patchtst(where: str, targets: int | None = None, **overrides) -> PatchTST:
    """A saved or pretrained PatchTSTForPrediction (a folder or a hub id); `overrides` change its config
    (a new horizon re-initialises the head)."""
    from transformers import PatchTSTForPrediction

    from danlu.models import load_pretrained

    extra = {"ignore_mismatched_sizes": True} if overrides else {}
    model = load_pretrained(PatchTSTForPrediction, where, **overrides, **extra)
    if targets is not None:
        model.config.danlu_targets = targets
    if not hasattr(model.config, "danlu_targets"):
        model.config.danlu_targets = model.config.num_input_channels
    return PatchTST(model)

"""Robustness: the task's metric on inputs made a little off, at several strengths, and under a gradient attack.

Perturbations act on the raw rows, before the task encodes them, so the measured path is the one a
prediction takes (danlu.inference). Which apply follows the task's input roles, never its name: a text
role gets character noise, an image role pixel noise, feature columns feature noise. Every strength is a
share in [0, 1] and strength 0 changes nothing, so its row is the clean metric, exactly; for audio it is the
noise-to-signal power (an SNR of -10 log10(s) dB).

The attacks (FGSM, and PGD as its iterated, projected form) take gradients through the input the task's
capability `gradient_input` names: pixels, the preprocessed feature vector, or a text model's input
embeddings. Their epsilon is in that input's units: pixels in [0, 1] (8/255 is the usual image budget),
standard deviations of the standardised features, and for embeddings a share of the embedding matrix's
root-mean-square entry (token ids themselves have no gradient).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from danlu.errors import DanluError

# Keys next to a letter on a QWERTY keyboard: a typo is a neighbour more often than a random letter.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEAR = {c: (row[max(i - 1, 0):i] + row[i + 1:i + 2]) for row in _ROWS for i, c in enumerate(row)}


def _typo(text: str, p: float, rng: random.Random) -> str:
    """Each character, with probability p: replaced by a keyboard neighbour, dropped or doubled."""
    out = []
    for ch in text:
        if rng.random() >= p:
            out.append(ch)
            continue
        op = rng.randrange(3)
        near = _NEAR.get(ch.lower())
        if op == 0 and near:
            out.append(rng.choice(near))
        elif op == 1:
            continue
        else:
            out.append(ch + ch)
    return "".join(out)


def _swap(text: str, p: float, rng: random.Random) -> str:
    chars, i = list(text), 0
    while i < len(chars) - 1:
        if rng.random() < p:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
            i += 2
        else:
            i += 1
    return "".join(chars)


def _case(text: str, p: float, rng: random.Random) -> str:
    return "".join(ch.swapcase() if ch.isalpha() and rng.random() < p else ch for ch in text)


def _whitespace(text: str, p: float, rng: random.Random) -> str:
    """A space dropped, or one added after a character, each with probability p."""
    out = []
    for ch in text:
        if ch == " " and rng.random() < p:
            continue
        out.append(ch + " " if ch != " " and rng.random() < p else ch)
    return "".join(out)


def _pixels(value) -> np.ndarray:
    from PIL import Image

    if isinstance(value, dict):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
    img = value if isinstance(value, Image.Image) else (
        Image.open(value) if isinstance(value, (str, Path, io.BytesIO)) else Image.fromarray(np.asarray(value)))
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    return np.asarray(img)


def _noise(arr: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(arr + rng.normal(0.0, s * 255.0, arr.shape), 0, 255).round().astype(np.uint8)


def _blur(arr: np.ndarray, s: float, rng) -> np.ndarray:
    from PIL import Image, ImageFilter

    radius = 5.0 * s  # pixels
    return arr if radius == 0 else np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(radius)))


def _brightness(arr: np.ndarray, s: float, rng) -> np.ndarray:
    return np.clip(arr.astype(np.float64) * (1.0 - s), 0, 255).round().astype(np.uint8)


def _occlusion(arr: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """A mid-grey square covering a share s of the image, at a random place."""
    h, w = arr.shape[:2]
    side_h, side_w = int(round(h * np.sqrt(s))), int(round(w * np.sqrt(s)))
    if not side_h or not side_w:
        return arr
    top, left = rng.integers(0, h - side_h + 1), rng.integers(0, w - side_w + 1)
    out = arr.copy()
    out[top:top + side_h, left:left + side_w] = 128
    return out


def _jpeg(arr: np.ndarray, s: float, rng) -> np.ndarray:
    """JPEG at quality 100 - 95 s; strength 0 is no compression at all (even quality 100 is lossy)."""
    from PIL import Image

    if s == 0:
        return arr
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=int(round(100 - 95 * s)))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def _audio_noise(value, s: float, rng: np.random.Generator):
    """White noise at a power s times the clip's own: SNR = -10 log10(s) dB (0.1: 10 dB, 0.01: 20 dB). A file
    comes back as float WAV bytes, which decode to exactly these samples; a waveform (already at the model's
    rate) as a waveform."""
    import soundfile as sf

    from danlu.data.audio import decode

    samples, rate = (value.astype(np.float32), None) if isinstance(value, np.ndarray) else decode(value)
    power = float(np.mean(samples.astype(np.float64) ** 2))
    noisy = samples + rng.normal(0.0, np.sqrt(s * power), samples.shape).astype(np.float32)
    if rate is None:
        return noisy
    buffer = io.BytesIO()
    sf.write(buffer, noisy, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


TEXT = {"typo": _typo, "swap": _swap, "case": _case, "whitespace": _whitespace}
IMAGE = {"noise": _noise, "blur": _blur, "brightness": _brightness, "occlusion": _occlusion, "jpeg": _jpeg}
AUDIO = {"noise": _audio_noise}
TABLE = ("feature_noise", "missing")
ATTACKS = ("fgsm", "pgd")
PGD_STEPS = 10


@dataclass(frozen=True)
class Perturbation:
    name: str
    apply: Callable[[pd.DataFrame, float, int], pd.DataFrame]  # (rows, strength, seed) -> new rows


def _column(name: str, role: str, each, make_rng) -> Perturbation:
    """A perturbation of one input role's column: `each(value, strength, rng)` on every row."""
    def apply(frame, s, seed):
        rng = make_rng(seed)
        out = frame.copy()
        out[role] = [each(v, s, rng) for v in frame[role]]
        return out
    return Perturbation(name, apply)


def _on_text(fn):
    return lambda t, s, rng: fn(t, s, rng) if isinstance(t, str) else t


def _on_pixels(fn):
    def each(value, s, rng):
        from PIL import Image

        return Image.fromarray(fn(_pixels(value), s, rng))
    return each


def _table(name: str, features: list[str]) -> Perturbation:
    def apply(frame, s, seed):
        rng = np.random.default_rng(seed)
        out = frame.copy()
        for column in features:
            values = out[column]
            if name == "missing":
                gone = rng.random(len(values)) < s
                out[column] = values.astype(object).where(~gone, np.nan) if gone.any() else values
            elif pd.api.types.is_numeric_dtype(values) and s > 0:
                spread = float(np.nanstd(values.to_numpy(dtype=float))) or 1.0
                out[column] = values.to_numpy(dtype=float) + rng.normal(0.0, s * spread, len(values))
        return out
    return Perturbation(name, apply)


def perturbations(roles, features: list[str]) -> dict[str, Perturbation]:
    """Every perturbation that applies to inputs of these roles and feature columns."""
    out: dict[str, Perturbation] = {}
    if "text" in roles:
        out |= {n: _column(n, "text", _on_text(fn), random.Random) for n, fn in TEXT.items()}
    if "image" in roles:
        out |= {n: _column(n, "image", _on_pixels(fn), np.random.default_rng) for n, fn in IMAGE.items()}
    if "audio" in roles:
        out |= {n: _column(n, "audio", fn, np.random.default_rng) for n, fn in AUDIO.items()}
    if features:
        out |= {n: _table(n, features) for n in TABLE}
    return out


def check_strengths(strengths, where: str = "evaluate.robustness.strengths") -> list[float]:
    for s in strengths:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0:
            raise DanluError(f"{where}: strength {s!r} is out of range; a strength is a share in [0, 1] "
                             "(0 leaves the input as it is)")
    return [float(s) for s in strengths]


def choose(available: dict[str, Perturbation], names) -> dict[str, Perturbation]:
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DanluError(f"evaluate.robustness.perturbations: '{unknown[0]}' does not apply to these inputs; "
                         f"they take: {', '.join(available) or 'none'}")
    return {n: available[n] for n in names}


# -- the measurement ---------------------------------------------------------------------


def measure(task, forward, frame: pd.DataFrame, features: list[str], strengths, names=None,
            attack_epsilons=(), seed: int = 0, batch_size: int = 64, say=lambda msg: None) -> dict:
    """{metric, clean, rows: [{perturbation, strength, metric}], attacks: [{attack, epsilon, metric}]}: the task's
    main metric on `frame` as is, then under each perturbation and strength through `forward` (any model form,
    danlu.inference), then under FGSM and PGD, which need the PyTorch model behind it."""
    strengths = check_strengths(strengths)
    chosen = choose(perturbations(task.spec.input_roles, features), names)
    metric = task.spec.main_metric
    key = task.spec.capabilities.gradient_input
    model = getattr(forward, "model", None)
    if attack_epsilons and (key is None or not task.spec.has_classes):
        raise DanluError(f"evaluate.robustness.attack: a {task.name} model has no input to take gradients through "
                         "for a class loss; drop the attack's epsilons")
    if attack_epsilons and model is None:
        raise DanluError("robustness attacks need gradients, and this model form has none (an ONNX variant); "
                         "attack the run's own PyTorch model")

    def score(rows: pd.DataFrame) -> float:
        return float(task.evaluate(forward, task.encode(rows))[metric])

    clean = score(frame)
    rows = []
    for name, perturbation in chosen.items():
        for s in strengths:
            rows.append({"perturbation": name, "strength": s, "metric": score(perturbation.apply(frame, s, seed))})
        say(f"robustness: {name} " + ", ".join(f"{r['strength']:g}: {r['metric']:.4f}" for r in rows[-len(strengths):]))
    out = {"metric": metric, "greater_is_better": task.spec.greater_is_better, "rows_measured": len(frame),
           "clean": clean, "rows": rows, "attacks": []}
    dataset = task.encode(frame) if attack_epsilons else None
    for attack in ATTACKS:
        for eps in attack_epsilons:
            value = attacked_metric(task, model, dataset, key, attack, float(eps), batch_size)
            out["attacks"].append({"attack": attack, "epsilon": float(eps), "metric": value})
            say(f"robustness: {attack} epsilon {eps:g}: {value:.4f}")
    out["worst"] = worst(out)
    return out


def worst(result: dict) -> float:
    """The least favourable metric of the table (attacks included): what `--min-robust-metric` compares."""
    values = [r["metric"] for r in result["rows"]] + [a["metric"] for a in result["attacks"]] + [result["clean"]]
    return min(values) if result.get("greater_is_better", True) else max(values)


def attacked_metric(task, model, dataset, key: str, attack: str, eps: float, batch_size: int = 64) -> float:
    from danlu.inference import batches

    model.eval()
    parts, labels = [], []
    collated, y_all = batches(task, dataset, batch_size)
    if y_all is None:
        raise DanluError("robustness attacks need labelled rows")
    at = 0
    for batch in collated:
        n = len(next(iter(v for v in batch.values() if hasattr(v, "shape"))))
        y = y_all[at:at + n]
        at += n
        parts.append(adversarial_logits(model, batch, key, y, attack, eps))
        labels.append(y)
    return float(task.metrics(task.join_outputs(parts), task.join_outputs(labels))[task.spec.main_metric])


def adversarial_logits(model, batch: dict, key: str, labels, attack: str, eps: float) -> np.ndarray:
    """The model's logits on the batch moved within an L-infinity ball of radius eps (in the input's units)
    to raise its loss: one signed-gradient step (FGSM) or PGD_STEPS projected ones."""
    import torch

    from danlu.trust.gradients import input_unit, logits_of, split_batch

    x, extras = split_batch(model, batch, key)
    y = torch.as_tensor(np.asarray(labels), device=x.device).long()
    radius = eps * input_unit(model, key)
    bounded = key == "pixel_values" and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    steps, alpha = (1, radius) if attack == "fgsm" else (PGD_STEPS, 2.5 * radius / PGD_STEPS)
    adv = x.clone()
    for _ in range(steps if radius > 0 else 0):
        adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(logits_of(model, key, extras, adv), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - radius), x + radius)
        if bounded:
            adv = adv.clamp(0.0, 1.0)
    with torch.no_grad():
        return logits_of(model, key, extras, adv.detach()).cpu().numpy()


def measure_split(task, forward, frames: dict, features: list[str], config, say=lambda msg: None) -> dict:
    """`evaluate.robustness` (a RobustnessConfig) on one split of the run's frames, at most config.limit rows
    (a seeded sample: every strength and attack sees the same rows)."""
    frame = frames.get(config.split)
    if frame is None or not len(frame):
        raise DanluError(f"evaluate.robustness.split: the run has no {config.split} rows to measure")
    if config.limit and len(frame) > config.limit:
        frame = frame.sample(n=config.limit, random_state=config.seed).reset_index(drop=True)
    result = measure(task, forward, frame, features, config.strengths, config.perturbations, config.attack,
                     seed=config.seed, say=say)
    return {"split": config.split, **result}


# -- reporting ---------------------------------------------------------------------------


def curves_png(result: dict) -> bytes:
    """One line per perturbation: the metric against strength; the clean metric dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in dict.fromkeys(r["perturbation"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["perturbation"] == name]
        ax.plot([r["strength"] for r in rows], [r["metric"] for r in rows], marker="o", label=name)
    ax.axhline(result["clean"], color="grey", linestyle="--", label="clean")
    ax.set_xlabel("strength")
    ax.set_ylabel(result["metric"])
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per perturbation, one column per strength; then one per attack."""
    strengths = list(dict.fromkeys(r["strength"] for r in result["rows"]))
    headers = ["perturbation"] + [f"{s:g}" for s in strengths]
    rows = []
    for name in dict.fromkeys(r["perturbation"] for r in result["rows"]):
        cells = {r["strength"]: r["metric"] for r in result["rows"] if r["perturbation"] == name}
        rows.append([name] + [f"{cells[s]:.4f}" if s in cells else "" for s in strengths])
    for a in result["attacks"]:
        rows.append([f"{a['attack']} epsilon {a['epsilon']:.4g}", f"{a['metric']:.4f}"] + [""] * (len(strengths) - 1))
    return headers, rows


def summary(result: dict) -> str:
    return (f"{result['metric']} on {result.get('rows_measured', '?')} {result.get('split', '')} rows: clean "
            f"{result['clean']:.4f}, worst {result['worst']:.4f}")


def table_lines(result: dict) -> list[str]:
    headers, rows = table_rows(result)
    return [summary(result), "", "| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def report_section(result: dict) -> tuple:
    headers, rows = table_rows(result)
    return ("Robustness", [("text", summary(result) + ". Strength is a share in [0, 1]; the attacks' epsilon is in "
                                    "the attacked input's units."),
                           ("table", headers, rows),
                           ("image", "plots/robustness.png", curves_png(result), "metric against strength")])

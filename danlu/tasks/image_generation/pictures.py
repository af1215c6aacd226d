"""The GAN's report sections: both networks' losses over training, and the fixed-noise previews.

Drawn from the record the model keeps while it trains (GanModel.record, carried through a resume in the
loop's checkpoints): per epoch, the mean losses and scores and a preview grid of the same noise.
"""

from __future__ import annotations

import base64
import io

import torch

from danlu.tasks.image_generation.models import png_bytes, to_uint8

CLASS_COLUMNS = 10  # samples per class in the final class grid
SHOWN_EPOCHS = 6  # previews in the report: evenly spaced over training, the first and the last among them


def training_sections(model, task) -> list:
    record = list(getattr(model, "record", []))
    if not record:
        return []
    sections = [("Generator and discriminator", [("image", "plots/gan_losses.png", loss_plot(record),
                                                  "losses of both networks per epoch")]), previews(record)]
    if model.config.conditional:
        sections.append(class_grid(model, task))
    return sections


def loss_plot(record: list[dict]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in record]
    fig = Figure(figsize=(9.6, 3.4))
    losses, scores = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, name in (("epoch_loss_discriminator", "discriminator"), ("epoch_loss_generator", "generator")):
        losses.plot(epochs, [r.get(key) for r in record], "o-", label=name, linewidth=1.2, markersize=3)
    losses.set(xlabel="epoch", ylabel="mean loss (BCE)", title="Losses")
    for key, name in (("epoch_real_score", "D(real)"), ("epoch_fake_score", "D(G(z))")):
        scores.plot(epochs, [r.get(key) for r in record], "o-", label=name, linewidth=1.2, markersize=3)
    scores.set(xlabel="epoch", ylabel="mean probability of 'real'", title="Discriminator scores", ylim=(0, 1))
    for ax in (losses, scores):
        ax.grid(alpha=0.3)
        ax.legend()
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def shown(record: list[dict], most: int) -> list[dict]:
    """Up to `most` entries evenly spaced over the record, the first and the last among them."""
    if len(record) <= most:
        return record
    step = (len(record) - 1) / (most - 1)
    return [record[round(i * step)] for i in range(most)]


def previews(record: list[dict]) -> tuple:
    blocks: list = [("text", "The same fixed noise (gan.seed) drawn after each epoch shown (conditional: the "
                             "classes in turn).")]
    for entry in shown(record, SHOWN_EPOCHS):
        epoch = entry["epoch"]
        blocks += [("text", f"after epoch {epoch}"),
                   ("image", f"plots/samples_epoch_{epoch:03d}.png", base64.b64decode(entry["preview"]),
                    f"samples after epoch {epoch}")]
    return "Samples over training", blocks


def class_grid(model, task) -> tuple:
    k = len(task.labels)
    ids = torch.arange(k).repeat_interleave(CLASS_COLUMNS)
    images = to_uint8(model.generate(model.noise(len(ids), model.config.seed + 2), ids))
    grid = task.image_grid(images, CLASS_COLUMNS)
    names = ", ".join(str(v) for v in task.labels)
    return ("Samples by class", [("text", f"One row per class ({names}), {CLASS_COLUMNS} samples each."),
                                 ("image", "plots/samples_by_class.png", png_bytes(grid), "samples by class")])

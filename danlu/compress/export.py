"""`danlu export RUN --format onnx|safetensors`: the model in a folder another program can load.

onnx: model.onnx (fp32, or the named ONNX variant) with the tokenizer / processor files and
config.json beside it; it reuses RUN/variants/onnx-fp32 when `danlu compress` made it, else exports.
safetensors: what save_pretrained writes (model.safetensors + config.json) with the tokenizer /
processor files, so AutoTokenizer/AutoModel...from_pretrained(folder) loads it. A task that prepares
its input outside the network (a table's scaling and one-hot columns) puts that preprocessing into the
exported ONNX graph, so plain onnxruntime reads the raw input and agrees with the run. `--variant` takes
a pruned PyTorch variant or the distilled student instead of the trained model; the tokenizer /
processor files are the variant's own (a student's come from its run, RUN/variants/student-run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from danlu.compress.runtime import MANIFEST, WEIGHT_SUFFIXES, inside
from danlu.errors import DanluError
from danlu.run import Run, atomic_write_bytes, read_json

FORMATS = ("onnx", "safetensors")


def export_run(run_dir, fmt: str, output=None, variant: str | None = None) -> list[Path]:
    """Write the export into `output` (default RUN/export/<format or variant>); returns every file written."""
    from danlu.tasks import load_task

    if fmt not in FORMATS:
        raise DanluError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    run = Run(run_dir)
    model_dir = run.require_model()
    out = Path(output) if output else run.export_dir(variant or fmt)
    if out.exists() and not out.is_dir():
        raise DanluError(f"{out} is a file; -o names a folder")
    source, preprocessing = _variant_folder(run, variant) if variant else (None, None)
    model_dir = preprocessing or model_dir  # where the tokenizer / processor and config.json come from
    task, model = load_task(model_dir)
    if fmt not in task.spec.capabilities.export:
        raise DanluError(f"--format {fmt}: {task.name} models export as {', '.join(task.spec.capabilities.export)}")
    written = []
    if fmt == "onnx":
        written.append(_write_onnx(run, task, model, source, variant, out))
        written.append(_copy(model_dir / "config.json", out / "config.json"))
    else:
        weights = model_dir if source is None else source
        files = [p for p in weights.iterdir() if p.name.endswith(".safetensors") or p.name == "config.json"]
        if not any(p.name.endswith(".safetensors") for p in files):
            raise DanluError(f"{weights} holds no safetensors weights (an ONNX or int8 variant exports with "
                             "--format onnx)")
        written += [_copy(p, out / p.name) for p in files]
    # The tokenizer / processor, the preprocessing and danlu's own metadata: everything else in model/.
    written += [_copy(p, out / p.name) for p in sorted(model_dir.iterdir())
                if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES) and p.name != "config.json"]
    return written


def _write_onnx(run: Run, task, model, source: Path | None, variant: str | None, out: Path) -> Path:
    """out/model.onnx: the variant's graph, the run's onnx-fp32 variant, or a fresh export, with the
    task's preprocessing put in front of it (Task.export_graph), so the file stands on its own."""
    import onnx

    if source is None:
        source = run.variant("onnx-fp32")
        proto = onnx.load(source / "model.onnx") if (source / "model.onnx").exists() else _export_fresh(run, task,
                                                                                                          model)
    elif (source / "model.onnx").exists():
        proto = onnx.load(source / "model.onnx")
    else:
        raise DanluError(f"variant '{variant}' is not an ONNX variant (no model.onnx)")
    target = out / "model.onnx"
    atomic_write_bytes(target, task.export_graph(proto).SerializeToString())
    return target


def _variant_folder(run: Run, name: str) -> tuple[Path, Path]:
    """(the folder holding the variant's network, the folder holding its tokenizer / processor)."""
    folder = run.variant(name)
    if not (folder / MANIFEST).exists():
        raise DanluError(f"{run.root}: no variant '{name}' (run `danlu compress` first)")
    manifest = read_json(folder / MANIFEST)
    return (inside(run, folder / manifest.get("weights_dir", "."), name),
            inside(run, folder / manifest.get("preprocessing", "../../model"), name))


def _export_fresh(run: Run, task, model):
    from danlu.compress.build import export_onnx
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe

    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    frames = check_data(recipe)[0].frames
    frame = next((f for f in frames.values() if len(f)), None)
    if frame is None:
        raise DanluError(f"{run.root}: no data to trace the model with")
    data = task.encode(frame.head(2))
    proto, _ = export_onnx(model, task.collate([data[i] for i in range(len(data))]), task.sequence_inputs)
    return proto


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

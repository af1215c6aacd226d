"""`danlu compress RUN`: build every requested variant, then measure each on the run's test split.

All variants are built first and the build's memory is released before any measurement, so one
variant's peak memory is not another's leftovers; then each is scored alone (quality, memory), then
all are timed in turn (see danlu.compress.measure). Figures land in RUN/variants/variants.json and
RUN/variants/report.md.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import numpy as np
import torch

from danlu.compress.build import (BASELINE, DEFAULT_VARIANTS, Spec, export_onnx, parse_variants, save_onnx,
                                  save_torch_int8, save_torch_variant, variant_folder, write_manifest)
from danlu.compress.measure import batches_of, interleaved, latency, quality_and_memory
from danlu.compress.prune import make_permanent, prunable, pruned_copy, recover, sparsity, units_removed
from danlu.compress.report import write_all
from danlu.compress.runtime import load_variant, size_of, variants_dir
from danlu.errors import DanluError
from danlu.evaluate.metrics import greater_is_better
from danlu.models import count_parameters
from danlu.run import Run

log = logging.getLogger("danlu")


def compress_run(run_dir, variants=DEFAULT_VARIANTS, batch: int = 32, recovery_steps: int = 200,
                 threads: int = 1, latency_examples: int = 300, say=None) -> list[dict]:
    """Build and measure `variants` (names as in danlu.compress.build) of a finished run; returns the figures."""
    from danlu.pipeline import check_data, main_metric
    from danlu.recipe import load_recipe
    from danlu.tasks import load_task
    from danlu.train.engine import silence_transformers

    say = say or log.info
    specs = parse_variants(variants)
    if batch < 1 or threads < 1 or latency_examples < 1 or recovery_steps < 0:
        raise DanluError("--batch, --threads and --latency-examples must be >= 1, --recovery-steps >= 0")
    silence_transformers()
    run = Run(run_dir)
    run.require_model()
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    task, base = load_task(run.model_dir)
    metric = run.state().get("main_metric") or main_metric(recipe)

    say("load data")
    # The same loading and quality gate as training, so the test rows are the ones metrics.json scored.
    frames = check_data(recipe)[0].frames
    split = next((s for s in ("test", "validation") if len(frames.get(s, ())) > 0), None)
    if split is None or "label" not in frames[split]:
        raise DanluError(f"{run.root}: the recipe gives no labelled test or validation split to measure on")
    data = task.encode(frames[split])
    big, labels = batches_of(task, data, batch)
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(data), size=min(latency_examples, len(data)), replace=False).tolist())
    single, _ = batches_of(task, data, 1, sample)
    example = task.collate([data[i] for i in range(min(2, len(data)))])

    root = variants_dir(run.root)
    train = _recovery_data(task, frames, recipe, recovery_steps) if any(s.prune for s in specs) else None
    cache: dict = {}
    for spec in specs:
        say(f"build {spec.name}")
        _build(spec, run, base, task, recipe, example, root, cache, train, recovery_steps)
    del base, cache, train, frames
    gc.collect()
    # Everything alive now outlives the measurements: frozen, the per-variant collections skip it (each
    # full collection otherwise walks every torch / exporter object, about 0.5 s).
    gc.freeze()

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    figures, reference = [], None
    try:
        for spec in specs:
            say(f"measure {spec.name}: quality and memory")
            got, logits = quality_and_memory(lambda: load_variant(run.root, spec.name, task=task, threads=threads),
                                             task, big, labels, metric)
            reference = logits if reference is None else reference
            figures.append(_entry(spec, run, got, logits, reference, split, len(data), threads, batch, metric))
        say(f"measure latency: {len(specs)} variants in turn, batch {batch} and batch 1")
        loaded = {s.name: load_variant(run.root, s.name, task=task, threads=threads).predict_logits for s in specs}
        timed = {size: interleaved(loaded, batches) for size, batches in ((str(batch), big), ("1", single))}
        del loaded
        for entry in figures:
            entry["latency"] = {size: latency(*timed[size][entry["name"]]) for size in ("1", str(batch))}
    finally:
        torch.set_num_threads(previous)
        gc.unfreeze()
    _relative(figures, str(batch))
    context = {"run": run.root.name, "split": split, "examples": len(data), "threads": threads, "batch": batch,
               "latency_examples": len(sample), "main_metric": metric, "memory_method": figures[0]["memory_method"]}
    write_all(root, figures, context)
    return figures


def _recovery_data(task, frames, recipe, steps: int):
    if steps == 0 or len(frames.get("train", ())) == 0:
        return None
    # Only as many rows as the fine-tune will read: encoding all of a large train split costs more.
    need = steps * recipe.train.batch_size * recipe.train.grad_accum
    frame = frames["train"]
    if len(frame) > need:
        frame = frame.sample(n=need, random_state=recipe.train.seed)
    return task.encode(frame)


def _pruned(spec: Spec, base, task, recipe, root: Path, cache: dict, train, steps: int):
    """The pruned (and recovered) model for spec.prune, made once per call and shared by its formats."""
    if spec.prune not in cache:
        kind, amount = spec.prune
        model, masked, info = pruned_copy(base, kind, amount)
        recovery = None
        if train is not None and steps > 0:
            recovery = recover(model, task, recipe, train, steps, root / f".recovery-{kind}-{amount:g}")
            model = recovery.pop("model")
        make_permanent(masked)
        model.eval()
        removed = units_removed(info)  # structured pruning that removed units; else the share of zeros
        info["sparsity"] = round(removed if removed is not None else sparsity(prunable(model)), 6)
        cache[spec.prune] = (model, info, recovery)
    return cache[spec.prune]


def _build(spec: Spec, run: Run, base, task, recipe, example: dict, root: Path, cache: dict, train, steps: int):
    fields = {"name": spec.name, "preprocessing": "../../model"}
    model = base
    if spec.prune:
        model, info, recovery = _pruned(spec, base, task, recipe, root, cache, train, steps)
        fields.update(pruning=info, recovery=recovery, sparsity=info["sparsity"])
    fields["parameters"], _ = count_parameters(model)
    fields["nonzero_parameters"] = int(sum(int((p != 0).sum()) for p in model.parameters()))
    with variant_folder(root, spec.name) as folder:
        if spec.name == BASELINE:
            write_manifest(folder, runtime="torch", precision="fp32", weights_dir="../../model",
                           size_bytes=size_of(run.model_dir), **fields)
        elif spec.format == "pytorch-fp32":
            save_torch_variant(model, folder, **fields)
        elif spec.format == "torch-int8":
            save_torch_int8(model, folder, **fields)
        else:
            if ("onnx", spec.prune) not in cache:  # one export serves both onnx-fp32 and onnx-int8
                cache["onnx", spec.prune] = export_onnx(model, example)
            inputs = [k for k in example if k != "labels"]
            save_onnx(cache["onnx", spec.prune], folder, int8=spec.format == "onnx-int8", inputs=inputs, **fields)


def _entry(spec, run, got, logits, reference, split, examples, threads, batch, metric) -> dict:
    from danlu.run import read_json

    manifest = read_json(variants_dir(run.root) / spec.name / "variant.json")
    entry = {
        "name": spec.name, "format": "onnx" if manifest["runtime"] == "onnx" else "pytorch",
        "runtime": manifest["runtime"], "precision": manifest["precision"], "path": f"variants/{spec.name}",
        "exporter": manifest.get("exporter"), "pruning": manifest.get("pruning"),
        "sparsity": manifest.get("sparsity"), "recovery": manifest.get("recovery"),
        "parameters": manifest.get("parameters"), "nonzero_parameters": manifest.get("nonzero_parameters"),
        "greater_is_better": greater_is_better(metric), "split": split, "examples": examples,
        "threads": threads, "batch": batch, "size_bytes": manifest["size_bytes"], **got,
        "max_abs_logit_diff": float(np.abs(logits - reference).max()) if logits.shape == reference.shape else None,
        "agreement_with_baseline": (float((logits.argmax(-1) == reference.argmax(-1)).mean())
                                    if logits.ndim == 2 and logits.shape[1] > 1 else None),
    }
    if entry["exporter"] == "torchscript":
        entry["notes"] = "exported with the TorchScript exporter (torch.export could not trace this model)"
    return entry


def _relative(figures: list[dict], n: str) -> None:
    """Ratios against the baseline (the first entry): speed-up, size ratio, metric change."""
    base = figures[0]
    for v in figures:
        def ratio(a, b):
            return round(a / b, 3) if b else None
        delta = (None if v["main_value"] is None or base["main_value"] is None
                 else round(v["main_value"] - base["main_value"], 6))
        v["vs_baseline"] = {
            "speedup_p50_b1": ratio(base["latency"]["1"]["p50_ms"], v["latency"]["1"]["p50_ms"]),
            "speedup_p95_b1": ratio(base["latency"]["1"]["p95_ms"], v["latency"]["1"]["p95_ms"]),
            f"speedup_p50_b{n}": ratio(base["latency"][n]["p50_ms"], v["latency"][n]["p50_ms"]),
            f"throughput_ratio_b{n}": ratio(v["latency"][n]["throughput_per_s"],
                                            base["latency"][n]["throughput_per_s"]),
            "size_ratio": ratio(base["size_bytes"], v["size_bytes"]),
            "metric_delta": delta,
        }

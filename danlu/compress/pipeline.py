"""`danlu compress RUN`: build every requested variant, then measure each on the run's test split.

All variants are built first and the build's memory is released before any measurement, so one
variant's peak memory is not another's leftovers; then each is scored alone (quality, memory), then
all are timed in turn (see danlu.compress.measure). Figures land in RUN/variants/variants.json and
RUN/variants/report.md.

A distilled student (danlu.compress.student) reads its input with its own tokenizer: each variant
is measured on the same rows, encoded by the task of the model it was made from.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import numpy as np
import torch

from danlu.compress.build import (BASELINE, Spec, default_variants, export_onnx, parse_variants, save_onnx,
                                  save_torch_int8, save_torch_variant, variant_folder, write_manifest)
from danlu.compress.measure import interleaved, latency, quality_and_memory
from danlu.compress.prune import make_permanent, prunable, pruned_copy, recover, sparsity, units_removed
from danlu.compress.report import write_all
from danlu.compress.student import describe, student_recipe, train_student
from danlu.compress.runtime import MANIFEST, load_variant, size_of
from danlu.errors import DanluError
from danlu.inference import batches as batches_of
from danlu.models import count_parameters
from danlu.run import Run

log = logging.getLogger("danlu")


def compress_run(run_dir, variants=None, batch: int = 32, recovery_steps: int = 200,
                 threads: int = 1, latency_examples: int = 300, say=None) -> list[dict]:
    """Build and measure `variants` (names as in danlu.compress.build) of a finished run; returns the figures.

    `variants` None: danlu.compress.DEFAULT_VARIANTS, and `student` when the recipe has compress.student.
    """
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe
    from danlu.tasks import load_task
    from danlu.train import silence_transformers

    say = say or log.info
    specs = parse_variants(variants) if variants is not None else None
    if batch < 1 or threads < 1 or latency_examples < 1 or recovery_steps < 0:
        raise DanluError("--batch, --threads and --latency-examples must be >= 1, --recovery-steps >= 0")
    silence_transformers()
    run = Run(run_dir)
    run.require_model()
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    specs = specs if specs is not None else parse_variants(default_variants(recipe))
    check_capabilities(recipe.spec, specs)
    # The student's recipe is derived and checked (task, shape) before any work.
    derived = student_recipe(run.root, recipe) if any(s.student for s in specs) else None
    task, base = load_task(run.model_dir)
    metric = run.state().get("main_metric") or recipe.main_metric

    say("load data")
    # The same loading and quality gate as training, so the test rows are the ones metrics.json scored.
    frames = check_data(recipe)[0].frames
    split = next((s for s in ("test", "validation") if len(frames.get(s, ())) > 0), None)
    targets = [r for r in recipe.spec.roles if r not in recipe.spec.input_roles]  # label, transcript, target
    if split is None or any(t not in frames[split] for t in targets):
        raise DanluError(f"{run.root}: the recipe gives no labelled test or validation split to measure on")
    # What each variant reads: the run's own encoding of the split, or the student's (its own tokenizer).
    feeds = {False: _feed(task, frames[split], batch, latency_examples)}
    examples = feeds[False]["examples"]

    root = run.variants
    student = None
    if derived is not None:
        feeds[True], student = _student(run, derived, base, frames[split], batch, latency_examples, say)
    train = _recovery_data(task, frames, recipe, recovery_steps) if any(s.prune for s in specs) else None
    cache: dict = {}
    for spec in specs:
        say(f"build {spec.name}")
        _build(spec, run, base, task, recipe, feeds[False]["example"], root, cache, train, recovery_steps, student)
    del base, cache, train, frames, student
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
            feed = feeds[spec.student]
            got, logits = quality_and_memory(
                lambda: load_variant(run.root, spec.name, task=feed["task"], threads=threads),
                feed["task"], feed["big"], feed["labels"], metric)
            reference = logits if reference is None else reference
            figures.append(_entry(spec, run, got, logits, reference, split, examples, threads, batch, metric,
                                  recipe.spec))
        say(f"measure latency: {len(specs)} variants in turn, batch {batch} and batch 1")
        loaded = {s.name: load_variant(run.root, s.name, task=feeds[s.student]["task"],
                                       threads=threads).forward for s in specs}
        timed = {size: interleaved(loaded, {s.name: feeds[s.student][key] for s in specs})
                 for size, key in ((str(batch), "big"), ("1", "single"))}
        del loaded
        for entry in figures:
            entry["latency"] = {size: latency(*timed[size][entry["name"]]) for size in ("1", str(batch))}
    finally:
        torch.set_num_threads(previous)
        gc.unfreeze()
    _relative(figures, str(batch))
    context = {"run": run.root.name, "split": split, "examples": examples, "threads": threads, "batch": batch,
               "latency_examples": len(feeds[False]["single"]), "main_metric": metric,
               "memory_method": figures[0]["memory_method"]}
    write_all(root, figures, context)
    return figures


def check_capabilities(task_spec, specs) -> None:
    """Every requested variant is one the task's models can be made into (the registry says which)."""
    offered = task_spec.capabilities.compress
    if not offered:
        raise DanluError(f"{task_spec.name} runs have no compressed variants")
    for spec in specs:
        wanted = [spec.format] if spec.format != BASELINE else []
        wanted += ["prune"] if spec.prune else []
        missing = [w for w in wanted if w not in offered]
        if missing:
            raise DanluError(f"variant '{spec.name}': {task_spec.name} models cannot be made into "
                             f"{', '.join(missing)} (offered: {', '.join(offered)})")
        if spec.student and not task_spec.capabilities.student:
            from danlu import registry

            offered = ", ".join(s.name for s in registry.specs() if s.capabilities.student)
            raise DanluError(f"variant '{spec.name}': danlu compress builds a distilled student for {offered} "
                             f"runs, not {task_spec.name}; train a smaller run with a `distill:` section "
                             "pointing at this one instead")


def _feed(task, frame, batch: int, latency_examples: int) -> dict:
    """The split encoded by `task`: batches of `batch`, the labels, a seeded sample of single examples
    (the same rows for every task) and an example batch to trace an export with."""
    data = task.encode(frame)
    big, labels = batches_of(task, data, batch)
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(data), size=min(latency_examples, len(data)), replace=False).tolist())
    single, _ = batches_of(task, data, 1, sample)
    example = task.collate([data[i] for i in range(min(2, len(data)))])
    return {"task": task, "big": big, "labels": labels, "single": single, "example": example,
            "examples": len(data)}


def _student(run: Run, derived, base, frame, batch: int, latency_examples: int, say) -> tuple[dict, tuple]:
    """Train (or reuse) the distilled student; its feed and (model, export example, description)."""
    from danlu.tasks import load_task

    student_run, reused = train_student(run.root, derived, say)
    task, model = load_task(student_run.model_dir)
    feed = _feed(task, frame, batch, latency_examples)
    where = str(student_run.root.relative_to(run.root))
    return feed, (model, feed["example"], describe(model, derived, count_parameters(base)[0], reused, where))


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


def _build(spec: Spec, run: Run, base, task, recipe, example: dict, root: Path, cache: dict, train, steps: int,
           student=None):
    """`student`: (model, export example, description) of the distilled student, for student variants."""
    fields = {"name": spec.name, "preprocessing": "../../model"}
    model = base
    if spec.student:
        model, example, info = student
        # The student reads its input with its own tokenizer, kept in its run's model folder.
        fields.update(preprocessing=f"../{run.student_run.name}/model", student=info)
    elif spec.prune:
        model, info, recovery = _pruned(spec, base, task, recipe, root, cache, train, steps)
        fields.update(pruning=info, recovery=recovery, sparsity=info["sparsity"])
    fields["parameters"], _ = count_parameters(model)
    fields["nonzero_parameters"] = int(sum(int((p != 0).sum()) for p in model.parameters()))
    with variant_folder(root, spec.name) as folder:
        if spec.name == BASELINE:
            write_manifest(folder, runtime="torch", precision="fp32", weights_dir="../../model",
                           size_bytes=size_of(run.model_dir), **fields)
        elif spec.student and spec.format == "pytorch-fp32":
            weights = run.student_run / "model"
            write_manifest(folder, runtime="torch", precision="fp32", weights_dir=fields["preprocessing"],
                           size_bytes=size_of(weights), **fields)
        elif spec.format == "pytorch-fp32":
            save_torch_variant(model, folder, **fields)
        elif spec.format == "torch-int8":
            save_torch_int8(model, folder, **fields)
        else:
            key = ("onnx", spec.prune, spec.student)
            if key not in cache:  # one export serves both onnx-fp32 and onnx-int8
                cache[key] = export_onnx(model, example, task.sequence_inputs)
            inputs = [k for k in example if k != "labels"]
            save_onnx(cache[key], folder, int8=spec.format == "onnx-int8", inputs=inputs, **fields)


def _entry(spec, run, got, logits, reference, split, examples, threads, batch, metric, recipe_spec) -> dict:
    from danlu.run import read_json

    manifest = read_json(run.variant(spec.name) / MANIFEST)
    entry = {
        "name": spec.name, "format": "onnx" if manifest["runtime"] == "onnx" else "pytorch",
        "runtime": manifest["runtime"], "precision": manifest["precision"], "path": f"variants/{spec.name}",
        "exporter": manifest.get("exporter"), "pruning": manifest.get("pruning"),
        "sparsity": manifest.get("sparsity"), "recovery": manifest.get("recovery"),
        "parameters": manifest.get("parameters"), "nonzero_parameters": manifest.get("nonzero_parameters"),
        "student": manifest.get("student"),
        "greater_is_better": recipe_spec.higher_is_better(metric), "split": split, "examples": examples,
        "threads": threads, "batch": batch, "size_bytes": manifest["size_bytes"], **got,
        "max_abs_logit_diff": float(np.abs(logits - reference).max()) if logits.shape == reference.shape else None,
        "agreement_with_baseline": (float((logits.argmax(-1) == reference.argmax(-1)).mean())
                                    if logits.ndim == 2 and logits.shape[1] > 1 else None),
    }
    notes = []
    if entry["exporter"] == "torchscript":
        notes.append("exported with the TorchScript exporter (torch.export could not trace this model)")
    student = entry["student"]
    if student and student["parameters"] >= student["teacher_parameters"]:
        notes.append(f"the student ({student['parameters']:,} parameters) is not smaller than the run's model "
                     f"({student['teacher_parameters']:,}); give compress.student a smaller shape")
    if notes:
        entry["notes"] = "; ".join(notes)
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

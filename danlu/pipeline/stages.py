"""`danlu train RECIPE`: check data -> pretrain -> features -> train -> evaluate -> baselines -> save -> report.

Each stage is a small function; the run directory records its state so that the same command on an
interrupted run picks up where it stopped. Every stage asks the task (and the registry) what to do;
none of them knows which task it runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from danlu.data import check_quality, enforce, load_splits, save_report
from danlu.errors import RunError
from danlu.inference import TorchForward
from danlu.models import count_parameters
from danlu.pipeline.baselines import compare, measure_baselines
from danlu.pipeline.cross_validation import cross_validate
from danlu.pipeline.fit import distributed_refusal, fit_task
from danlu.pipeline.plan import plan_training
from danlu.pipeline.pretrain import pretrain_stage, summary
from danlu.recipe import Recipe
from danlu.report import ReportInputs, write_report
from danlu.run import Run, atomic_write_json, atomic_write_text, read_json, save_atomically, split_metrics
from danlu.tasks import make_task, new_task
from danlu.track import TensorBoardLog, Tracker
from danlu.train import silence_transformers
from danlu.train.fitting import seed_everything
from danlu.train.distributed import check_strategy, is_main, per_device_batch, world_size
from danlu.train.memory import PeakMemory

log = logging.getLogger("danlu")


def recipe_hash(recipe: Recipe) -> str:
    return hashlib.sha256(recipe.to_yaml().encode()).hexdigest()[:16]


def open_run(recipe: Recipe, out_dir: str | Path | None, runs_root: str | Path = "runs") -> tuple[Run, bool]:
    """The run directory to use and whether it resumes an interrupted run of the same recipe."""
    digest = recipe_hash(recipe)
    if out_dir is not None:
        run = Run(out_dir)
        state = run.state()
        if state.get("status") == "done":
            raise RunError(f"{run.root} already holds a finished run; choose another -o or remove it")
        if state and state.get("recipe_hash") != digest:
            raise RunError(f"{run.root} holds an unfinished run of a different recipe; choose another -o "
                           "or remove it")
        return run, bool(state)
    root = Path(runs_root)
    unfinished = sorted(
        (p for p in root.glob(f"{recipe.name}-*") if p.is_dir()
         and Run(p).state().get("status") in ("running", "failed", "interrupted")
         and Run(p).state().get("recipe_hash") == digest),
        key=lambda p: p.name,
    )
    if unfinished:
        return Run(unfinished[-1]), True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{recipe.name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{recipe.name}-{stamp}-{n}"
    return Run(path), False


def check_data(recipe: Recipe, run: Run | None = None):
    """Load the splits and run the quality gate; stops (DataError) when the gate fails with on_fail: stop."""
    spec = recipe.spec
    if spec.data_stage:
        splits, report = spec.load_data(recipe)
    else:
        roles = list(spec.roles)
        splits = load_splits(recipe.data, roles, recipe.base_dir, seed=recipe.data.split.seed,
                             classification=spec.has_classes)
        report = check_quality(splits, recipe.quality, roles, spec.has_classes)
    if run is not None:
        save_report(report, run.root)
    warnings = enforce(report, recipe.quality.on_fail)
    return splits, report, warnings or []


def train(recipe: Recipe, out_dir: str | Path | None = None, runs_root: str | Path = "runs",
          on_stage=None, track_parent: str | None = None, watchers=(), estimate: bool = False) -> Run:
    """`track_parent`: the tracker run this one is a child of (a tuning trial); `watchers`: objects told
    of each evaluation during training (danlu.train.fitting.EvalWatcher), which may stop it; `estimate`:
    estimate memory and time first (a probe of a few steps on a copy of the model), shown in the report
    beside the measured figures."""
    silence_transformers()
    say = on_stage or (lambda msg: log.info(msg))
    if world_size() > 1:
        check_distributed(recipe, out_dir)
        if not is_main():  # every process trains; only the main one writes the run directory or says so
            _train_stages(recipe, Run(out_dir), _silent, watchers, False)
            return Run(out_dir)
    run, resuming = open_run(recipe, out_dir, runs_root)
    # Before anything is written or trained: a tracker that cannot be written stops the run here.
    tracker = Tracker.for_recipe(recipe, runs_root)
    tracked = None
    if tracker is not None:
        tracked = tracker.start(run.root.name, recipe.model_dump(mode="json", by_alias=True, exclude_none=True),
                                parent=track_parent, resume=(run.state().get("tracker") or {}).get("run_id"))
    run.root.mkdir(parents=True, exist_ok=True)
    say(f"{'resuming' if resuming else 'run'}: {run.root}")
    atomic_write_text(run.recipe_path, recipe.to_yaml())
    run.mark_running(recipe_hash=recipe_hash(recipe), name=recipe.name, task=recipe.task,
                     main_metric=recipe.main_metric, recipe_dir=str(recipe.base_dir) if recipe.base_dir else None)
    if tracked:
        run.set_state(tracker={"uri": tracker.uri, "run_id": tracked, "link": tracker.link(tracked)})
    board = TensorBoardLog.for_recipe(recipe, run)
    # the trackers hear of each history entry as the engine logs it
    live = [w for w in (tracker.live(tracked) if tracked else None, board) if w is not None]
    try:
        _train_stages(recipe, run, say, [*watchers, *live], estimate)
    except BaseException as exc:
        # A failed or interrupted run resumes with the same command.
        run.set_state(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                      error=str(exc)[:500] or type(exc).__name__)
        if tracked:
            tracker.end(tracked, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        if board is not None:
            board.close()
        raise
    run.set_state(status="done", error=None)
    if tracked:
        tracker.finish(tracked, run)
        say(f"tracked: {tracker.link(tracked)}")
    if board is not None:
        board.finish(run)
        say(f"tensorboard: tensorboard --logdir {board.folder}")
    return run


def _train_stages(recipe: Recipe, run: Run, say, watchers=(), estimate: bool = False) -> None:
    say("check data")
    splits, quality, warnings = check_data(recipe, run if is_main() else None)
    frames = splits.frames
    metric = recipe.main_metric

    shipped = recipe  # as written: the report shows this one, not the one pointing at RUN/pretrain
    recipe, pretrained = pretrain_stage(recipe, frames["train"], run, say)

    cv = None
    if recipe.evaluate.cross_validation:
        say(f"cross-validation: {recipe.evaluate.cross_validation} folds")
        cv = cross_validate(recipe, splits, run)

    say("features")
    task = make_task(recipe)
    task.setup(frames["train"], splits.features, splits.categorical)
    for note in task.notes():
        say(f"note: {note}")
    seed_everything(recipe.train.seed)  # the engines seed only after the model exists: seed its weights too
    model = task.build_model()
    data = {name: task.encode(frame, train=name == "train") for name, frame in frames.items() if len(frame)}
    plan = plan_training(recipe, task, model, frames["train"], data["train"])
    total, trainable = count_parameters(plan.model)
    say(f"train: {task.name}, {type(model).__name__}, {total:,} parameters ({trainable:,} trained), "
        f"{len(plan.train_ds):,} examples")

    estimated = _estimate(recipe, task, plan, data.get("validation"), run, say) if estimate else None
    with PeakMemory(plan.model) as peak:
        result = fit_task(recipe, task, plan, data.get("validation"), run.checkpoints, run.history_path, metric,
                          frames["train"], watchers=watchers)
    if not is_main():
        return  # what follows (evaluation, baselines, saving, the report) is the main process's alone
    measured = _measured(result, peak, estimated)
    atomic_write_json(run.root / "resources.json", {
        "peak_memory_bytes": peak.bytes, "peak_memory_how": peak.how, "seconds": result.seconds,
        "epochs": result.epochs, "steps": result.steps, "resumed_from": result.resumed_from,
        "estimate": estimated.to_dict() if estimated is not None else None})
    usage = _utilisation(recipe, task, plan, result, say)
    model = plan.finish(result.model)

    say("evaluate")
    forward = TorchForward(model)
    decision = task.tune_decision(forward, data.get("validation"))
    if decision:
        say(f"decision: predict {decision['class']} when its probability >= {decision['threshold']:.4f} "
            f"({decision['chosen_by']})")
    metrics = {name: task.evaluate(forward, data[name]) for name in recipe.evaluate.splits if name in data}
    if decision:
        metrics["decision"] = decision
    if cv:
        metrics["cross_validation"] = cv
    if usage:
        metrics["train_mfu"], metrics["utilisation"] = usage["train_mfu"], usage
    extra_metrics, task_sections = task.after_training(model, frames)
    metrics.update(extra_metrics)
    task_sections += _trust_stage(recipe, task, forward, frames, splits.features, result, metrics, say)

    baselines, verdicts = {}, []
    if recipe.evaluate.baseline:
        say("baselines")
        baselines = measure_baselines(task, frames, recipe.evaluate.splits)
        metrics["baselines"] = baselines
        verdicts = compare(metrics, baselines, metric, task.spec, task.baseline_names())
    atomic_write_json(run.metrics_path, metrics)

    say("save model")
    save_atomically(run.model_dir, lambda tmp: task.save(model, tmp))

    say("report")
    shown = split_metrics(metrics)
    write_report(run.root, ReportInputs(
        name=recipe.name, task=recipe.task, status="done", created=time.strftime("%Y-%m-%d %H:%M"),
        main_metric=metric, metrics=shown,
        baselines=baselines, baseline_names=task.baseline_names(), warnings=verdicts,
        notes=warnings + task.notes(), history=result.history, cross_validation=cv or {},
        task_sections=task.report_sections(shown) + task_sections,
        model={"arch": _describe(model), "parameters": total, "trainable": trainable,
               "source": _source(recipe, pretrained), **task.input_facts()},
        pretrain=summary(pretrained), adaptations=plan.notes + ([f"decision: predict {decision['class']} when its "
                                                                 f"probability >= {decision['threshold']:.4f} "
                                                                 f"({decision['chosen_by']})"] if decision else []),
        pretrain_history=_read_history(run.pretrain_dir / "history.json") if pretrained else [],
        training={"engine": task.engine, "seconds": f"{result.seconds:.1f}", "epochs": f"{result.epochs:g}",
                  "steps": result.steps, "precision": result.precision, "compile": result.compiled,
                  "resumed_from": result.resumed_from, "optimizer": recipe.train.optimizer,
                  "lr": f"{recipe.train.lr:g}", "batch_size": recipe.train.batch_size, **measured,
                  **_utilisation_facts(usage)},
        data_report_md=quality.to_markdown(), recipe_yaml=shipped.to_yaml()))


def _utilisation(recipe: Recipe, task, plan, result, say) -> dict:
    """Achieved FLOP/s and MFU of the training (danlu.train.utilisation); {} where it cannot be counted."""
    from danlu.train.utilisation import utilisation

    per_step = recipe.train.batch_size * recipe.train.grad_accum  # the global batch, however many processes
    try:
        usage = utilisation(result.model, task, plan.train_ds, recipe.train.batch_size, per_step, result.steps,
                            result.seconds, result.precision)
    except Exception as exc:  # noqa: BLE001 - a measurement must not lose a finished training
        say(f"note: the training's FLOPs could not be counted ({type(exc).__name__}: {str(exc)[:200]})")
        return {}
    if usage:
        say(f"utilisation: {usage['train_flops_per_s'] / 1e9:.2f} GFLOP/s, MFU {usage['train_mfu'] * 100:.2g}% "
            f"of the measured {result.precision} matmul peak ({usage['peak_flops_per_s'] / 1e9:.1f} GFLOP/s)")
    return usage


def _utilisation_facts(usage: dict) -> dict:
    if not usage:
        return {}
    return {"achieved GFLOP/s": f"{usage['train_flops_per_s'] / 1e9:.2f}",
            "MFU": f"{usage['train_mfu'] * 100:.2g}%",
            "matmul peak GFLOP/s": f"{usage['peak_flops_per_s'] / 1e9:.1f} ({usage['peak']['precision']}, "
                                   f"{usage['peak']['threads']} threads, {usage['peak']['device']})"}


def _silent(message: str) -> None:
    pass


def check_distributed(recipe: Recipe, out_dir, processes: int | None = None) -> None:
    """What a run on many processes needs, checked before any process trains."""
    processes = processes or world_size()
    per_device_batch(recipe.train.batch_size, processes)
    check_strategy(recipe.distributed)
    task = new_task(recipe.task, recipe)
    if task.engine == "loop":
        raise RunError(distributed_refusal(task))
    for key in ("pretrain", "joint", "distill"):
        if getattr(recipe, key) is not None:
            raise RunError(f"--nproc: {key}: trains on one process; train without --nproc")
    if recipe.evaluate.cross_validation:
        raise RunError("--nproc: evaluate.cross_validation trains its folds on one process; train without --nproc")
    if out_dir is None:
        raise RunError("every process of a distributed run must write to one run directory: give -o RUN")


def _estimate(recipe, task, plan, eval_ds, run: Run, say):
    from danlu.train.estimate import estimate_training, rows

    say("estimate: memory and time (a probe of a few steps)")
    found = estimate_training(plan.model, plan.train_ds, plan.collate, recipe.train, task.large_model, eval_ds,
                              group_by_length=task.group_by_length)
    for what, value in rows(found):
        say(f"estimate: {what}: {value}")
    return found


def _measured(result, peak, estimated) -> dict:
    """The training's measured peak memory and time per epoch, each beside its estimate when there is one."""
    from danlu.train.estimate import mb

    facts = {}
    if peak.bytes is not None:
        facts["peak memory (measured)"] = mb(peak.bytes)
    if result.epochs and not result.resumed_from:
        facts["seconds per epoch (measured)"] = f"{result.seconds / result.epochs:.2f}"
    if estimated is not None:
        facts["peak memory (estimated)"] = mb(estimated.memory)
        facts["seconds per epoch (estimated)"] = f"{estimated.epoch_seconds:.2f}"
    return facts


def _trust_stage(recipe: Recipe, task, forward, frames, features, result, metrics: dict, say) -> list:
    """The spent privacy budget, robustness (evaluate.robustness) and explanations (evaluate.explain): into
    metrics.json, and their report sections."""
    sections = []
    if result.extra.get("privacy"):
        from danlu.trust.privacy import report_section

        metrics["privacy"] = result.extra["privacy"]
        say(f"privacy: epsilon {metrics['privacy']['epsilon']:.3f} spent of {recipe.privacy.epsilon:g} "
            f"(delta {metrics['privacy']['delta']:.3g})")
        sections.append(report_section(metrics["privacy"]))
    if recipe.evaluate.robustness is not None:
        from danlu.trust.robustness import measure_split, report_section

        say("robustness")
        metrics["robustness"] = measure_split(task, forward, frames, features, recipe.evaluate.robustness, say)
        sections.append(report_section(metrics["robustness"]))
    if recipe.evaluate.explain:
        from danlu.trust.explain import report_section

        say("explanations")
        split = "test" if len(frames.get("test", ())) else "validation"
        sections.append(report_section(task, forward.model, frames[split]))
    return sections


def _describe(model) -> str:
    arch = getattr(getattr(model, "config", None), "arch", None)  # the classic nets say which they are
    return f"{arch} ({type(model).__name__})" if arch else type(model).__name__


def _read_history(path: Path) -> list:
    return read_json(path) if path.exists() else []


def _source(recipe: Recipe, pretrained: dict | None) -> str:
    if pretrained:
        return f"pretrained in this run ({pretrained.get('objective', 'mlm')}, {pretrained.get('steps')} steps)"
    return recipe.model.from_ or "built from a config (random initialisation)"

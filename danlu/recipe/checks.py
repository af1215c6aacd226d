"""Cross-field rules, run after the schema: what the recipe asks of its task, and of its files.

The generic rules read the task's capabilities from the registry (cross-validation, class balance,
pretraining objectives...), so they never name a task; a rule only one task has is registered in
that task's spec (`checks`) and run here too.
"""

from __future__ import annotations

import difflib

from danlu import registry
from danlu.errors import DanluError


def problems(recipe) -> dict[str, list[str]]:
    """key path -> what is wrong with it; empty when the recipe can run."""
    found: dict[str, list[str]] = {}
    for rule in (_files, _hub, _metrics, _training, _decision, _sections, *recipe.spec.checks):
        result = rule(recipe)
        for key, message in ([result] if isinstance(result, tuple) else result or []):
            found.setdefault(key, []).append(message)
    return found


def _files(recipe) -> list[tuple[str, str]]:
    from danlu.data.paths import resolve_data_paths

    out = []
    for key in ("source", "train", "validation", "test"):
        value = getattr(recipe.data, key)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str) or item.startswith(("builtin:", "hub:")):
                continue
            try:
                resolve_data_paths(item, recipe.base_dir)
            except DanluError as exc:
                out.append((f"data.{key}", str(exc)))
            except OSError as exc:  # a symlink loop, a name too long for the file system
                out.append((f"data.{key}", f"cannot read {item[:200]!r}: {exc.strerror or exc}"))
    return out


# The arguments of datasets.load_dataset that a recipe may set; anything else (trust_remote_code,
# a custom builder's kwargs) is refused: a recipe must not be able to run code from the hub.
HUB_KEYS = ("name", "revision", "data_dir", "data_files", "split", "splits")


def _hub(recipe) -> list[tuple[str, str]]:
    unknown = sorted(set(recipe.data.hub or {}) - set(HUB_KEYS))
    if not unknown:
        return []
    return [(f"data.hub.{key}", f"not an argument danlu passes to datasets.load_dataset (allowed: "
                                f"{', '.join(HUB_KEYS)})") for key in unknown]


def _metric_problem(key: str, name: str | None, spec) -> tuple[str, str] | None:
    if name is None:
        return None
    known = list(spec.metrics) + (["loss"] if "loss" not in spec.metrics else [])
    bare = name.removeprefix("eval_")
    if bare in known:
        return None
    close = difflib.get_close_matches(bare, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return key, f"'{name}' is not a metric of {spec.name}{hint} Metrics: {', '.join(known)}"


def _metrics(recipe) -> list:
    spec = recipe.spec
    early = recipe.train.early_stopping
    return [p for p in (_metric_problem("evaluate.metric", recipe.evaluate.metric, spec),
                        _metric_problem("train.early_stopping.metric", early.metric if early else None, spec)) if p]


def _offered_by(capability: str, value=True) -> str:
    tasks = [s.name for s in registry.specs()
             if (value in getattr(s.capabilities, capability) if isinstance(value, str)
                 else getattr(s.capabilities, capability))]
    return ", ".join(tasks) or "no task"


def _training(recipe) -> list:
    caps, task, out = recipe.spec.capabilities, recipe.task, []
    if recipe.train.imbalance != "none" and not caps.class_balance:
        out.append(("train.imbalance", f"{task} has no classes to balance"))
    if recipe.evaluate.cross_validation and not caps.cross_validation:
        out.append(("evaluate.cross_validation", f"not available for {task} (tasks with cross-validation: "
                                                 f"{_offered_by('cross_validation')})"))
    pre = recipe.pretrain
    if pre is not None and pre.objective not in caps.pretrain:
        offered = f"; {task} offers {', '.join(caps.pretrain)}" if caps.pretrain else ""
        out.append(("pretrain.objective", f"'{pre.objective}' is not a pretraining objective of {task}{offered} "
                                          f"('{pre.objective}' pretrains: {_offered_by('pretrain', pre.objective)})"))
    if recipe.joint is not None and not caps.joint:
        out.append(("joint", f"the joint MLM + task objective is not available for {task} "
                             f"(tasks with it: {_offered_by('joint')})"))
    if recipe.distill is not None:
        if not caps.distill:
            out.append(("distill", f"distillation from soft labels is not available for {task} "
                                   f"(tasks with it: {_offered_by('distill')})"))
        elif recipe.distill.augment and recipe.train.imbalance == "oversample":
            out.append(("distill.augment", "the teacher-labelled copies cannot be oversampled by class; "
                                           "use train.imbalance: class_weights"))
    return out


def _decision(recipe) -> list:
    ev, out = recipe.evaluate, []
    if (ev.threshold is not None or ev.costs is not None) and not recipe.spec.has_classes:
        out.append(("evaluate.threshold" if ev.threshold is not None else "evaluate.costs",
                    f"a decision threshold and costs are for classification tasks, not {recipe.task}"))
    elif ev.threshold is not None:
        if ev.threshold.choose == "recall" and ev.threshold.recall is None:
            out.append(("evaluate.threshold.recall", "choose: recall needs the recall to reach, e.g. recall: 0.9"))
        if ev.threshold.choose == "cost" and not ev.costs:
            out.append(("evaluate.costs", "threshold choose: cost needs the costs of mistakes, e.g. "
                                          "{bad: {good: 5}, good: {bad: 1}}"))
        if ev.threshold.recall is not None and ev.threshold.choose != "recall":
            out.append(("evaluate.threshold.recall", "only used with choose: recall"))
    return out


def _sections(recipe) -> list:
    caps, out = recipe.spec.capabilities, []
    transfer = recipe.transfer
    if transfer is not None:
        if transfer.lora is not None and (transfer.freeze != "none" or transfer.gradual_unfreeze):
            out.append(("transfer.lora", "LoRA already keeps the pretrained weights frozen; drop transfer.freeze "
                                         "and transfer.gradual_unfreeze"))
        if transfer.gradual_unfreeze and transfer.freeze != "none":
            out.append(("transfer.gradual_unfreeze", "starts from a frozen backbone itself; drop transfer.freeze"))
        if (transfer.lora is not None or transfer.gradual_unfreeze) and not caps.transformer_layers:
            out.append(("transfer", f"{recipe.task}'s models have no transformer layers for LoRA or gradual "
                                    "unfreezing"))
    if recipe.privacy is not None and not caps.private:
        out.append(("privacy", f"DP-SGD (Opacus) trains {_offered_by('private')} models, not {recipe.task}'s; "
                               "drop the privacy section"))
    if recipe.evaluate.robustness is not None and recipe.evaluate.robustness.attack and not caps.gradient_input:
        out.append(("evaluate.robustness.attack", f"a {recipe.task} model has no input to take gradients through; "
                                                  "drop the attack's epsilons"))
    if recipe.compress is not None and recipe.compress.student is not None and not caps.student:
        out.append(("compress.student", f"danlu compress builds a distilled student for {_offered_by('student')} "
                                        f"runs, not {recipe.task}; train a smaller run with a `distill:` section "
                                        "pointing at this one instead"))
    return out

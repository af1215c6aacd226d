"""The distilled student of `danlu compress RUN`: a smaller model trained on the run's soft labels.

The student is a run of its own, trained by danlu.pipeline.train (the stages of `danlu train`) from a recipe derived from the
run's: the same data, split and training settings, with `model` replaced by a BERT built from
scratch in the shape of the recipe's `compress.student` section (a `tiny` BERT when the section is
absent), `distill.teacher` pointing at the run, and no pretrain / joint / transfer / cross-validation.
It trains its own tokenizer; the teacher's logits are computed with the teacher's own task
(danlu.train.distill), so a teacher from a pretrained checkpoint teaches as well as one from scratch.

The student's run lives in RUN/variants/student-run (Run.student_run). Which tasks can have one is
the registry's `student` capability. A finished student run of the same derived
recipe (same shape, same settings, same teacher path) is reused when compress runs again; a
different one is replaced; an interrupted one resumes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from danlu.errors import DanluError



def student_config(recipe):
    """The recipe's compress.student section, or the defaults (a tiny BERT) when it has none."""
    from danlu.recipe import StudentConfig

    section = recipe.compress.student if recipe.compress is not None else None
    return section if section is not None else StudentConfig()


def student_recipe(run_root: Path, recipe):
    """The recipe the student trains with, validated (shape included) before anything runs."""
    from danlu.models import shape_of
    from danlu.recipe import recipe_from_dict

    if not recipe.spec.capabilities.student:
        from danlu import registry

        offered = ", ".join(s.name for s in registry.specs() if s.capabilities.student)
        raise DanluError(f"variant 'student': danlu compress builds a distilled student for {offered} runs, not "
                         f"{recipe.task}; train a smaller run with a `distill:` section pointing at this one instead")
    cfg = student_config(recipe)
    raw = recipe.model_dump(mode="json", by_alias=True, exclude_none=True)
    for section in ("pretrain", "joint", "transfer", "distill", "compress"):
        raw.pop(section, None)
    raw["name"] = f"{recipe.name}-student"
    shape = {k: getattr(cfg, k) for k in ("layers", "embedding", "heads", "feed_forward")
             if getattr(cfg, k) is not None}
    raw["model"] = {"arch": "bert", "size": cfg.size, **shape, "max_length": recipe.model.max_length}
    raw["distill"] = {"teacher": str(Path(run_root).resolve()), "temperature": cfg.temperature,
                      "alpha": cfg.alpha}
    raw.get("evaluate", {}).pop("cross_validation", None)
    train = raw.setdefault("train", {})
    if cfg.epochs is not None or cfg.max_steps is not None:  # the student's budget replaces the run's
        train["epochs"] = cfg.epochs if cfg.epochs is not None else recipe.train.epochs
        train.pop("max_steps", None)
        if cfg.max_steps is not None:
            train["max_steps"] = cfg.max_steps
    if cfg.lr is not None:
        train["lr"] = cfg.lr
    derived = recipe_from_dict(raw, source=f"{run_root}: compress.student", recipe_path=recipe.path)
    try:
        shape_of(derived.model)
    except DanluError as exc:
        raise DanluError(f"compress.student: {str(exc).replace('model.', '')}") from None
    return derived


def train_student(run_root: Path, derived, say) -> tuple:
    """(the student's Run, reused): trains the student unless a finished run of `derived` is there."""
    from danlu.compress.runtime import MANIFEST
    from danlu.pipeline import recipe_hash, train
    from danlu.run import Run, read_json

    run = Run(run_root)
    out = run.student_run
    student = Run(out)
    state, digest = student.state(), recipe_hash(derived)
    if state.get("recipe_hash") == digest and state.get("status") == "done" and \
            (student.model_dir / "config.json").exists():
        say(f"student: reusing the finished student run {out}")
        return student, True
    if out.exists() and (state.get("recipe_hash") != digest or state.get("status") == "done"):
        say(f"student: replacing {out} (another student shape or settings)")
        shutil.rmtree(out)
    # Variants made from an earlier student would read their input with the new student's tokenizer.
    for folder in run.variants.glob("*"):
        if (folder / MANIFEST).exists() and read_json(folder / MANIFEST).get("student"):
            shutil.rmtree(folder)
    t = derived.train
    say(f"student: train {out} ({f'{t.max_steps} steps' if t.max_steps else f'{t.epochs:g} epochs'})")
    train(derived, out_dir=out, on_stage=lambda message: say(f"student: {message}"))
    return student, False


def describe(model, derived, teacher_parameters: int, reused: bool, where: str) -> dict:
    """The `student` entry of a variant's manifest and of variants.json; `where`: the student run's
    folder relative to the run."""
    from danlu.models import count_parameters

    c = model.config
    total, _ = count_parameters(model)
    d, t = derived.distill, derived.train
    return {
        "run": where, "reused": reused,
        "shape": {"arch": "bert", "layers": c.num_hidden_layers, "embedding": c.hidden_size,
                  "heads": c.num_attention_heads, "feed_forward": c.intermediate_size,
                  "vocab_size": c.vocab_size, "max_length": derived.model.max_length},
        "parameters": total, "teacher_parameters": teacher_parameters,
        "parameter_ratio": round(total / teacher_parameters, 4) if teacher_parameters else None,
        "temperature": d.temperature, "alpha": d.alpha, "epochs": t.epochs, "max_steps": t.max_steps, "lr": t.lr,
    }

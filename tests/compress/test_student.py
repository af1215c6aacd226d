"""danlu compress's distilled student: the recipe section, the derived recipe, the variants and their figures."""

import json
import shutil

import pytest

from danlu.compress.build import DEFAULT_VARIANTS, default_variants, parse_variants
from danlu.compress.pipeline import compress_run
from danlu.compress.runtime import load_variant
from danlu.compress.student import student_recipe

STUDENT_RUN = "student-run"  # Run.student_run's folder name
from danlu.errors import DanluError, RecipeError
from danlu.recipe import load_recipe, recipe_from_dict
from danlu.run import Run

SHAPE = {"layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64}
FIGURES = ("name", "format", "precision", "main_value", "metrics", "latency", "size_bytes", "peak_rss_bytes",
           "parameters", "agreement_with_baseline", "vs_baseline")


@pytest.fixture(scope="module")
def teacher(text_run, tmp_path_factory):
    """A copy of the tiny text run whose recipe asks for a small student."""
    copy = tmp_path_factory.mktemp("student") / "run"
    shutil.copytree(text_run, copy, ignore=shutil.ignore_patterns("variants", "checkpoints"))
    section = ", ".join(f"{k}: {v}" for k, v in SHAPE.items())
    with open(copy / "recipe.yaml", "a", encoding="utf-8") as handle:
        handle.write(f"compress:\n  student: {{{section}, temperature: 3.0}}\n")
    return copy


@pytest.fixture(scope="module")
def student_figures(teacher):
    return compress_run(teacher, ["student", "student+onnx-int8"], batch=8, recovery_steps=0, latency_examples=10)


def _recipe(run):
    return load_recipe(Run(run).recipe_path, base_dir=Run(run).state().get("recipe_dir"))


def test_student_variants_are_measured_like_the_others(teacher, student_figures):
    by_name = {v["name"]: v for v in student_figures}
    assert list(by_name) == ["pytorch-fp32", "student", "student+onnx-int8"]
    for v in student_figures:
        assert all(v.get(k) is not None for k in FIGURES), v["name"]
        assert v["split"] == "test" and v["metrics"]["accuracy"] == v["main_value"]
        assert v["latency"]["1"]["calls"] >= 20 and v["latency"]["8"]["p50_ms"] > 0
    base, student, quantized = by_name["pytorch-fp32"], by_name["student"], by_name["student+onnx-int8"]
    info = student["student"]
    assert info["shape"] | SHAPE == info["shape"] and info["shape"]["max_length"] == 32
    assert info["temperature"] == 3.0 and info["epochs"] == 10 and info["run"] == f"variants/{STUDENT_RUN}"
    assert student["parameters"] == info["parameters"] < info["teacher_parameters"] == base["parameters"]
    assert student["size_bytes"] < 0.5 * base["size_bytes"] and quantized["size_bytes"] < student["size_bytes"]
    assert quantized["format"] == "onnx" and quantized["precision"] == "int8" and quantized["student"] == info
    assert student["main_value"] >= 0.7  # the keywords are easy: the student learns them too
    assert quantized["agreement_with_baseline"] >= student["agreement_with_baseline"] - 0.15

    table = json.loads((teacher / "variants" / "variants.json").read_text())
    assert [v["name"] for v in table] == list(by_name) and table[1]["student"]["shape"]["layers"] == 1
    assert "trained from scratch on the run's soft labels" in (teacher / "variants" / "report.md").read_text()
    assert Run(teacher / "variants" / STUDENT_RUN).state()["status"] == "done"


def test_a_student_variant_reads_input_with_its_own_tokenizer(teacher, student_figures):
    from danlu.pipeline import check_data

    frame = check_data(_recipe(teacher))[0].frames["test"].head(4)
    for name in ("student", "student+onnx-int8"):
        variant = load_variant(teacher, name)  # no task given: the student's, from its preprocessing folder
        assert variant.task.tokenizer.name_or_path.endswith(f"{STUDENT_RUN}/model")
        data = variant.task.encode(frame)
        batch = variant.task.collate([data[i] for i in range(len(data))])
        batch.pop("labels")
        assert variant.forward(batch).shape == (4, 2)
    assert load_variant(teacher, "student").forward.model.config.hidden_size == 32


def test_a_finished_student_is_not_trained_again(teacher, student_figures, tmp_path):
    import typer
    from typer.testing import CliRunner

    from danlu.compress.commands import register

    app = typer.Typer()
    register(app)
    weights = teacher / "variants" / STUDENT_RUN / "model" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    result = CliRunner().invoke(app, ["compress", str(teacher), "--variants", "student", "--batch", "8",
                                      "--latency-examples", "5"])
    assert result.exit_code == 0, result.output
    assert "reusing the finished student run" in result.output
    entry = {v["name"]: v for v in json.loads((teacher / "variants" / "variants.json").read_text())}["student"]
    assert entry["student"]["reused"] and weights.stat().st_mtime_ns == before
    assert entry["main_value"] == {v["name"]: v for v in student_figures}["student"]["main_value"]

    # Exported, the student comes with its own tokenizer.
    result = CliRunner().invoke(app, ["export", str(teacher), "--format", "safetensors", "--variant", "student",
                                      "-o", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    student_model = teacher / "variants" / STUDENT_RUN / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (tmp_path / "st" / name).read_bytes() == (student_model / name).read_bytes()


def test_student_recipe_is_derived_from_the_run(text_run, teacher):
    plain = _recipe(text_run)
    assert default_variants(plain) == DEFAULT_VARIANTS
    derived = student_recipe(text_run, plain)  # no compress.student: the defaults, a tiny BERT
    m = derived.model
    assert (m.from_, m.arch, m.size, m.layers, m.max_length) == (None, "bert", "tiny", None, 32)
    assert derived.distill.teacher == str(text_run.resolve()) and derived.name == "tiny-text-student"
    assert (derived.train.epochs, derived.train.lr, derived.compress) == (10, 0.003, None)
    assert default_variants(_recipe(teacher)) == DEFAULT_VARIANTS + ("student",)

    raw = json.loads(json.dumps(plain.model_dump(mode="json", by_alias=True, exclude_none=True)))
    raw.update(pretrain={"objective": "mlm"}, joint={}, evaluate={"cross_validation": 3},
               train={**raw["train"], "max_steps": 50},
               compress={"student": {"epochs": 2, "lr": 0.01, "alpha": 0.9, "embedding": 64}})
    derived = student_recipe(text_run, recipe_from_dict(raw))
    assert derived.pretrain is None and derived.joint is None and derived.evaluate.cross_validation is None
    assert (derived.train.epochs, derived.train.max_steps, derived.train.lr) == (2, None, 0.01)
    assert (derived.model.embedding, derived.distill.alpha) == (64, 0.9)
    raw["compress"] = {"student": {"embedding": 32, "heads": 3}}
    with pytest.raises(DanluError, match="compress.student: embedding .32. must be divisible by heads .3."):
        student_recipe(text_run, recipe_from_dict(raw))


def test_unsupported_task_is_one_clear_message(iris_run):
    with pytest.raises(DanluError, match="distilled student for text-classification runs, not "
                                         "tabular-classification"):
        compress_run(iris_run, ["student+onnx-int8"])
    assert not (iris_run / "variants" / STUDENT_RUN).exists()


def test_student_names_and_recipe_section_mistakes(tmp_path):
    specs = parse_variants("student, student+onnx-int8")
    assert [(s.name, s.format, s.student) for s in specs[1:]] == [("student", "pytorch-fp32", True),
                                                                  ("student+onnx-int8", "onnx-int8", True)]
    with pytest.raises(DanluError, match="student chains with a format only"):
        parse_variants("student+prune-magnitude-0.5")
    with pytest.raises(DanluError, match="named 'student'"):
        parse_variants("distilled")
    with pytest.raises(DanluError, match="did you mean 'student'"):
        parse_variants("studnet")

    (tmp_path / "a.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    base = {"name": "x", "task": "text-classification", "data": {"source": str(tmp_path / "a.csv")}}
    with pytest.raises(RecipeError, match=r"compress.student.layer: unknown key; did you mean "
                                          r"'compress.student.layers'\?"):
        recipe_from_dict({**base, "compress": {"student": {"layer": 2}}})
    with pytest.raises(RecipeError, match="did you mean 'compress.student'"):
        recipe_from_dict({**base, "compress": {"studnet": {}}})
    with pytest.raises(RecipeError, match="compress.student.alpha"):
        recipe_from_dict({**base, "compress": {"student": {"alpha": 2}}})
    assert recipe_from_dict({**base, "compress": {"student": {}}}).compress.student.size == "tiny"

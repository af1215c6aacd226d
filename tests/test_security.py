"""Loading a run folder never runs code from it, and never reads outside it."""

import json
import pickle

import pytest

from danlu import registry
from danlu.compress.runtime import load_variant
from danlu.errors import DanluError
from danlu.models import resolve_pretrained
from danlu.recipe import recipe_from_dict
from danlu.run import Run
from danlu.tasks import load_task, make_task


class Payload:
    """Unpickling this creates a file: the proof that code from the run folder ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def tabular_run(tmp_path):
    spec = registry.get("tabular-classification")
    sample = spec.make_sample(40, 0)
    task = make_task(recipe_from_dict({"name": "t", "task": spec.name, "data": {"source": "builtin:iris"},
                                       **sample.recipe}))
    task.setup(sample.frame, sample.features, sample.categorical)
    run = Run(tmp_path / "run")
    task.save(task.build_model(), run.model_dir)
    run.set_state(status="done", name="t", task=spec.name)
    return run


def test_a_pickled_preprocessor_in_a_run_folder_is_never_loaded(tabular_run, tmp_path):
    marker = tmp_path / "pwned"
    model = tabular_run.model_dir
    (model / "preprocessing.json").unlink()
    (model / "preprocessor.joblib").write_bytes(pickle.dumps(Payload(marker)))  # what older runs held
    with pytest.raises(DanluError, match="no preprocessing.json"):
        load_task(model)
    assert not marker.exists()


def test_a_tampered_preprocessing_file_is_refused(tabular_run):
    path = tabular_run.model_dir / "preprocessing.json"
    data = json.loads(path.read_text())
    data["means"] = "rm -rf /"
    path.write_text(json.dumps(data))
    with pytest.raises(DanluError, match="not what danlu writes"):
        load_task(tabular_run.model_dir)


def _variant(run: Run, name: str, **manifest) -> None:
    folder = run.variant(name)
    folder.mkdir(parents=True)
    (folder / "variant.json").write_text(json.dumps({"name": name, **manifest}))


def test_a_crafted_int8_state_is_refused_without_running_it(tabular_run, tmp_path):
    marker = tmp_path / "pwned"
    _variant(tabular_run, "torch-int8", runtime="torch-int8", precision="int8", file="model.pt",
             weights_dir="../../model", preprocessing="../../model")
    (tabular_run.variant("torch-int8") / "model.pt").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(DanluError, match="not an int8 state dict"):
        load_variant(tabular_run.root, "torch-int8")
    assert not marker.exists()


def test_a_manifest_cannot_point_outside_the_run(tabular_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _variant(tabular_run, "onnx-fp32", runtime="onnx", precision="fp32", file=str(elsewhere / "model.onnx"),
             preprocessing="../../model")
    with pytest.raises(DanluError, match="outside the run folder"):
        load_variant(tabular_run.root, "onnx-fp32")
    with pytest.raises(DanluError, match="not a variant name"):
        load_variant(tabular_run.root, "../../elsewhere")


def test_a_model_from_path_that_does_not_exist_is_not_taken_for_a_hub_id(tmp_path):
    (tmp_path / "runs").mkdir()
    for name in ("./missing", str(tmp_path / "missing"), "runs/missing", "a/b/c"):
        with pytest.raises(DanluError, match="model.from: no model at"):
            resolve_pretrained(name, tmp_path)
    assert resolve_pretrained("google/bert_uncased_L-2_H-128_A-2", tmp_path) == "google/bert_uncased_L-2_H-128_A-2"

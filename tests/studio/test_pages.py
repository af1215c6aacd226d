"""The studio's pages and JSON routes, in-process (no browser): what each page lists, sorts and filters,
the progress of a training run, the variants' choice, the playground's widget for each kind of input."""

import os
import re
from typing import Annotated

import pytest
from pydantic import BaseModel, BeforeValidator, ConfigDict
from starlette.testclient import TestClient

from danlu import registry
from danlu.match import Constraints, choose
from danlu.run import atomic_write_json
from danlu.studio.app import create_studio
from danlu.studio.playground import from_schema, widget_for
from studiokit import dead_pid, json_of, variants_table, write_run, write_variants


def client(runs, **options) -> TestClient:
    return TestClient(create_studio(runs, **options), base_url="http://localhost")


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)"', html)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """200 runs: accuracy i/200 for run-i, two tasks, every fifth one failed."""
    runs = tmp_path_factory.mktemp("many")
    for i in range(200):
        write_run(runs, f"run-{i:03d}", task="tabular-classification" if i % 2 else "text-classification",
                  value=i / 200, status="failed" if i % 5 == 0 else "done",
                  baselines={"majority": 0.1, "linear": 0.5})
    write_run(runs, "no-metrics-yet", value=None)
    return runs


def test_200_runs_are_listed_each_with_its_metric_and_best_baseline(many):
    page = client(many).get("/")
    assert page.status_code == 200
    assert len(rows_of(page.text)) == 201
    row = page.text.split('<tr data-run="run-123">')[1].split("</tr>")[0]
    assert "accuracy 0.6150" in row and "linear 0.5000" in row and "text-classification" not in row


def test_runs_sort_by_metric_either_way_with_runs_without_one_last(many):
    up = rows_of(client(many).get("/?sort=metric&order=asc").text)
    assert up[:2] == ["run-000", "run-001"] and up[-1] == "no-metrics-yet"
    down = rows_of(client(many).get("/?sort=metric&order=desc").text)
    assert down[:2] == ["run-199", "run-198"] and down[-1] == "no-metrics-yet"


def test_runs_filter_by_name_task_and_status(many):
    studio = client(many)
    assert sorted(rows_of(studio.get("/?q=RUN-12").text)) == [f"run-12{i}" for i in range(10)]
    odd = rows_of(studio.get("/?task=tabular-classification&status=failed").text)
    assert sorted(odd) == [f"run-{i:03d}" for i in range(200) if i % 2 and i % 5 == 0]


def test_statuses_running_interrupted_and_failed(tmp_path):
    write_run(tmp_path, "alive", status="running", pid=os.getpid())
    write_run(tmp_path, "killed", status="running", pid=dead_pid())
    failed = write_run(tmp_path, "broken", status="failed")
    state = json_of(failed / "state.json")
    atomic_write_json(failed / "state.json", {**state, "error": "out of memory"})
    page = client(tmp_path).get("/").text
    status = {name: re.search(r'class="status (\w+)"', page.split(f'<tr data-run="{name}">')[1]).group(1)
              for name in ("alive", "killed", "broken")}
    assert status == {"alive": "running", "killed": "interrupted", "broken": "failed"}
    assert 'title="out of memory"' in page
    assert "resumes from its last complete checkpoint" in client(tmp_path).get("/runs/killed").text


def test_the_best_baseline_follows_the_metrics_direction(tmp_path):
    write_run(tmp_path, "regressor", task="tabular-regression", metric="rmse", value=2.0,
              baselines={"mean": 3.0, "ridge": 1.5})
    row = client(tmp_path).get("/").text.split('<tr data-run="regressor">')[1]
    assert "ridge 1.5000" in row and "behind" in row  # 2.0 rmse does worse than ridge's 1.5


def test_a_row_follows_its_run_when_the_metrics_change(tmp_path):
    run = write_run(tmp_path, "retrained", value=0.5)
    studio = client(tmp_path)
    assert "accuracy 0.5000" in studio.get("/").text
    atomic_write_json(run / "metrics.json", {"test": {"accuracy": 0.75}})
    stat = os.stat(run / "metrics.json")
    os.utime(run / "metrics.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later time, however coarse the clock
    assert "accuracy 0.7500" in studio.get("/").text


def test_compare_lists_only_the_recipe_keys_that_differ(tmp_path):
    write_run(tmp_path, "slow", recipe="name: x\ntask: t\ntrain: {lr: 0.01, epochs: 3}\n")
    write_run(tmp_path, "fast", recipe="name: x\ntask: t\ntrain: {lr: 0.1, epochs: 3}\nmodel: {hidden: [8]}\n")
    page = client(tmp_path).get("/compare?run=slow&run=fast").text
    diff = page.split('id="recipe-diff"')[1]
    keys = re.findall(r'data-key="([^"]+)"', diff)
    assert keys == ["train.lr", "model.hidden"]
    assert "<code>0.01</code>" in diff and "<code>0.1</code>" in diff and "<code>[8]</code>" in diff
    assert client(tmp_path).get("/compare?run=slow&run=missing").status_code == 404


def test_progress_counts_complete_checkpoints_and_the_share_done(tmp_path):
    run = write_run(tmp_path, "training", status="running", value=None)
    (run / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    atomic_write_json(run / "checkpoints" / "checkpoint-10" / "trainer_state.json", {"global_step": 10})
    (run / "checkpoints" / "checkpoint-20").mkdir()  # being written: no trainer_state.json yet
    found = client(tmp_path).get("/api/runs/training/progress").json()
    assert found["status"] == "running" and found["step"] == 30 and found["checkpoints"] == [10]
    assert found["done"] == pytest.approx(3 / 3)  # epoch 3 of the recipe's 3
    assert found["curves"]["loss"]["steps"] == [10, 20, 30]
    live = client(tmp_path).get("/api/live").json()
    assert [r["name"] for r in live["runs"]] == ["training"]


TABLE = variants_table([("pytorch-fp32", 0.91, 4.0, 4_000_000), ("onnx-int8", 0.90, 1.0, 1_000_000),
                        ("prune-magnitude-0.5", 0.91, 3.0, 4_000_000)])


@pytest.mark.parametrize("limits", [{}, {"p95_ms": 2.0}, {"max_mb": 2.0}, {"min_metric": 0.905},
                                    {"p95_ms": 0.5}, {"batch": 32, "p95_ms": 35.0}])
def test_the_variants_choice_is_danlu_matchs(tmp_path, limits):
    write_variants(write_run(tmp_path, "compressed"), TABLE)
    answer = client(tmp_path).get("/api/runs/compressed/match", params=limits).json()
    decision = choose(TABLE, Constraints(**limits))
    assert answer["chosen"] == (decision.chosen["name"] if decision.chosen else None)
    assert answer["reasons"] == decision.reasons and answer["cost_per_million"] == decision.cost_per_million
    assert [p["name"] for p in answer["points"]] == [v["name"] for v in TABLE]


def test_a_run_without_variants_says_how_to_make_them(tmp_path):
    write_run(tmp_path, "plain")
    studio = client(tmp_path)
    assert "danlu compress plain" in studio.get("/runs/plain/variants").text
    assert studio.get("/api/runs/plain/match").status_code == 404


def test_the_variants_page_shows_the_deployment_plan(tmp_path):
    run = write_run(tmp_path, "planned")
    write_variants(run, TABLE)
    atomic_write_json(run / "variants" / "deployment.json", {"variant": "onnx-int8", "constraints": {"p95_ms": 2},
                                                             "cost_per_hour": 0.5, "cost_per_million_requests": 0.1389})
    page = client(tmp_path).get("/runs/planned/variants").text
    assert 'id="plan-cost">0.1389<' in page and "onnx-int8" in page.split('id="plan"')[1]


def test_a_runs_files_are_sandboxed_and_its_pages_load_only_the_studios_own_scripts(tmp_path):
    run = write_run(tmp_path, "reported")
    (run / "report.html").write_text("<script>alert(1)</script>")
    studio = client(tmp_path)
    report = studio.get("/runs/reported/files/report.html")
    assert report.status_code == 200 and report.headers["content-security-policy"].startswith("sandbox")
    page = studio.get("/runs/reported")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert studio.get("/static/plotly.min.js").status_code == 200
    assert studio.get("/static/../app.py").status_code == 404


def test_a_run_without_a_model_has_no_playground(tmp_path):
    run = write_run(tmp_path, "unfinished", status="running")
    (run / "model" / "config.json").unlink()
    studio = client(tmp_path)
    assert "no finished model yet" in studio.get("/runs/unfinished/playground").text
    with studio:  # the serve apps live in the studio's lifespan
        answer = studio.post("/serve/unfinished/v1/predict", json={"inputs": ["x"]})
        assert answer.status_code == 409 and "no finished model" in answer.json()["detail"]
        assert studio.post("/serve/nobody/v1/predict", json={"inputs": ["x"]}).status_code == 404
        assert studio.get("/serve/unfinished/metrics").status_code == 404  # only the /v1 routes


# -- the playground's widget, from the task --------------------------------------------------------------

def _decode(value):
    import base64

    return base64.b64decode(value)


class SoundInput(BaseModel):
    """A request item shaped as a speech task's would be: {"audio": "<base64 wav>"}; no task named."""

    model_config = ConfigDict(extra="forbid")
    audio: Annotated[bytes, BeforeValidator(_decode)]


class Scan(BaseModel):
    picture: bytes
    note: str = ""


class Row(BaseModel):
    age: float | None
    job: str | int


class Nested(BaseModel):
    history: list[Row]


def _schema(item):
    from pydantic import TypeAdapter

    return TypeAdapter(item).json_schema(by_alias=True)


def test_a_string_input_gets_a_text_box():
    assert from_schema(_schema(str)).kind == "text"


def test_a_bytes_field_gets_a_file_input_of_its_media_type():
    sound = from_schema(_schema(SoundInput))
    assert sound.kind == "files" and sound.fields == [{"name": "audio", "input": "file", "accept": "audio/*"}]
    scan = from_schema(_schema(Scan))
    assert scan.fields == [{"name": "picture", "input": "file", "accept": ""},
                           {"name": "note", "input": "text", "accept": ""}]


def test_every_registered_tasks_request_gets_a_widget():
    from danlu.tasks.uploads import ImageInput

    assert from_schema(_schema(ImageInput)).fields == [{"name": "image", "input": "file", "accept": "image/*"}]
    writers = [s for s in registry.specs() if s.capabilities.generate]
    assert writers and all(widget_for(s, str, can_sample=True).kind == "chat" for s in writers)
    # A text writer served as ONNX samples nothing: the predict route's own input instead.
    assert widget_for(writers[0], str, can_sample=False).kind == "text"


def test_a_table_row_gets_a_form_and_anything_nested_a_json_box():
    form = from_schema(_schema(Row))
    assert form.kind == "form" and [(f["name"], f["input"]) for f in form.fields] == [("age", "number"), ("job", "text")]
    assert from_schema(_schema(Nested)).kind == "json"


def test_the_playground_keeps_each_runs_serve_app_until_its_model_changes(tmp_path, monkeypatch):
    from servekit import StubRunner

    for name in ("a", "b", "c"):
        write_run(tmp_path, name)
    loads = []

    def load(root, *args, **kwargs):
        loads.append(root.name)
        return StubRunner()

    monkeypatch.setattr("danlu.serve.runner.load_runner", load)
    with client(tmp_path) as studio:
        def predict(name):
            answer = studio.post(f"/serve/{name}/v1/predict", json={"inputs": ["a fine film"]})
            assert answer.status_code == 200, answer.text
            return answer.json()["predictions"][0]["label"]

        assert predict("a") == "pos" and predict("a") == "pos"
        assert loads == ["a"]  # loaded once, then kept
        config = tmp_path / "a" / "model" / "config.json"
        os.utime(config, ns=(os.stat(config).st_atime_ns, os.stat(config).st_mtime_ns + 10**9))  # retrained
        predict("a")
        assert loads == ["a", "a"]
        predict("b"), predict("c"), predict("a")  # two kept: b and c pushed a out
        assert loads == ["a", "a", "b", "c", "a"]
        info = studio.get("/api/runs/a/playground").json()
        assert info["widget"] == {"kind": "text", "fields": []} and info["base"] == "/serve/a"


def test_a_run_page_repeats_the_reports_warnings(tmp_path):
    run = write_run(tmp_path, "warned")
    (run / "report.md").write_text("# warned\n\n## Warnings\n\n- WARNING: the model does no better than the linear "
                                   "baseline on validation\n\n## Metrics\n\n- not a warning\n")
    page = client(tmp_path).get("/runs/warned").text
    assert re.findall(r'<p class="warning">warning: ([^<]+)</p>', page) == [
        "the model does no better than the linear baseline on validation"]  # and nothing of the next section


def test_a_model_that_fails_to_load_is_a_500_that_says_so(tmp_path, monkeypatch):
    write_run(tmp_path, "corrupt")

    def broken(root, *args, **kwargs):
        raise OSError("model.safetensors: truncated")

    monkeypatch.setattr("danlu.serve.runner.load_runner", broken)
    with client(tmp_path) as studio:
        answer = studio.get("/api/runs/corrupt/playground")
        assert answer.status_code == 500 and "loading the model failed" in answer.json()["detail"]
        assert studio.post("/serve/corrupt/v1/predict", json={"inputs": ["x"]}).status_code == 500

"""RunsFolder: names and paths from URLs never lead outside the runs folder."""

import pytest

from danlu.studio.folder import NotFound, RunsFolder
from studiokit import write_run


@pytest.fixture
def folder(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "a-run")
    (runs / "a-run" / "plots").mkdir()
    (runs / "a-run" / "plots" / "loss.png").write_bytes(b"\x89PNG")
    (runs / "a-run" / "model" / "model.safetensors").write_bytes(b"weights")
    (runs / "not-a-run").mkdir()  # no state.json
    outside = write_run(tmp_path, "elsewhere")
    (runs / "linked-out").symlink_to(outside, target_is_directory=True)
    (runs / "a-run" / "plots" / "secret.png").symlink_to(tmp_path / "elsewhere" / "state.json")
    (tmp_path / "secret.txt").write_text("not for the studio")
    return RunsFolder(runs)


def test_only_runs_inside_the_folder_are_listed(folder):
    assert folder.names() == ["a-run"]


@pytest.mark.parametrize("name", ["..", ".", "../elsewhere", "a-run/..", "linked-out", ".hidden", "",
                                  "a\\b", "a\x00b", "not-a-run", "/etc", "x" * 300])
def test_names_that_lead_outside_or_nowhere_are_not_found(folder, name):
    with pytest.raises(NotFound):
        folder.run(name)


def test_a_run_is_found_by_its_name(folder):
    assert folder.run("a-run").root == folder.root / "a-run"


@pytest.mark.parametrize("path", ["../../secret.txt", "plots/../../../secret.txt", "/etc/hostname",
                                  "plots/secret.png", "model/model.safetensors", "plots", "", ".", "state.json/.."])
def test_files_outside_the_run_or_not_for_showing_are_not_found(folder, path):
    with pytest.raises(NotFound):
        folder.file(folder.run("a-run"), path)


def test_a_picture_of_the_run_is_found(folder):
    run = folder.run("a-run")
    assert folder.file(run, "plots/loss.png") == run.root / "plots" / "loss.png"
    assert folder.file(run, "state.json").name == "state.json"

"""The runs folder as the studio sees it: a run is named by its directory's name, a file by its path in the
run, and neither may lead outside the folder.

Names arrive from URLs, already percent-decoded, so `..%2f` is `../` by the time it gets here. Every
lookup resolves the path (following symlinks) and checks that the result is still inside: a run that is a
symlink to a folder elsewhere, or a file linked out of its run, is not found. Not found is all a request
learns: the same 404 whether the thing is missing or outside.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from danlu.errors import DanluError
from danlu.run import Run

# What a run's file route serves, by suffix, with its media type: pictures and text danlu writes. Never
# the weights or a checkpoint (large, and nothing to look at), never a script.
SHOWN = {".png": "image/png", ".jpg": "image/jpeg", ".svg": "image/svg+xml", ".html": "text/html",
         ".md": "text/markdown", ".json": "application/json", ".yaml": "text/plain", ".txt": "text/plain",
         ".csv": "text/csv"}


class NotFound(DanluError):
    """No such run or file inside the runs folder (or one that resolves outside it)."""


class RunsFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def names(self) -> list[str]:
        """Every run directly inside the folder (a directory with a state.json), by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if self._inside(p) and (p / "state.json").is_file())

    def run(self, name: str) -> Run:
        if not _plain_name(name):
            raise NotFound(name)
        path = self.root / name
        if not (self._inside(path) and (path / "state.json").is_file()):
            raise NotFound(name)
        return Run(path.resolve())

    def file(self, run: Run, relative: str) -> Path:
        """A file of `run` the studio may show; NotFound for anything else."""
        parts = PurePosixPath(relative).parts
        if not parts or relative.startswith("/") or any(not _plain_name(p) for p in parts):
            raise NotFound(relative)
        path = (run.root / Path(*parts)).resolve()
        if path.suffix.lower() not in SHOWN or not path.is_file() or not path.is_relative_to(run.root):
            raise NotFound(relative)
        return path

    def _inside(self, path: Path) -> bool:
        """A directory whose real location is directly in the folder (a symlink out of it is not)."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        return real.parent == self.root and real.is_dir()


def _plain_name(name: str) -> bool:
    """One path component that names something: no separators, no `.` or `..`, no hidden files, no NUL."""
    return (bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name
            and "\x00" not in name and len(name) <= 255)


def media_type(path: Path) -> str:
    return SHOWN[path.suffix.lower()]

"""Where data files are found, and how they are named back to the user."""

from __future__ import annotations

import difflib
import glob
import os
from pathlib import Path

from danlu.errors import DataError

# The package sits in <repo>/danlu; the shared datasets sit beside the repo.
_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path | None:
    """$DANLU_DATA, else <repo root>/../shared/datasets when that folder exists."""
    env = os.environ.get("DANLU_DATA")
    if env:
        return Path(env).expanduser()
    default = _REPO_ROOT.parent / "shared" / "datasets"
    return default if default.is_dir() else None


def candidate_paths(value: str, recipe_dir: Path | None) -> list[Path]:
    path = Path(value).expanduser()
    if path.is_absolute():
        return [path]
    bases = [recipe_dir, data_root(), Path.cwd()]
    out: list[Path] = []
    for base in bases:
        if base is not None and (candidate := Path(base) / path) not in out:
            out.append(candidate)
    return out


def resolve_data_path(value: str, recipe_dir: Path | None) -> Path:
    """The first existing of: `value` if absolute, relative to the recipe's folder, to the
    data root, to the current directory."""
    tried = candidate_paths(str(value), recipe_dir)
    for candidate in tried:
        if candidate.exists():
            return candidate
    hint = _closest_existing(tried)
    raise DataError(
        f"data path '{value}' not found; tried: {', '.join(str(p) for p in tried)}"
        + (f"; did you mean '{hint}'?" if hint else "")
        + ("" if data_root() else "; set DANLU_DATA to the folder that holds your datasets"))


def is_glob(value: str) -> bool:
    return any(c in value for c in "*?[")


def resolve_data_paths(value: str, recipe_dir: Path | None) -> list[Path]:
    """One path, or the files a glob matches (sorted), under the first base where it matches any."""
    if not is_glob(value):
        return [resolve_data_path(value, recipe_dir)]
    tried = candidate_paths(value, recipe_dir)
    for candidate in tried:
        found = sorted(Path(p) for p in glob.glob(str(candidate)) if Path(p).is_file())
        if found:
            return found
    raise DataError(f"data path pattern '{value}' matches no file; tried: {', '.join(str(p) for p in tried)}"
                    + ("" if data_root() else "; set DANLU_DATA to the folder that holds your datasets"))


def _closest_existing(tried: list[Path]) -> str | None:
    # A typo is usually in the last part ("sst2/trian.tsv"): look beside where it would be.
    for candidate in tried:
        parent = candidate.parent
        if parent.is_dir():
            names = [p.name for p in parent.iterdir()]
            close = difflib.get_close_matches(candidate.name, names, n=1, cutoff=0.6)
            if close:
                return str(_short(parent / close[0]))
    return None


def display_path(path: str | os.PathLike) -> str:
    """A path as short as it can be while still unambiguous: relative to the data root or to
    the current directory when it lies under one, else absolute."""
    return str(_short(Path(path)))


def _short(path: Path) -> Path:
    try:
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop: name it as given
        return path
    for base in (data_root(), Path.cwd()):
        if base is None:
            continue
        try:
            return resolved.relative_to(Path(base).resolve())
        except ValueError:
            continue
    return path

"""The data stage: read a recipe's data, split it, and check it before anything trains on it.

The names below load their module when first used: the recipe schema reads `danlu.data.config`
when a recipe is validated, which must not pull in pandas and the readers.
"""

import importlib

_WHERE = {
    "DataConfig": "config", "QualityConfig": "config", "SplitConfig": "config",
    "data_root": "paths", "resolve_data_path": "paths",
    "check_quality": "quality",
    "QualityReport": "report", "Rule": "report", "enforce": "report", "save_report": "report",
    "Splits": "splits", "kfold_indices": "splits", "load_frame": "splits", "load_splits": "splits",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'danlu.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"danlu.data.{_WHERE[name]}"), name)

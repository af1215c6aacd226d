"""The data stage: read a recipe's data, split it, and check it before anything trains on it."""

from danlu.data.config import DataConfig, QualityConfig, SplitConfig
from danlu.data.paths import data_root, resolve_data_path
from danlu.data.quality import check_quality
from danlu.data.report import QualityReport, Rule, enforce, save_report
from danlu.data.splits import Splits, kfold_indices, load_frame, load_splits

__all__ = [
    "DataConfig", "QualityConfig", "SplitConfig", "Splits", "load_splits", "load_frame", "kfold_indices",
    "check_quality", "enforce", "save_report", "QualityReport", "Rule", "resolve_data_path", "data_root",
]

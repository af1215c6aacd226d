"""The stages of a run, in order, for one recipe:

    check data -> pretrain -> (cross-validation) -> features -> train -> evaluate -> baselines -> save -> report

    stages.py            `danlu train`: the stages in order, the run directory, resume
    pretrain.py          the pretrain stage (the task pretrains; this makes it resumable)
    plan.py, distill.py  what joint / transfer / distill do to the model and its data
    fit.py               training with the task's engine
    cross_validation.py  k-fold over train + validation
    baselines.py         the task's baselines beside the model, and the warning when it does no better
    evaluate.py          `danlu eval`
"""

from danlu.pipeline.evaluate import evaluate_run
from danlu.pipeline.stages import check_data, open_run, recipe_hash, train

__all__ = ["train", "check_data", "open_run", "recipe_hash", "evaluate_run"]

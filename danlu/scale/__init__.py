"""Scale: `danlu estimate` (estimate.py: the recipe's model built as training builds it, measured by
danlu.train.estimate, checked against a device) and `danlu tune` (tune.py: an Optuna study of trials
that are danlu runs; space.py: the `tune:` space checked against the recipe's schema).

Tracking lives lower, in danlu/track.py, because every run of the pipeline may be tracked.
"""

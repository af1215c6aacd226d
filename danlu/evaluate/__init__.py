"""Evaluation: metrics per kind of task (metrics.py), their names (names.py), baselines (baselines.py).

Kept free of imports: the task specs read names.py when a recipe is validated, before scikit-learn
is needed.
"""

"""Causal language modelling: a decoder learns to continue text (spec.py, task.py, generate.py)."""

"""Trust: private training (privacy.py), PII in the data (pii.py), robustness (robustness.py) and
explanations (explain.py).

The modules sit in different layers (pyproject.toml's import-linter contract): pii.py below the data
stage that calls it, privacy.py beside the training engines, robustness.py and explain.py above the
tasks they measure. So this file imports nothing.
"""

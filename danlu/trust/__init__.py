"""Trust: private training (privacy.py), robustness (robustness.py) and explanations (explain.py), with
gradients.py, the input both take gradients through. PII in the data is the data stage's own
(danlu.data.pii), and the `robust` / `explain` commands live in danlu.trust_commands: the package sits
between the pipeline, which calls it, and the tasks it measures (pyproject.toml's layers).
"""

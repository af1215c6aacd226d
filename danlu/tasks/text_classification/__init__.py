"""Text classification: a string -> a class (spec.py: what it is; task.py: how it works)."""

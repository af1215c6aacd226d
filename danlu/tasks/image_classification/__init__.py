"""Image classification: an image -> a class (spec.py: what it is; task.py: how it works)."""

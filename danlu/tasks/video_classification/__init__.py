"""Video classification: a clip -> a class (spec.py: what it is; task.py: how it works; models.py: its networks)."""

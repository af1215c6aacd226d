"""Image generation: a DCGAN (task.py, models.py) measured by a domain classifier (measure.py)."""

"""Image segmentation: an image -> a class for every pixel (spec.py: what it is; task.py: how it works)."""

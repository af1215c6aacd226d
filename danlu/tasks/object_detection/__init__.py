"""Object detection: an image -> boxes, each with a class and a score."""

"""One image of a POST /v1/predict body: {"image": "<base64>"} or a data URL, as image classification reads it."""

from danlu.tasks.uploads import ImageInput


class DetectionInput(ImageInput):
    """The answer is the image's boxes, labels and scores (task.Detected)."""

"""The scalar metric names each kind of task reports (light: read by the task specs at recipe load)."""

CLASSIFICATION = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                  "recall_weighted", "f1_weighted", "roc_auc", "roc_auc_ovr", "loss")
REGRESSION = ("rmse", "mae", "r2", "loss")
LANGUAGE_MODEL = ("loss", "perplexity")

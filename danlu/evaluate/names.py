"""The scalar metric names each kind of task reports (light: read by the task specs at recipe load)."""

CLASSIFICATION = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                  "recall_weighted", "f1_weighted", "roc_auc", "roc_auc_ovr", "loss",
                  # two classes: the rare class's precision-recall AUC, precision, recall and F1;
                  # with evaluate.costs, the mean cost of the mistakes per example
                  "pr_auc", "precision_rare", "recall_rare", "f1_rare", "cost")
REGRESSION = ("rmse", "mae", "r2", "loss")
LANGUAGE_MODEL = ("loss", "perplexity")

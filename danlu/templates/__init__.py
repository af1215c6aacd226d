"""Industry templates: commented recipes an engineer in a field starts from (`danlu init --template NAME`).

Each names the data it expects, the metric the business reads and how the decision threshold is chosen;
recipes/industry/ in the repository is this folder.
"""

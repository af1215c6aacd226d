"""Translation: a sentence -> the same sentence in another language (spec.py: what it is; task.py: how it
works; data.py: pairs of sentences read and checked; model.py, decode.py, pretrain.py: the rest)."""

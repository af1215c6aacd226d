"""Training: the engines (Trainer-based engine.py, the plain loop.py), pretraining objectives, tokenizers.

Kept free of imports: which engine a task trains with decides what gets loaded.
"""


def fitter(engine: str):
    """The `fit` function of an engine: "trainer" (transformers.Trainer) or "loop" (danlu's plain loop,
    for small models whose whole training costs less than the Trainer's imports)."""
    if engine == "loop":
        from danlu.train.loop import fit_loop

        return fit_loop
    from danlu.train.engine import fit

    return fit


def silence_transformers() -> None:
    """No weight-loading bars, shard-writing bars or generation advice in danlu's output.

    Through the environment while transformers is not loaded yet (importing it costs ~0.6 s, which a
    run of a small classic net never needs), else through its logging functions."""
    import os
    import sys

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

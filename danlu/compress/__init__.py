"""Deployment variants of a trained run: build (ONNX, int8, pruned, a distilled student), measure, choose,
export.

    compress_run(run_dir, variants)  -> figures; RUN/variants/{variants.json, report.md, <name>/}
    load_variant(run_dir, name)      -> an object with predict_logits(batch) -> np.ndarray
    danlu.match.choose(table, constraints) picks one; danlu.compress.export writes ONNX / safetensors.

This module imports nothing heavy, so the CLI can register its commands without loading torch.
"""

DEFAULT_VARIANTS = ("onnx-fp32", "onnx-int8", "torch-int8", "prune-magnitude-0.5", "prune-structured-0.3")


def compress_run(*args, **kwargs):
    from danlu.compress.pipeline import compress_run as run

    return run(*args, **kwargs)


def load_variant(*args, **kwargs):
    from danlu.compress.runtime import load_variant as load

    return load(*args, **kwargs)


__all__ = ["DEFAULT_VARIANTS", "compress_run", "load_variant"]

"""Deployment variants of a trained run: build (ONNX, int8, pruned, a distilled student), measure, choose,
export.

    pipeline.compress_run(run_dir, variants) -> figures; RUN/variants/{variants.json, report.md, <name>/}
    runtime.load_variant(run_dir, name)      -> a Variant: its task and a Forward (danlu.inference)
    danlu.match.choose(table, constraints) picks one; export.export_run writes ONNX / safetensors.

This module imports nothing heavy, so the CLI can register its commands without loading torch.
"""

BASELINE = "pytorch-fp32"  # the run's own model, always measured first
DEFAULT_VARIANTS = ("onnx-fp32", "onnx-int8", "torch-int8", "prune-magnitude-0.5", "prune-structured-0.3")

__all__ = ["BASELINE", "DEFAULT_VARIANTS"]

"""The int8 ONNX variant of a speech run against PyTorch fp32, at batch 1: latency and the run's metric.

`danlu compress` builds the variants and measures them (each on the run's test split, the variants called
in turn on the same real clips so they share the machine's load, one thread each); this prints what it
measured for the audio tasks' acceptance figures, with the CPU model and flags.

    .venv/bin/python benchmarks/speech_int8.py RUN [--variants onnx-fp32,onnx-int8,torch-int8] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import cpu  # noqa: E402

from danlu.compress.pipeline import compress_run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", help="a finished speech-recognition or audio-classification run")
    p.add_argument("--variants", default="onnx-fp32,onnx-int8,torch-int8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--latency-examples", type=int, default=300)
    args = p.parse_args()
    figures = compress_run(args.run, variants=args.variants.split(","), threads=args.threads,
                           latency_examples=args.latency_examples, say=lambda *_: None)
    print(f"CPU: {cpu()}; {args.threads} thread(s); run {args.run}")
    metric = figures[0]["main_metric"]
    print(f"| variant | {metric} | Δ vs fp32 | p50 b1 ms | p95 b1 ms | speed-up b1 (p50) | size MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v in figures:
        b1, rel = v["latency"]["1"], v["vs_baseline"]
        print(f"| {v['name']} | {v['main_value']:.4f} | {rel['metric_delta']:+.4f} | {b1['p50_ms']:.2f} | "
              f"{b1['p95_ms']:.2f} | {rel['speedup_p50_b1']:.2f}x | {v['size_bytes'] / 1e6:.2f} |")


if __name__ == "__main__":
    main()

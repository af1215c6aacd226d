"""Making variant folders: names, ONNX export, int8 quantization (ONNX Runtime and PyTorch).

A variant name is `[PRUNE+]FORMAT` or `student[+FORMAT]`:
    FORMAT  pytorch-fp32 | onnx-fp32 | onnx-int8 | torch-int8
    PRUNE   prune-magnitude-<sparsity> | prune-structured-<sparsity>
A prune alone (`prune-magnitude-0.5`) means the pruned model in PyTorch fp32; a chain
(`prune-structured-0.3+onnx-int8`) exports and quantizes the pruned, recovered model. `student` is
the distilled student (danlu.compress.student) in PyTorch fp32; `student+onnx-int8` exports and
quantizes it.

Each folder is written under a temporary name and renamed into place when complete (the files
inside come from libraries that write paths: save_pretrained, quantize_dynamic), so a reader
never finds half a variant.
"""

from __future__ import annotations

import difflib
import io
import logging
import re
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from danlu.compress import BASELINE, DEFAULT_VARIANTS
from danlu.compress.runtime import MANIFEST, quantize_torch, size_of
from danlu.errors import DanluError
from danlu.run import atomic_write_bytes, atomic_write_json

FORMATS = ("pytorch-fp32", "onnx-fp32", "onnx-int8", "torch-int8")
STUDENT = "student"
_PRUNE = re.compile(r"^prune-(magnitude|structured)-(\d*\.?\d+)$")


@dataclass(frozen=True)
class Spec:
    name: str
    prune: tuple[str, float] | None  # ("magnitude" | "structured", sparsity)
    format: str
    student: bool = False  # the distilled student's model instead of the run's own


def default_variants(recipe) -> tuple[str, ...]:
    """What `danlu compress RUN` makes without --variants: the defaults, and the student when the
    recipe has a `compress.student` section."""
    wants_student = recipe.compress is not None and recipe.compress.student is not None
    return DEFAULT_VARIANTS + ((STUDENT,) if wants_student else ())


def parse_variants(names) -> list[Spec]:
    """Specs for the requested names, the baseline first; every mistake is reported before any work."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    names = [n.strip() for n in names if n.strip()]
    specs = [Spec(BASELINE, None, BASELINE)]
    for name in dict.fromkeys(names):
        if name != BASELINE:
            specs.append(_parse_one(name))
    return specs


def _parse_one(name: str) -> Spec:
    head, plus, tail = name.partition("+")
    if head == STUDENT:
        fmt = tail if plus else BASELINE
        if fmt not in FORMATS:
            raise DanluError(f"variant '{name}': a student chains with a format only: "
                             + ", ".join(f"student+{f}" for f in FORMATS[1:]))
        return Spec(name, None, fmt, student=True)
    if name.startswith(("distil", "student")):
        raise DanluError(f"unknown variant '{name}'; the distilled student is named 'student' (or a chain such "
                         "as student+onnx-int8); its shape comes from the recipe's compress.student section")
    prune_part, fmt = (head, tail) if plus else ((head, BASELINE) if head.startswith("prune-") else (None, head))
    prune = None
    if prune_part is not None:
        match = _PRUNE.match(prune_part)
        if not match:
            raise DanluError(f"variant '{name}': expected prune-magnitude-<sparsity> or "
                             "prune-structured-<sparsity>, e.g. prune-magnitude-0.5")
        amount = float(match.group(2))
        if not 0 < amount < 1:
            raise DanluError(f"variant '{name}': sparsity must be between 0 and 1 (exclusive), got {amount:g}")
        prune = (match.group(1), amount)
    if fmt not in FORMATS:
        known = list(FORMATS) + ["prune-magnitude-0.5", "prune-structured-0.3", STUDENT]
        close = difflib.get_close_matches(fmt, known, n=1)
        raise DanluError(f"unknown variant '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                         + f" Formats: {', '.join(FORMATS)}, optionally after prune-...+ or student+ "
                         "(e.g. prune-structured-0.3+onnx-int8, student+onnx-int8)")
    return Spec(name, prune, fmt)


# -- writing a variant folder ---------------------------------------------------------
@contextmanager
def variant_folder(root: Path, name: str):
    """A fresh temporary folder that replaces root/name only when the block completes."""
    final, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def write_manifest(folder: Path, **fields) -> dict:
    """variant.json; `size_bytes` counts the folder's network files (see runtime.network_files)."""
    manifest = {**fields, "size_bytes": fields.get("size_bytes") or size_of(folder)}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def save_torch_variant(model, folder: Path, **fields) -> dict:
    model.save_pretrained(folder)
    return write_manifest(folder, runtime="torch", precision="fp32", **fields)


def save_torch_int8(model, folder: Path, **fields) -> dict:
    quantized = quantize_torch(model)
    model.config.save_pretrained(folder)  # the loader rebuilds the network from it, then loads the int8 state
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)
    atomic_write_bytes(folder / "model.pt", buffer.getvalue())
    return write_manifest(folder, runtime="torch-int8", precision="int8", file="model.pt", **fields)


def save_onnx(exported: tuple, folder: Path, int8: bool, inputs: list[str], **fields) -> dict:
    """`exported`: export_onnx's (proto, exporter), shared by the fp32 and int8 variants of one model."""
    proto, exporter = exported
    if int8:
        import onnx

        proto = quantize_onnx(onnx.ModelProto.FromString(proto.SerializeToString()), folder)  # a copy
    atomic_write_bytes(folder / "model.onnx", proto.SerializeToString())
    return write_manifest(folder, runtime="onnx", precision="int8" if int8 else "fp32", file="model.onnx",
                          exporter=exporter, inputs=inputs, **fields)


# -- ONNX ---------------------------------------------------------------------------
class _Logits(torch.nn.Module):
    """Positional tensors in, logits out: the graph's inputs are exactly the batch's tensors."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).logits


def export_onnx(model, example: dict, sequence: tuple[str, ...] = ()):
    """(onnx.ModelProto, exporter) with a dynamic batch axis, and a dynamic sequence axis (axis 1) for token
    inputs and for the inputs named in `sequence` (a task's `sequence_inputs`: audio frames are floats).

    The torch.export-based exporter comes first (the maintained one); the TorchScript exporter is
    the fallback for models torch.export cannot trace.
    """
    names = [k for k in example if k != "labels"]
    tensors = tuple(torch.as_tensor(example[k]) for k in names)
    wrapper = _Logits(model.eval(), names).eval()
    token = [(t.dtype == torch.long and t.dim() == 2) or name in sequence for name, t in zip(names, tensors)]
    with _quiet_export():
        try:
            from torch.export import Dim

            # Dim.DYNAMIC lets the exporter find the bounds (e.g. sequence <= max_position_embeddings).
            shapes = tuple({0: Dim.DYNAMIC, **({1: Dim.DYNAMIC} if tok else {})} for tok in token)
            program = torch.onnx.export(wrapper, tensors, input_names=names, output_names=["logits"],
                                        dynamo=True, dynamic_shapes=(shapes,), external_data=False,
                                        verbose=False)
            proto = program.model_proto
            for node in proto.graph.node:  # stack traces and module paths: bytes no runtime reads
                del node.metadata_props[:]
            return proto, "torch.export"
        except Exception as exc:  # noqa: BLE001 - any tracing failure: try the older exporter
            logging.getLogger("danlu").warning("torch.export-based ONNX export failed (%s); "
                                               "using the TorchScript exporter", str(exc).splitlines()[0][:200])
    import onnx

    axes = {n: ({0: "batch", 1: "sequence"} if tok else {0: "batch"}) for n, tok in zip(names, token)}
    buffer = io.BytesIO()
    with _quiet_export():
        torch.onnx.export(wrapper, tensors, buffer, input_names=names, output_names=["logits"], dynamo=False,
                          dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17)
    return onnx.load_from_string(buffer.getvalue()), "torchscript"


@contextmanager
def _quiet_export():
    # The exporter logs every optional torchvision op it skips and warns about deprecations we cannot act on.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def quantize_onnx(proto, workdir: Path):
    """Dynamic int8 quantization (QInt8 weights, activations quantized per call) with ONNX Runtime."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    gemm_to_matmul(proto)
    src, dst = workdir / ".fp32.onnx", workdir / ".int8.onnx"
    atomic_write_bytes(src, proto.SerializeToString())
    root = logging.getLogger()  # quantize_dynamic logs a "consider pre-processing" nag on the root logger
    was, root.disabled = root.disabled, True
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    finally:
        root.disabled = was
    quantized = onnx.load(dst)
    src.unlink()
    dst.unlink()
    return quantized


def gemm_to_matmul(proto) -> None:
    """Rewrite Gemm (a Linear on 2-D input) as MatMul + Add, in place.

    ONNX Runtime's dynamic quantization covers MatMul but not Gemm, so without this an MLP's
    layers would all stay fp32. Only the plain form (alpha = beta = 1, no transA) is rewritten.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    nodes = []
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        # A weight shared with another node keeps its layout: transposing it would break the other one.
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits or uses[node.input[1]] > 1:
            nodes.append(node)
            continue
        weight = inits[node.input[1]]
        if attrs.get("transB", 0):
            weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(weight).T),
                                                    weight.name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = node.output[0] + "_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], node.input[1]], [product], name=node.name + "_mm"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_add"))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    del proto.graph.value_info[:]  # stale shapes of the transposed weights; quantize_dynamic re-infers them

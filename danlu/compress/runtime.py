"""Loading a variant and running it: one `predict_logits(batch) -> np.ndarray` for every format.

A variant folder holds `variant.json` (the manifest written by `build`) and the files that make
the network: `model.onnx` (ONNX Runtime), `model.pt` + `config.json` (a dynamically quantized
PyTorch model), or `model.safetensors` + `config.json` (a PyTorch model, e.g. pruned). The
tokenizer / preprocessor is referenced, never copied (the manifest's `preprocessing`): the run's
`model/` folder for every variant made from the run's model, the student run's `model/` folder
for a distilled student, which reads its input with its own tokenizer.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
import warnings
from pathlib import Path

import numpy as np
import torch

from danlu.errors import RunError
from danlu.run import Run, read_json

MANIFEST = "variant.json"
# Files that make the network itself; shared preprocessing (tokenizer, danlu.json) is not counted.
WEIGHT_SUFFIXES = (".onnx", ".onnx.data", ".safetensors", ".bin", ".pt")


def variants_dir(run_dir) -> Path:
    return Path(run_dir) / "variants"


def network_files(folder: Path) -> list[Path]:
    """The files a variant's size is measured on: weights / graph files and config.json."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and (p.name.endswith(WEIGHT_SUFFIXES) or p.name == "config.json"))


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in network_files(folder))


def model_class(config):
    """The class that rebuilds a saved network from its config (danlu's classic nets or transformers')."""
    import transformers

    from danlu.models import ClassicModel

    if config.model_type == "danlu_classic":
        return ClassicModel
    for name in config.architectures or []:
        if hasattr(transformers, name):
            return getattr(transformers, name)
    raise RunError(f"cannot tell which model class rebuilds a '{config.model_type}' model "
                   "(config.json has no known `architectures`)")


def load_torch(folder: Path):
    from transformers import AutoConfig

    import danlu.models  # noqa: F401  (registers the classic nets with AutoConfig)

    config = AutoConfig.from_pretrained(folder)
    return model_class(config).from_pretrained(folder).eval()


def quantize_torch(model):
    """Dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per call)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which danlu does not depend on.
        warnings.simplefilter("ignore")
        try:
            quantize = torch.ao.quantization.quantize_dynamic
        except AttributeError:
            raise RunError(f"torch-int8 needs torch.ao.quantization, which torch {torch.__version__} no longer "
                           "has; use onnx-int8") from None
        return quantize(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


class Variant(ABC):
    """A loaded variant. `task` encodes raw input (task.encode + task.collate) for predict_logits: the
    task saved in the variant's `preprocessing` folder."""

    def __init__(self, name: str, manifest: dict, task, folder: Path):
        self.name, self.manifest, self.task, self.folder = name, manifest, task, folder

    @abstractmethod
    def predict_logits(self, batch: dict) -> np.ndarray:
        """Logits for one collated batch."""


class TorchVariant(Variant):
    def __init__(self, name, manifest, task, folder, model):
        super().__init__(name, manifest, task, folder)
        self.model = model.eval()

    @torch.inference_mode()
    def predict_logits(self, batch: dict) -> np.ndarray:
        inputs = {k: torch.as_tensor(v) for k, v in batch.items() if k != "labels"}
        return self.model(**inputs).logits.float().numpy()


class OnnxVariant(Variant):
    def __init__(self, name, manifest, task, folder, threads: int | None):
        import onnxruntime as ort

        super().__init__(name, manifest, task, folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / manifest["file"]), options,
                                            providers=["CPUExecutionProvider"])
        # The exporter may drop an input the graph never reads: feed only what the graph declares.
        self.inputs = {i.name: (np.int64 if "int64" in i.type else np.float32) for i in self.session.get_inputs()}

    def predict_logits(self, batch: dict) -> np.ndarray:
        feeds = {name: _numpy(batch[name], dtype) for name, dtype in self.inputs.items()}
        return self.session.run(None, feeds)[0]


def _numpy(value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    return np.ascontiguousarray(value, dtype=dtype)


def load_variant(run_dir, name: str, task=None, threads: int | None = None) -> Variant:
    """The variant `name` of a compressed run, ready to predict.

    `task`: the variant's task when the caller already has it: the run's, or for a distilled student
    the student's (it is otherwise loaded from the manifest's `preprocessing` folder, which also loads
    that folder's fp32 model once; it is dropped unless it is the variant).
    `threads`: intra-op threads for ONNX Runtime, and torch.set_num_threads for PyTorch variants.
    """
    folder = variants_dir(run_dir) / name
    if not (folder / MANIFEST).exists():
        known = sorted(p.name for p in variants_dir(run_dir).glob("*") if (p / MANIFEST).exists())
        raise RunError(f"{run_dir}: no variant '{name}'" + (f"; variants: {', '.join(known)}" if known
                       else "; make them with `danlu compress RUN`"))
    manifest = read_json(folder / MANIFEST)
    preprocessing = (folder / manifest.get("preprocessing", "../../model")).resolve()
    base = None
    if task is None:
        from danlu.tasks import load_task

        if preprocessing == Run(run_dir).model_dir.resolve():
            Run(run_dir).require_model()
        elif not (preprocessing / "config.json").exists():
            raise RunError(f"{run_dir}: variant '{name}' reads its input with {preprocessing}, which is missing; "
                           "make the variant again with `danlu compress`")
        task, base = load_task(preprocessing)
    weights = (folder / manifest.get("weights_dir", ".")).resolve()
    if manifest["runtime"] == "onnx":
        return OnnxVariant(name, manifest, task, folder, threads)
    if threads:
        torch.set_num_threads(threads)
    if manifest["runtime"] == "torch-int8":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(weights)
        model = quantize_torch(model_class(config)(config))
        with warnings.catch_warnings():  # "TypedStorage is deprecated", raised inside torch.load itself
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO((folder / manifest["file"]).read_bytes()), weights_only=True)
        model.load_state_dict(state)
    elif base is not None and weights == preprocessing:
        model = base
    else:
        model = load_torch(weights)
    return TorchVariant(name, manifest, task, folder, model)

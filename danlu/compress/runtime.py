"""Loading a variant: its task and a `Forward` (danlu.inference) for every format, so a variant
predicts, is measured and is served through the same inference path as the run's own model.

A variant folder holds `variant.json` (the manifest written by `build`) and the files that make
the network: `model.onnx` (ONNX Runtime), `model.pt` + `config.json` (a dynamically quantized
PyTorch model), or `model.safetensors` + `config.json` (a PyTorch model, e.g. pruned). The
tokenizer / preprocessor is referenced, never copied (the manifest's `preprocessing`): the run's
`model/` folder for every variant made from the run's model, the student run's `model/` folder
for a distilled student, which reads its input with its own tokenizer.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from danlu.errors import RunError
from danlu.inference import Forward, OnnxForward, TorchForward
from danlu.run import Run, read_json

MANIFEST = "variant.json"
# Files that make the network itself; shared preprocessing (tokenizer, danlu.json) is not counted.
WEIGHT_SUFFIXES = (".onnx", ".onnx.data", ".safetensors", ".bin", ".pt")


def network_files(folder: Path) -> list[Path]:
    """The files a variant's size is measured on: weights / graph files and config.json."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and (p.name.endswith(WEIGHT_SUFFIXES) or p.name == "config.json"))


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in network_files(folder))


def _transformers_class(folder: Path):
    """(the transformers class config.json names, the config)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    for name in config.architectures or []:
        if hasattr(transformers, name):
            return getattr(transformers, name), config
        # A model type registered with the Auto classes in this process (danlu's own networks): the class
        # comes from that registration, never from the folder.
        for auto in (transformers.AutoModelForCTC, transformers.AutoModelForAudioClassification,
                     transformers.AutoModelForTokenClassification, transformers.AutoModelForSequenceClassification):
            mapping = auto._model_mapping
            if type(config) in mapping and mapping[type(config)].__name__ == name:
                return mapping[type(config)], config
    raise RunError(f"cannot tell which model class rebuilds a '{config.model_type}' model "
                   "(config.json has no known `architectures`)")


def fresh_model(folder: Path):
    """A network of the architecture saved in `folder`, with fresh weights (to load a state dict into)."""
    from danlu.models.classic import ClassicConfig, ClassicModel, is_classic

    if is_classic(folder):
        return ClassicModel(ClassicConfig.from_dict(read_json(Path(folder) / "config.json")))
    cls, config = _transformers_class(folder)
    return cls(config)


def load_torch(folder: Path):
    """The network saved in `folder` (danlu's classic nets or any transformers architecture)."""
    from danlu.models.classic import ClassicModel, is_classic

    if is_classic(folder):
        return ClassicModel.from_pretrained(folder)
    cls, _ = _transformers_class(folder)
    return cls.from_pretrained(folder).eval()


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


class Variant:
    """A loaded variant: `forward` runs a collated batch; `task` encodes raw input for it (the task saved
    in the variant's `preprocessing` folder)."""

    def __init__(self, name: str, manifest: dict, task, folder: Path, forward: Forward):
        self.name, self.manifest, self.task, self.folder, self.forward = name, manifest, task, folder, forward


def inside(run: Run, path: Path, name: str) -> Path:
    """`path` resolved, refused unless it stays inside the run folder: a manifest names files, and must
    not point the loader at anything else on the machine."""
    resolved, root = Path(path).resolve(), run.root.resolve()
    if resolved != root and root not in resolved.parents:
        raise RunError(f"{run.root}: variant '{name}' names {path}, outside the run folder; make the variant "
                       "again with `danlu compress`")
    return resolved


def _int8_state(path: Path) -> dict:
    """The int8 state dict: tensors only (weights_only=True), so a crafted file cannot run code."""
    import pickle

    try:
        with warnings.catch_warnings():  # "TypedStorage is deprecated", raised inside torch.load itself
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise RunError(f"{path}: is not an int8 state dict danlu wrote ({str(exc).splitlines()[0][:200]}); "
                       "make the variant again with `danlu compress`") from None


def load_variant(run_dir, name: str, task=None, threads: int | None = None) -> Variant:
    """The variant `name` of a compressed run, ready to predict.

    `task`: the variant's task when the caller already has it: the run's, or for a distilled student
    the student's (it is otherwise loaded from the manifest's `preprocessing` folder, which also loads
    that folder's fp32 model once; it is dropped unless it is the variant).
    `threads`: intra-op threads for ONNX Runtime, and torch.set_num_threads for PyTorch variants.
    """
    run = Run(run_dir)
    folder = run.variant(name)
    if not (folder / MANIFEST).exists():
        known = sorted(p.name for p in run.variants.glob("*") if (p / MANIFEST).exists())
        raise RunError(f"{run_dir}: no variant '{name}'" + (f"; variants: {', '.join(known)}" if known
                       else "; make them with `danlu compress RUN`"))
    manifest = read_json(folder / MANIFEST)
    preprocessing = inside(run, folder / manifest.get("preprocessing", "../../model"), name)
    base = None
    if task is None:
        from danlu.tasks import load_task

        if preprocessing == run.model_dir.resolve():
            run.require_model()
        elif not (preprocessing / "config.json").exists():
            raise RunError(f"{run_dir}: variant '{name}' reads its input with {preprocessing}, which is missing; "
                           "make the variant again with `danlu compress`")
        task, base = load_task(preprocessing)
    weights = inside(run, folder / manifest.get("weights_dir", "."), name)
    if manifest["runtime"] == "onnx":
        return Variant(name, manifest, task, folder, OnnxForward(inside(run, folder / manifest["file"], name), threads))
    if threads:
        torch.set_num_threads(threads)
    if manifest["runtime"] == "torch-int8":
        model = quantize_torch(fresh_model(weights))
        model.load_state_dict(_int8_state(inside(run, folder / manifest["file"], name)))
    elif base is not None and weights == preprocessing:
        model = base
    else:
        model = load_torch(weights)
    return Variant(name, manifest, task, folder, TorchForward(model))

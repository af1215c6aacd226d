"""Translation: a sentence in the source language -> the same sentence in the target language.

From scratch, one subword tokenizer is trained on both sides of the training pairs and a pre-norm
encoder-decoder Transformer of a named size is built (model.py says which and why); from a pretrained
checkpoint (model.from: a local folder, a finished run, a hub id) its own tokenizer and weights are
loaded with AutoTokenizer / AutoModelForSeq2SeqLM. Training minimises label-smoothed cross-entropy
on the target tokens (teacher forcing); evaluation decodes every sentence of a split (beam search
with a length penalty, or greedy: recipe `translation:`) and scores BLEU and chrF with sacreBLEU on
the detokenized text (decode.py). The saved model loads with AutoModelForSeq2SeqLM + AutoTokenizer,
and its generation_config.json holds the run's decoding settings.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from danlu.errors import DanluError, DataError
from danlu.inference import Forward, groups
from danlu.models import load_pretrained, resolve_pretrained
from danlu.tasks.base import Task, read_meta
from danlu.tasks.translation import decode, model as nets
from danlu.train.examples import Examples

MAX_SOURCE_CHARS = 100_000  # one input of a request; longer sentences are cut to max_length tokens anyway
MEMORY_PAIRS = 100_000  # training pairs the translation-memory baseline searches (a seeded sample beyond)


class Translated(BaseModel):
    translation: str


class Pairs(Examples):
    """Encoded pairs (input_ids, labels) with the texts they came from, for decoding and scoring."""

    def __init__(self, items: list[dict], sources: list[str], references: list[str] | None):
        super().__init__(items)
        self.sources, self.references = sources, references

    def source_ids(self) -> list[list[int]]:
        return [item["input_ids"] for item in self.items]


class Translation(Task):
    large_model = True
    group_by_length = True
    encodes_thread_safely = False
    metrics_in_trainer = False  # the Trainer measures the validation loss; BLEU needs a decoded split

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.tokenizer = None
        self.max_length = recipe.model.max_length if recipe else 128
        self.cfg = recipe.translation.model_dump() if recipe else {}
        if recipe and self.cfg["max_new_tokens"] is None:
            self.cfg["max_new_tokens"] = self.max_length

    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    # -- training ----------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
            if self.tokenizer.pad_token_id is None or self.tokenizer.eos_token_id is None:
                raise DanluError(f"model.from: the tokenizer of '{path}' has no padding or end-of-sentence token; "
                                 "a sequence-to-sequence tokenizer needs both")
        else:
            texts = train["source"].astype(str).tolist() + train["target"].astype(str).tolist()
            if not any(t.strip() for t in texts):
                raise DataError("the training pairs hold no text")
            self.tokenizer = nets.shared_tokenizer(texts, self.recipe.tokenizer)
        self.tokenizer.model_max_length = self.max_length

    def build_model(self):
        cfg = self.recipe.model
        path = self.pretrained_path()
        if path:
            config = AutoConfig.from_pretrained(path)
            extra = {}
            if cfg.dropout is not None:  # T5 calls it dropout_rate, the BART family dropout
                extra["dropout_rate" if hasattr(config, "dropout_rate") else "dropout"] = cfg.dropout
            model = load_pretrained(AutoModelForSeq2SeqLM, path, **extra)
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit and self.max_length > limit:
                raise DanluError(f"model.max_length: {self.max_length} is longer than the {limit} positions of '{path}'")
        else:
            model = nets.build(self.tokenizer, cfg, self.cfg["decoder_layers"])
        return nets.smooth_labels(model, self.cfg["label_smoothing"])

    def encode(self, frame: pd.DataFrame, train: bool = False) -> Pairs:
        sources = frame["source"].astype(str).tolist()
        ids = self.tokenizer(sources, truncation=True, max_length=self.max_length)["input_ids"]
        references = frame["target"].astype(str).tolist() if "target" in frame.columns else None
        labels = (self.tokenizer(text_target=references, truncation=True, max_length=self.max_length)["input_ids"]
                  if references is not None else None)
        items = [{"input_ids": ids[i], **({"labels": labels[i]} if labels is not None else {})}
                 for i in range(len(ids))]
        return Pairs(items, sources, references)

    def collate(self, items: list[dict]) -> dict:
        pad = self.tokenizer.pad_token_id
        width = _padded(max(len(item["input_ids"]) for item in items))
        ids = np.full((len(items), width), pad, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        for row, item in enumerate(items):
            ids[row, :len(item["input_ids"])] = item["input_ids"]
            mask[row, :len(item["input_ids"])] = 1
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if "labels" in items[0]:
            labels = np.full((len(items), _padded(max(len(item["labels"]) for item in items))), -100, dtype=np.int64)
            for row, item in enumerate(items):
                labels[row, :len(item["labels"])] = item["labels"]
            batch["labels"] = torch.from_numpy(labels)
        return batch

    # -- measuring and predicting --------------------------------------------------------
    def translate(self, forward_or_model, sources_ids: list[list[int]], beams: int | None = None,
                  batch_size: int = 32, lock=None) -> list[str]:
        # A transformers seq2seq model has a `.model` of its own (the bare encoder-decoder): ask the type.
        model = forward_or_model.model if isinstance(forward_or_model, Forward) else forward_or_model
        if model is None:
            raise DanluError("translation decodes with the PyTorch model; this form of the model has none")
        return decode.translate_ids(model, self.tokenizer, sources_ids, beams or self.cfg["beams"],
                                    self.cfg["length_penalty"], self.cfg["max_new_tokens"], batch_size,
                                    bf16=bool(getattr(forward_or_model, "bf16", False)), lock=lock)

    def evaluate(self, forward, dataset: Pairs, batch_size: int = 32) -> dict:
        """BLEU and chrF of the decoded split, its loss per target token, and what the decoding took."""
        if dataset.references is None:
            raise DataError("evaluating a translation needs the target sentences (a target column)")
        beams = self.cfg["beams"]
        hypotheses, seconds = decode.timed(self.translate, forward, dataset.source_ids(), beams, batch_size)
        result = {**self.metrics(hypotheses, dataset.references), "loss": self.loss(forward.model, dataset),
                  "n": len(dataset), "decoding": _timing(beams, self.cfg["length_penalty"], seconds, len(dataset))}
        if self.cfg.get("compare_greedy") and beams > 1:
            greedy, seconds = decode.timed(self.translate, forward, dataset.source_ids(), 1, batch_size)
            scores = self.metrics(greedy, dataset.references)
            result["greedy"] = {"bleu": scores["bleu"], "chrf": scores["chrf"],
                                **_timing(1, self.cfg["length_penalty"], seconds, len(dataset))}
        return result

    def loss(self, model, dataset: Pairs, batch_size: int = 64) -> float:
        """Mean cross-entropy per target token, teacher-forced (no label smoothing)."""
        total, count = 0.0, 0
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        for group in groups(dataset.items, batch_size):
            batch = {k: v.to(device) for k, v in self.collate([dataset.items[i] for i in group]).items()}
            summed, n = nets.token_loss(model, batch)
            total, count = total + summed, count + n
        model.train(was_training)
        return total / count if count else float("nan")

    def metrics(self, outputs, label_ids) -> dict:
        """BLEU and chrF of the translations `outputs` against the references `label_ids` (strings)."""
        return decode.score(list(outputs), list(label_ids), self.cfg["target_language"])

    def to_json(self, outputs) -> list[dict]:
        return [{"translation": str(text)} for text in outputs]

    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        """The translation of each row's source, decoded with the run's settings."""
        with lock if lock is not None else nullcontext():
            ids = self.tokenizer(frame["source"].astype(str).tolist(), truncation=True,
                                 max_length=self.max_length)["input_ids"]
        return self.to_json(self.translate(forward, ids, batch_size=batch_size, lock=lock))

    # -- baselines -------------------------------------------------------------------------
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        memory = TranslationMemory(frames["train"])
        out = {}
        for split in splits:
            frame = frames.get(split)
            if frame is None or not len(frame):
                continue
            sources, references = frame["source"].astype(str).tolist(), frame["target"].astype(str).tolist()
            out[split] = {name: {k: v for k, v in self.metrics(hypotheses, references).items() if k != "signature"}
                          for name, hypotheses in (("copy", sources), ("memory", memory.lookup(sources)))}
        return out

    def baseline_names(self) -> dict[str, str]:
        return {"copy": "the source sentence itself, untranslated",
                "memory": "the target of the training pair whose source is most alike (TF-IDF character "
                          "1-4-grams): a translation memory"}

    # -- reporting -----------------------------------------------------------------------
    def report_sections(self, metrics: dict) -> list:
        rows, signature = [], None
        for split, found in metrics.items():
            if not isinstance(found, dict) or "decoding" not in found:
                continue
            signature = found.get("signature", signature)
            for label, scores, timing in (("beam", found, found["decoding"]), ("greedy", found.get("greedy"),
                                                                                 found.get("greedy"))):
                if scores:
                    rows.append([split, f"{label} ({timing['beams']})", f"{scores['bleu']:.2f}", f"{scores['chrf']:.2f}",
                                 f"{timing['seconds']:.1f}", f"{timing['sentences_per_second']:.1f}"])
        if not rows:
            return []
        blocks = [("table", ["split", "decoding (beams)", "BLEU", "chrF", "seconds", "sentences/s"], rows)]
        if signature:
            blocks.append(("text", f"sacreBLEU signatures: BLEU {signature['bleu']}; chrF {signature['chrf']}"))
        return [("Decoding", blocks)]

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        """A few test (else validation) sentences beside their reference and the model's translation."""
        count = self.cfg.get("samples", 0)
        split = next((s for s in ("test", "validation") if s in frames and len(frames[s])), None)
        if not count or split is None:
            return {}, []
        frame = frames[split].head(count)
        outputs = self.translate(model, self.encode(frame).source_ids())
        rows = [[s, r, o] for s, r, o in zip(frame["source"], frame["target"], outputs)]
        text = (f"The first {len(rows)} {split} sentences, {self.cfg['source_language']} -> "
                f"{self.cfg['target_language']}, beam {self.cfg['beams']}.")
        return {}, [("Sample translations", [("text", text), ("table", ["source", "reference", "model"], rows)])]

    def input_facts(self) -> dict:
        trained = self.recipe is not None and not self.recipe.model.from_
        kind = f"{self.recipe.tokenizer.kind}, trained on both sides" if trained else "the pretrained model's"
        return {"languages": f"{self.cfg['source_language']} -> {self.cfg['target_language']}", "tokenizer": kind,
                "vocabulary": len(self.tokenizer), "max_length": self.max_length,
                "decoding": f"beams {self.cfg['beams']}, length penalty {self.cfg['length_penalty']:g}, "
                            f"at most {self.cfg['max_new_tokens']} new tokens"}

    def card(self) -> dict:
        return {**super().card(), "input": "text", "source_language": self.cfg.get("source_language"),
                "target_language": self.cfg.get("target_language")}

    # -- pretraining -----------------------------------------------------------------------
    def pretrain(self, objective: str, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
        from danlu.tasks.translation.pretrain import pretrain_denoise

        return pretrain_denoise(self, train, out, say, callbacks)

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        return pd.DataFrame({"source": [value]})

    def request_item(self):
        return Annotated[str, Field(max_length=MAX_SOURCE_CHARS)]

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"source": value} for value in inputs]

    def response_item(self) -> type[BaseModel]:
        return Translated

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        # Outside danlu, model.generate() then decodes as the run did.
        generation = model.generation_config
        generation.num_beams, generation.length_penalty = self.cfg["beams"], self.cfg["length_penalty"]
        generation.max_new_tokens = self.cfg["max_new_tokens"]
        generation.early_stopping = self.cfg["beams"] > 1
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, max_length=self.max_length, translation=self.cfg)

    def load(self, model_dir: Path):
        meta = read_meta(model_dir)
        self.max_length = meta.get("max_length", 128)
        self.cfg = meta.get("translation") or {}
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return AutoModelForSeq2SeqLM.from_pretrained(model_dir)


class TranslationMemory:
    """The target of the training pair whose source is most alike, by cosine of TF-IDF character 1-4-grams."""

    def __init__(self, train: pd.DataFrame, seed: int = 0):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(train) > MEMORY_PAIRS:
            train = train.iloc[np.sort(np.random.default_rng(seed).choice(len(train), MEMORY_PAIRS, replace=False))]
        self.targets = train["target"].astype(str).to_numpy()
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, lowercase=True)
        self.index = self.vectorizer.fit_transform(train["source"].astype(str))

    def lookup(self, sources: list[str], chunk: int = 1000) -> list[str]:
        found: list[str] = []
        for start in range(0, len(sources), chunk):
            similarity = self.vectorizer.transform(sources[start:start + chunk]) @ self.index.T
            found += self.targets[np.asarray(similarity.argmax(axis=1)).ravel()].tolist()
        return found


def _padded(width: int) -> int:
    return -(-width // 8) * 8  # a multiple of 8: fewer distinct shapes for the kernels


def _timing(beams: int, length_penalty: float, seconds: float, sentences: int) -> dict:
    return {"beams": beams, "length_penalty": length_penalty, "seconds": round(seconds, 2),
            "sentences_per_second": round(sentences / max(seconds, 1e-9), 2)}

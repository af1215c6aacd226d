"""Audio classification and speech recognition: a clip (a file, uploaded bytes) -> a class, or its transcript.

Both read a clip the same way: mono at the model's rate (danlu.data.audio), cut at audio.max_seconds,
then the feature extractor: from scratch transformers' ParakeetFeatureExtractor (log-mel frames, per-clip
normalised), or a pretrained checkpoint's own (a Wav2Vec2 checkpoint reads the raw wave). The extractor
is saved beside the model, so AutoFeatureExtractor + AutoModelForCTC / AutoModelForAudioClassification
load a run's model without danlu's data code.

Recognition predicts characters with a CTC head; the vocabulary is a Wav2Vec2CTCTokenizer built from
the training transcripts (any script: Chinese characters are characters), decoded greedily (the
most probable token per frame, repeats merged, blanks dropped). WER and CER are jiwer's.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from danlu.data.audio import load_audio
from danlu.errors import DataError
from danlu.models import load_pretrained, load_with_new_head, resolve_pretrained, shape_of
from danlu.tasks.audio.features import Augmented, pooled_features
from danlu.tasks.base import Task, read_meta
from danlu.tasks.classifier import Classifier
from danlu.train.examples import Examples

IGNORED = -100
SAMPLES_SHOWN = 12  # test transcripts in metrics.json and the report


class Transcript(BaseModel):
    text: str


class AudioTask(Task):
    large_model = True
    group_by_length = True

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        from danlu.tasks.audio.spec import AudioConfig

        self.audio = recipe.audio if recipe is not None else AudioConfig()
        self.sampling_rate = self.audio.sampling_rate
        self.max_seconds = self.audio.max_seconds
        self.extractor = None
        # A clip's features by path: the baselines read the same clips the model was encoded from.
        self._features: dict[str, np.ndarray] = {}
        self.pretrained = bool(recipe is not None and recipe.model.from_)

    @property
    def input_name(self) -> str:
        return self.extractor.model_input_names[0]

    @property
    def sequence_inputs(self) -> tuple[str, ...]:
        return (self.input_name,)

    def pretrained_path(self) -> str:
        return resolve_pretrained(self.recipe.model.from_, self.recipe.base_dir)

    def setup_audio(self) -> None:
        if self.pretrained:
            from transformers import AutoFeatureExtractor

            self.extractor = load_pretrained(AutoFeatureExtractor, self.pretrained_path())
            self.sampling_rate = int(self.extractor.sampling_rate)
        else:
            from transformers import ParakeetFeatureExtractor

            self.extractor = ParakeetFeatureExtractor(feature_size=self.audio.mel_bins,
                                                      sampling_rate=self.sampling_rate)

    def features(self, value) -> np.ndarray:
        if isinstance(value, str) and value in self._features:
            return self._features[value]
        found = self._extract(value)
        if isinstance(value, str):
            self._features[value] = found
        return found

    def _extract(self, value) -> np.ndarray:
        wave = load_audio(value, self.sampling_rate)[: int(self.max_seconds * self.sampling_rate)]
        if len(wave) < self.sampling_rate // 50:  # under 20 ms: pad, so a window fits and the clip still counts
            wave = np.pad(wave, (0, self.sampling_rate // 50 - len(wave)))
        out = self.extractor(wave, sampling_rate=self.sampling_rate, return_tensors="np")
        return np.asarray(out[self.input_name][0], dtype=np.float32)

    def shape(self) -> dict:
        cfg = self.recipe.model
        return shape_of(cfg.model_copy(update={"arch": "conformer"}))

    def dropout(self) -> float:
        return 0.1 if self.recipe.model.dropout is None else self.recipe.model.dropout

    def encode_features(self, frame: pd.DataFrame, targets: list, train: bool):
        items = [{self.input_name: self.features(v), **({"labels": t} if t is not None else {})}
                 for v, t in zip(frame["audio"], targets)]
        spec = self.audio.spec_augment
        if train and spec is not None and not self.pretrained:
            return Augmented(items, self.input_name, spec, seed=self.recipe.train.seed)
        return Examples(items)

    def collate(self, items: list[dict]) -> dict:
        name = self.input_name
        lengths = [len(item[name]) for item in items]
        longest = -(-max(lengths) // 8) * 8  # fewer distinct shapes
        first = np.asarray(items[0][name])
        values = np.zeros((len(items), longest, *first.shape[1:]), dtype=np.float32)
        mask = np.zeros((len(items), longest), dtype=np.int64)
        for i, item in enumerate(items):
            values[i, :lengths[i]] = item[name]
            mask[i, :lengths[i]] = 1
        batch = {name: torch.as_tensor(values), "attention_mask": torch.as_tensor(mask)}
        if "labels" in items[0]:
            batch["labels"] = self.collate_labels([item["labels"] for item in items])
        return batch

    def collate_labels(self, labels: list):
        return torch.as_tensor(np.asarray(labels, dtype=np.int64))

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        if not Path(value).is_file():
            raise DataError(f"{value}: no such audio file")
        return pd.DataFrame({"audio": [value]})

    def request_item(self):
        from danlu.tasks.audio.request import AudioInput

        return AudioInput

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"audio": {"bytes": value.audio}} for value in inputs]  # load_audio reads this form

    def card(self) -> dict:
        return {**super().card(), "input": "audio", "sampling_rate": self.sampling_rate}

    def input_facts(self) -> dict:
        if self.pretrained:
            return {"input": f"the pretrained model's feature extractor at {self.sampling_rate:,} Hz"}
        return {"input": f"{self.audio.mel_bins} log-mel bins every 10 ms at {self.sampling_rate:,} Hz, mono, "
                         f"at most {self.max_seconds:g} s",
                "spec_augment": "on" if self.audio.spec_augment is not None else "off"}

    # -- the baselines' features ----------------------------------------------------------
    def pooled(self, frame: pd.DataFrame) -> np.ndarray:
        return np.stack([pooled_features(self.features(v)) for v in frame["audio"]])

    # -- saving --------------------------------------------------------------------------
    def save_audio(self, model, out_dir: Path, **meta) -> None:
        model.save_pretrained(out_dir)
        self.extractor.save_pretrained(out_dir)
        self.save_meta(out_dir, sampling_rate=self.sampling_rate, max_seconds=self.max_seconds,
                       pretrained=self.pretrained, mel_bins=self.audio.mel_bins, **meta)

    def load_audio_meta(self, model_dir: Path) -> dict:
        from transformers import AutoFeatureExtractor

        meta = read_meta(model_dir)
        self.sampling_rate, self.max_seconds = meta["sampling_rate"], meta["max_seconds"]
        self.pretrained = meta.get("pretrained", False)
        self.extractor = AutoFeatureExtractor.from_pretrained(model_dir)
        return meta


class AudioClassification(Classifier, AudioTask):
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.fit_labels(train["label"])
        self.setup_audio()

    def build_model(self):
        labels = self.head_labels()
        if self.pretrained:
            from transformers import AutoModelForAudioClassification

            return load_with_new_head(AutoModelForAudioClassification, self.pretrained_path(),
                                      self.recipe.model.dropout, **labels)
        from danlu.tasks.audio.models import classifier_model

        return classifier_model(self.shape(), self.audio.mel_bins, self.audio.subsampling, self.dropout(), **labels)

    def encode(self, frame: pd.DataFrame, train: bool = False):
        ids = self.label_ids(frame["label"]) if "label" in frame.columns else [None] * len(frame)
        return self.encode_features(frame, list(ids), train)

    def baseline_features(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        return self.pooled(train), {s: self.pooled(f) for s, f in frames.items()}

    def baseline_names(self) -> dict[str, str]:
        return {"majority": "always the most frequent training class",
                "linear": "logistic regression on each clip's mean and spread of log-mel features"}

    def save(self, model, out_dir: Path) -> None:
        self.save_audio(model, out_dir, **self.label_meta())

    def load(self, model_dir: Path):
        from transformers import AutoModelForAudioClassification

        from danlu.tasks.audio import models

        models.register()  # danlu's model types, known to the Auto classes

        self.load_labels(self.load_audio_meta(model_dir))
        return AutoModelForAudioClassification.from_pretrained(model_dir)


class SpeechRecognition(AudioTask):
    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.tokenizer = None
        self.lowercase = self.audio.lowercase
        self.upper_vocab = False  # a pretrained vocabulary of capitals only (LibriSpeech checkpoints)

    # -- the vocabulary -------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.setup_audio()
        if self.pretrained:
            from transformers import AutoTokenizer

            self.tokenizer = load_pretrained(AutoTokenizer, self.pretrained_path())
            letters = [t for t in self.tokenizer.get_vocab() if len(t) == 1 and t.isalpha()]
            self.upper_vocab = bool(letters) and all(t.isupper() for t in letters)
        else:
            self.tokenizer = character_tokenizer(self.normal(train["transcript"]))

    def normal(self, values) -> list[str]:
        texts = [" ".join(str(v).split()) for v in values]
        return [t.lower() for t in texts] if self.lowercase else texts

    def target(self, text: str) -> str:
        return text.upper() if self.upper_vocab else text

    def decode(self, ids, ctc: bool = True) -> str:
        """Token ids -> text; `ctc`: a frame-per-token output (repeats merged), else label ids as written."""
        text = self.tokenizer.decode([int(i) for i in ids], group_tokens=ctc).strip()
        return text.lower() if self.upper_vocab and self.lowercase else text

    def build_model(self):
        blank = self.tokenizer.pad_token_id
        if self.pretrained:
            from transformers import AutoModelForCTC

            return load_pretrained(AutoModelForCTC, self.pretrained_path(), ctc_loss_reduction="mean",
                                   pad_token_id=blank, vocab_size=len(self.tokenizer), ignore_mismatched_sizes=True)
        from danlu.tasks.audio.models import ctc_model

        return ctc_model(self.shape(), self.audio.mel_bins, self.audio.subsampling, self.dropout(),
                         vocab_size=len(self.tokenizer), blank_id=blank)

    def encode(self, frame: pd.DataFrame, train: bool = False):
        if "transcript" in frame.columns:
            texts = self.normal(frame["transcript"])
            targets = [self.tokenizer(self.target(t)).input_ids for t in texts]
            unk = self.tokenizer.unk_token_id
            for row, (text, ids) in enumerate(zip(texts, targets)):
                if not ids:
                    raise DataError(f"{_where(frame, row)}: the transcript is empty")
                if unk is not None and unk in ids and train:
                    raise DataError(f"{_where(frame, row)}: the transcript '{text}' has characters the "
                                    f"vocabulary lacks")
        else:
            targets = [None] * len(frame)
        return self.encode_features(frame, targets, train)

    def collate_labels(self, labels: list):
        out = np.full((len(labels), max(len(t) for t in labels)), IGNORED, dtype=np.int64)
        for i, ids in enumerate(labels):
            out[i, :len(ids)] = ids
        return torch.as_tensor(out)

    def join_outputs(self, parts: list):
        """Logits (frames differ between batches) padded with blank frames; label ids with IGNORED."""
        longest = max(p.shape[1] for p in parts)
        out = []
        for p in parts:
            if p.shape[1] < longest:
                pad = np.full((p.shape[0], longest - p.shape[1], *p.shape[2:]), IGNORED, dtype=p.dtype)
                if p.ndim == 3:
                    from danlu.tasks.audio.models import BLANK_FILL

                    pad[:] = BLANK_FILL
                    pad[..., self.tokenizer.pad_token_id] = 0.0
                p = np.concatenate([p, pad], axis=1)
            out.append(p)
        return np.concatenate(out)

    # -- measuring ---------------------------------------------------------------------
    def hypotheses(self, logits: np.ndarray) -> list[str]:
        return [self.decode(row) for row in np.asarray(logits).argmax(-1)]

    def references(self, label_ids: np.ndarray) -> list[str]:
        return [self.decode(row[row != IGNORED], ctc=False) for row in np.asarray(label_ids)]

    def metrics(self, outputs, label_ids) -> dict:
        return transcript_metrics(self.references(label_ids), self.hypotheses(outputs))

    def evaluate(self, forward, dataset) -> dict:
        from danlu.inference import outputs

        logits, labels = outputs(self, forward, dataset)
        if labels is None:
            raise DataError("evaluation needs transcripts: the rows have no transcript column")
        return self.metrics(logits, labels)

    def to_json(self, logits: np.ndarray) -> list[dict]:
        return [{"text": text} for text in self.hypotheses(logits)]

    def response_item(self) -> type[BaseModel]:
        return Transcript

    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        """The most frequent training transcript for every clip; and, as a closed-vocabulary classifier,
        logistic regression from each clip's pooled log-mel features to one of the training transcripts
        (strong when few distinct transcripts repeat, as spoken digits or commands do)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train_texts = self.normal(frames["train"]["transcript"])
        common = Counter(train_texts).most_common(1)[0][0]
        wanted = {s: frames[s] for s in splits if s in frames and len(frames[s]) and "transcript" in frames[s]}
        out = {s: {"majority": transcript_metrics(self.normal(f["transcript"]), [common] * len(f))}
               for s, f in wanted.items()}
        if 1 < len(set(train_texts)) <= max(2, len(train_texts) // 5):
            linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            linear.fit(self.pooled(frames["train"]), train_texts)
            for split, frame in wanted.items():
                out[split]["linear"] = transcript_metrics(self.normal(frame["transcript"]),
                                                          list(linear.predict(self.pooled(frame))))
        return out

    def baseline_names(self) -> dict[str, str]:
        return {"majority": "the most frequent training transcript for every clip",
                "linear": "logistic regression from pooled log-mel features to one of the training transcripts "
                          "(only where few transcripts repeat)"}

    def report_sections(self, metrics: dict) -> list:
        sections = []
        for split, split_metrics in metrics.items():
            shown = (split_metrics or {}).get("samples") or []
            if shown:
                rows = [[s["reference"], s["hypothesis"], "yes" if s["reference"] == s["hypothesis"] else "no"]
                        for s in shown]
                sections.append((f"Transcripts: {split}", [("table", ["reference", "hypothesis", "right"], rows)]))
        return sections

    def input_facts(self) -> dict:
        return {**super().input_facts(), "vocabulary": len(self.tokenizer) if self.tokenizer else None}

    def save(self, model, out_dir: Path) -> None:
        self.tokenizer.save_pretrained(out_dir)
        self.save_audio(model, out_dir, lowercase=self.lowercase, upper_vocab=self.upper_vocab)

    def load(self, model_dir: Path):
        from transformers import AutoModelForCTC, AutoTokenizer

        from danlu.tasks.audio import models

        models.register()  # danlu's model types, known to the Auto classes

        meta = self.load_audio_meta(model_dir)
        self.lowercase, self.upper_vocab = meta.get("lowercase", True), meta.get("upper_vocab", False)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return AutoModelForCTC.from_pretrained(model_dir)


def transcript_metrics(references: list[str], hypotheses: list[str]) -> dict:
    """WER and CER (jiwer) over the split, the share of clips transcribed exactly, and a few samples with
    the mistakes first."""
    import jiwer

    if not references:
        return {"wer": None, "cer": None, "n": 0}
    wer = jiwer.wer(references, hypotheses)
    cer = jiwer.cer(references, hypotheses)
    pairs = list(zip(references, hypotheses))
    wrong = [p for p in pairs if p[0] != p[1]]
    shown = (wrong + [p for p in pairs if p[0] == p[1]])[:SAMPLES_SHOWN]
    return {"wer": round(float(wer), 6), "cer": round(float(cer), 6),
            "exact": round(sum(r == h for r, h in pairs) / len(pairs), 6), "n": len(pairs),
            "samples": [{"reference": r, "hypothesis": h} for r, h in shown]}


def character_tokenizer(transcripts: list[str]):
    """A CTC vocabulary of the training transcripts' characters: <pad> (the CTC blank, id 0), <unk>, `|`
    between words, then the characters by frequency."""
    from transformers import Wav2Vec2CTCTokenizer

    counts = Counter(c for t in transcripts for c in t if not c.isspace())
    counts.pop("|", None)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2}
    for char, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        vocab[char] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.json"
        path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        return Wav2Vec2CTCTokenizer(str(path), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|",
                                    bos_token=None, eos_token=None, do_lower_case=False)


def _where(frame: pd.DataFrame, row: int) -> str:
    source = frame["_source"].iloc[row] if "_source" in frame else "the data"
    line = int(frame["_row"].iloc[row]) if "_row" in frame else row + 1
    return f"{source} line {line}"

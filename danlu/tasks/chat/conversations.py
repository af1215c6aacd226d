"""Records in the common chat shapes -> one conversation: a list of {role, content} turns.

Three shapes are read, whichever columns a record has (each name can be mapped with `data.columns`):
- `messages`: [{role, content}] (OpenAI's; content may also be a list of {type: text, text} parts);
- `conversations`: ShareGPT's [{from, value}] (from: human, gpt, system, ...);
- `instruction` / `input` / `output` (Alpaca), with the optional `system` and `history`
  ([[question, answer], ...], earlier turns, as LLaMA-Factory writes them).
Roles come out as system, user or assistant. A conversation the model cannot learn from (no
assistant turn with text) or one that cannot be read is a DataError naming its file and line.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from danlu.data.paths import display_path
from danlu.errors import DataError

ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant", "model": "assistant", "chatgpt": "assistant"}
SHAPES = ("messages", "conversations", "instruction")
_LISTED = 5


class BadRecord(ValueError):
    """Why one record is not a conversation (collected, then reported together with the lines)."""


def where(source, row) -> str:
    """"train.jsonl line 12" (a line of a jsonl/csv file) or "data.json record 12" (an item of a JSON array)."""
    name = display_path(source) if source else "data"
    unit = "record" if str(source).lower().endswith(".json") else "line"
    return f"{name} {unit} {int(row)}"


def column_for(frame: pd.DataFrame, data, name: str) -> str | None:
    """The frame's column for `name` (data.columns may map it, e.g. {messages: dialog})."""
    names = data.role_columns(name) if data is not None else [name]
    return next((c for c in names if c in frame.columns), None)


def conversations_of(frame: pd.DataFrame, data=None) -> pd.DataFrame:
    """The frame as the chat task reads it: `messages` (the conversation), `text` (its turns' text,
    for the quality gate and for pretraining), `_row`, `_source`. Raises one DataError for every
    record that is not a conversation to learn from."""
    columns = {name: column_for(frame, data, name) for name in (*SHAPES, "input", "output", "system", "history")}
    turns_given = columns["messages"] or columns["conversations"]
    if not (turns_given or (columns["instruction"] and columns["output"])):
        listed = ", ".join(str(c) for c in frame.columns if not str(c).startswith("_"))
        raise DataError(f"{_name(frame)}: no conversations: a record needs `messages` (role/content), "
                        f"`conversations` (ShareGPT from/value) or `instruction` + `output` (Alpaca); columns are: "
                        f"{listed}; map yours with data.columns, e.g. {{messages: dialog}}")
    rows = frame["_row"].tolist() if "_row" in frame else list(range(1, len(frame) + 1))
    sources = frame["_source"].tolist() if "_source" in frame else [""] * len(frame)
    out, bad = [], []
    for record, row, source in zip(frame.to_dict("records"), rows, sources):
        try:
            out.append(learnable(conversation(record, columns)))
        except BadRecord as why:
            bad.append(f"{where(source, row)} ({why})")
    if bad:
        more = f" and {len(bad) - _LISTED} more" if len(bad) > _LISTED else ""
        raise DataError(f"{len(bad):,} record{'s' * (len(bad) != 1)} {'are' if len(bad) != 1 else 'is'} not a "
                        f"conversation to learn from: {'; '.join(bad[:_LISTED])}{more}")
    result = pd.DataFrame({"messages": out, "text": [plain_text(m) for m in out]})
    result["_row"] = np.asarray(rows, dtype=np.int64)
    result["_source"] = [str(s) for s in sources]
    return result


def conversation(record: dict, columns: dict) -> list[dict]:
    """One record's turns, in whichever shape it is written."""
    for shape in ("messages", "conversations"):
        column = columns[shape]
        if column and _present(record.get(column)):
            return turns(record[column], shape)
    column = columns["instruction"]
    if column and _present(record.get(column)):
        return alpaca(record, columns)
    raise BadRecord("no messages, conversations or instruction in it")


def turns(value, shape: str = "messages") -> list[dict]:
    """[{role, content}] from OpenAI-style messages or ShareGPT turns (also given as a JSON string)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRecord(f"{shape} is text, not a list of turns") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise BadRecord(f"{shape} is a {type(value).__name__}, not a list of turns")
    return [_turn(item, i) for i, item in enumerate(value)]


def _turn(item, i: int) -> dict:
    if not isinstance(item, dict):
        raise BadRecord(f"turn {i + 1} is a {type(item).__name__}, not an object")
    said = item.get("role", item.get("from"))
    if said is None:
        raise BadRecord(f"turn {i + 1} has no role (or ShareGPT `from`)")
    role = ROLES.get(str(said).strip().lower())
    if role is None:
        raise BadRecord(f"turn {i + 1} has the role {str(said)[:30]!r}; roles are system, user (human) and "
                        "assistant (gpt)")
    return {"role": role, "content": _content(item.get("content", item.get("value")), i)}


def _content(value, i: int) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(p, dict) and isinstance(p.get("text", ""), str)
                                                for p in value):
        return "".join(p.get("text", "") for p in value)
    raise BadRecord(f"turn {i + 1}'s content is a {type(value).__name__}, not text")


def alpaca(record: dict, columns: dict) -> list[dict]:
    """instruction (+ input) is the user's turn, output the assistant's; system and history before them."""
    def text(name: str) -> str:
        column = columns[name]
        value = record.get(column) if column else None
        if not _present(value):
            return ""
        if not isinstance(value, str):
            raise BadRecord(f"{column} is a {type(value).__name__}, not text")
        return value

    out = [{"role": "system", "content": text("system")}] if text("system").strip() else []
    column = columns["history"]
    for pair in (record.get(column) if column and _present(record.get(column)) else []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise BadRecord(f"{column} holds something other than [question, answer] pairs")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    question = "\n\n".join(part for part in (text("instruction").strip(), text("input").strip()) if part)
    return out + [{"role": "user", "content": question}, {"role": "assistant", "content": text("output")}]


def learnable(messages: list[dict]) -> list[dict]:
    """The conversation, if some assistant turn has text to learn from."""
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        roles = ", ".join(dict.fromkeys(m["role"] for m in messages)) or "none"
        raise BadRecord(f"no assistant turn with text (roles: {roles}); every conversation needs a reply to learn")
    return messages


def plain_text(messages: list[dict]) -> str:
    """The turns' text, one turn a line: what the quality gate compares and pretraining reads."""
    return "\n".join(m["content"] for m in messages if m["content"])


def prompt_and_reply(messages: list[dict]) -> tuple[list[dict], str | None]:
    """The turns before the conversation's last assistant turn, and that turn's text (None when the
    conversation does not end in one: then every turn is the prompt)."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[:-1], messages[-1]["content"]
    return messages, None


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and np.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _name(frame: pd.DataFrame) -> str:
    return display_path(str(frame["_source"].iloc[0])) if "_source" in frame and len(frame) else "data"

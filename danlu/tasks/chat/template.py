"""The chat template: which one, its end-of-turn token, and where the replies lie in a rendered conversation.

The template is Jinja, stored in the tokenizer (`chat_template`) as Hugging Face chat models keep it,
and rendered by the tokenizer (in transformers' sandbox). The reply tokens are found from the text
itself: a reply starts where the conversation before it, rendered with the generation prompt, ends,
and it ends with the template's end-of-turn token. That holds for any template that only appends
(ChatML, Llama 3, Gemma, Mistral); one that rewrites earlier turns as a conversation goes on is refused.
"""

from __future__ import annotations

from danlu.errors import DanluError

# ChatML, as Qwen and SmolLM write it.
DEFAULT = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
           "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
           "{% endif %}")
DEFAULT_TOKENS = ("<|im_start|>", "<|im_end|>")
DEFAULT_END = "<|im_end|>"
_PROBE = [{"role": "user", "content": "Ping?"}, {"role": "assistant", "content": "Pong."}]


class TemplateError(DanluError):
    """A chat template that cannot mark the replies of a conversation."""


def chosen(setting: str, tokenizer) -> tuple[str, str]:
    """(the Jinja template, where it comes from) for the recipe's `chat.template`."""
    own = getattr(tokenizer, "chat_template", None)
    if setting == "auto" and isinstance(own, str) and own:
        return own, "the model's own"
    if setting in ("auto", "default"):
        return DEFAULT, "default (ChatML)"
    return setting, "the recipe's"


def tokens_to_add(setting: str, end_of_turn: str | None) -> list[str]:
    """The special tokens a tokenizer trained here must hold for the template."""
    extra = [end_of_turn] if end_of_turn else []
    own = list(DEFAULT_TOKENS) if setting in ("auto", "default") else []
    return list(dict.fromkeys(own + extra))


def render(tokenizer, template: str, messages: list[dict], generation: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=generation)


def end_token(tokenizer, template: str, given: str | None, where: str) -> str:
    """The token that closes an assistant turn, checked against the template and the tokenizer."""
    try:
        rendered = render(tokenizer, template, _PROBE)
    except Exception as exc:  # a template may raise anything (jinja errors, raise_exception)
        raise TemplateError(f"chat.template cannot render a user turn and a reply: {exc}") from None
    after = rendered[rendered.rfind("Pong.") + len("Pong."):].lstrip()
    token = given or (DEFAULT_END if template == DEFAULT else _special_at_start(tokenizer, after))
    if token is None:
        raise TemplateError(f"chat.template writes no special token right after a reply (it writes {after[:40]!r}), "
                            "so generation could not tell where a turn ends; name it with chat.end_of_turn")
    if not after.startswith(token):
        raise TemplateError(f"chat.template does not close an assistant turn with the end-of-turn token {token!r}: "
                            f"after a reply it writes {after[:40]!r}; fix the template or chat.end_of_turn")
    check_token(tokenizer, token, where)
    return token


def check_token(tokenizer, token: str, where: str) -> None:
    """The end-of-turn token must be one token of the tokenizer: the model writes it to end a reply."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) == 1 and ids[0] != tokenizer.unk_token_id:
        return
    raise TemplateError(
        f"the chat template ends a turn with {token!r}, which is not a token of the tokenizer of {where} "
        f"(it reads as {len(ids)} tokens), so no reply could end with it; pretrain in this recipe (pretrain: "
        "{objective: clm} trains a tokenizer holding the template's tokens), choose a template whose end token the "
        f"tokenizer has, or set chat.end_of_turn to one of its special tokens ({_specials(tokenizer)})")


def reply_spans(tokenizer, template: str, messages: list[dict], end: str) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and, for each assistant turn, the characters of its reply up to and
    with its end-of-turn token."""
    full = render(tokenizer, template, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, template, messages[:i], generation=True)
        upto = render(tokenizer, template, messages[:i + 1])
        if not (full.startswith(before) and full.startswith(upto)):
            raise TemplateError("chat.template renders the start of a conversation differently once it goes on "
                                "(it rewrites earlier turns), so the reply tokens cannot be told apart; "
                                "use chat.template: default or a template that only appends turns")
        stop = full.rfind(end, len(before), len(upto))
        if stop < 0:
            raise TemplateError(f"chat.template does not close assistant turn {i + 1} with {end!r}")
        spans.append((len(before), stop + len(end)))
    return full, spans


def _special_at_start(tokenizer, text: str) -> str | None:
    specials = sorted(_special_strings(tokenizer), key=len, reverse=True)
    return next((s for s in specials if text.startswith(s)), None)


def _special_strings(tokenizer) -> list[str]:
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return list(dict.fromkeys([str(t) for t in tokenizer.all_special_tokens] +
                              [t.content for t in decoder.values() if getattr(t, "special", False)]))


def _specials(tokenizer) -> str:
    found = _special_strings(tokenizer)
    return ", ".join(repr(s) for s in found[:8]) + (" ..." if len(found) > 8 else "") if found else "it has none"

"""OpenAI-compatible text generation: POST /v1/completions, POST /v1/chat/completions, for runs whose task
writes text (the registry's `generate` capability: causal-lm).

So that OpenAI's clients (the `openai` package, LangChain, curl scripts) can use a trained language
model. Sampling is the task's own (`Task.generate`), as `danlu generate` does it: temperature (0: greedy), top_p,
max_tokens (16 for completions, as OpenAI; 256 for chat), stop (up to 4 strings), seed (the same
seed gives the same text, streamed or not). `n` must be 1. Other OpenAI fields (logprobs, echo,
tools, ...) are not supported: a body naming them is a 422, as OpenAI answers unknown fields 400.
`model` may be any name: the served model answers and names itself.

Chat messages become one prompt: the tokenizer's chat_template when it has one (a pretrained chat
model's); otherwise a line "role: content" per message and "assistant:" for the model to continue:

    system: Answer in verse.
    user: Who is there?
    assistant:

A trained-from-scratch model knows no end of turn and may write the next "user:" line itself:
send `"stop": ["\\nuser:"]` to end there.

`"stream": true` answers as server-sent events: a `data: {chunk}` per piece of text, a last chunk
with the finish_reason (and one with `usage` if stream_options.include_usage), then `data: [DONE]`.

Only a run whose task writes text, served by its PyTorch model, gets these routes; for any other run
(or a compressed variant, which has no sampler) they answer 404 saying why.
"""
# No `from __future__ import annotations`: FastAPI reads the body types from the signatures.

import json
import logging
import time
import uuid
from typing import Annotated, Literal, Optional, Union

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from danlu.serve.schemas import UnicodeText


log = logging.getLogger("danlu.serve")
PATHS = ("/v1/completions", "/v1/chat/completions")
# Sampling runs one request at a time: a bound keeps one request from holding the model for minutes.
MAX_TOKENS = 4096
MAX_PROMPTS = 32
CHAT_MAX_TOKENS = 256  # OpenAI's chat default is "until the model stops", which an untrained-for-chat LM may never do


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = ""
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = 1
    stop: Union[str, Annotated[list[str], Field(max_length=4)], None] = None
    seed: Optional[int] = Field(None, ge=-2**63, le=2**64 - 1)  # what torch.manual_seed takes
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None  # OpenAI clients may send it; nothing here uses it

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported: send one request per choice (with different seeds)")
        return n

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Sampling):
    prompt: Union[UnicodeText, Annotated[list[UnicodeText], Field(min_length=1, max_length=MAX_PROMPTS)]]
    max_tokens: int = Field(16, ge=1, le=MAX_TOKENS)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: UnicodeText


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[UnicodeText, list[TextPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=MAX_TOKENS)  # the newer name of max_tokens


def register(app: FastAPI, ctx) -> None:
    runner, info = ctx.runner, ctx.runner.info
    auth = [Depends(ctx.require_key)]
    task, model = runner.task, runner.model
    writes_text = task.spec.capabilities.generate
    if not writes_text or model is None:
        if writes_text:
            served = f" as variant {info.variant}" if info.variant else ""
            why = (f"{info.name} is served{served} without a PyTorch model to sample text from; "
                   "serve the run without --variant to use this endpoint")
            log.warning("%s: /v1/completions and /v1/chat/completions are off", why)
        else:
            why = (f"{info.name} is a {info.task} model, which does not write text: this endpoint serves "
                   "language models; use POST /v1/predict")

        # Registered anyway, so that an OpenAI client pointed at the wrong model says why, not "Not Found".
        async def not_here():
            raise HTTPException(404, why)

        for path in PATHS:
            app.add_api_route(path, not_here, methods=["POST"], dependencies=auth, include_in_schema=False)
        return

    def streams(body: _Sampling, prompts: list[str], max_tokens: int) -> list:
        # top_k off: OpenAI's sampling has temperature and top_p only.
        return [task.generate(model, prompt, max_new_tokens=max_tokens, stop=body.stops(),
                              temperature=body.temperature, top_k=None, top_p=body.top_p, seed=body.seed)
                for prompt in prompts]

    async def answer(body: _Sampling, prompts: list[str], max_tokens: int, chat: bool):
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": info.name}
        runs = streams(body, prompts, max_tokens)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_events(head, runs, chat, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            # Sampling blocks: in a worker thread, the event loop keeps answering other requests.
            texts = await run_in_threadpool(lambda: ["".join(run) for run in runs])
        except Exception:
            log.exception("generation failed")
            raise HTTPException(500, "generation failed; see the server log") from None
        choices = [_choice(chat, i, text, run.finish_reason) for i, (text, run) in enumerate(zip(texts, runs))]
        return JSONResponse({**head, "choices": choices, "usage": _usage(runs)})

    @app.post("/v1/completions", dependencies=auth, summary=f"OpenAI completions with {info.name}")
    async def completions(body: CompletionRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        return await answer(body, prompts, body.max_tokens, chat=False)

    @app.post("/v1/chat/completions", dependencies=auth, summary=f"OpenAI chat completions with {info.name}")
    async def chat_completions(body: ChatRequest):
        try:
            prompt = task.chat_prompt([{"role": m.role, "content": m.text()} for m in body.messages])
        except Exception as exc:  # a chat template that refuses these messages (roles out of order, ...)
            raise HTTPException(422, f"the model's chat template cannot render these messages: {exc}") from None
        max_tokens = body.max_completion_tokens or body.max_tokens or CHAT_MAX_TOKENS
        return await answer(body, [prompt], max_tokens, chat=True)


def _choice(chat: bool, index: int, text: str, finish: str) -> dict:
    if chat:
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": finish}
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


def _delta(chat: bool, index: int, text: str, finish: Optional[str] = None, role: bool = False) -> dict:
    if not chat:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
    delta = {"role": "assistant", "content": text} if role else {"content": text} if text else {}
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _usage(runs: list) -> dict:
    prompt, completion = sum(r.prompt_tokens for r in runs), sum(len(r.ids) for r in runs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _events(head: dict, runs: list, chat: bool, usage: bool):
    head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}

    def event(choices: list, **extra) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    try:
        for i, run in enumerate(runs):
            if chat:
                yield event([_delta(chat, i, "", role=True)])
            # Each next() blocks until the sampler thread has a piece: in the threadpool, off the event loop.
            async for piece in iterate_in_threadpool(iter(run)):
                yield event([_delta(chat, i, piece)])
            yield event([_delta(chat, i, "", run.finish_reason)])
        if usage:
            yield event([], usage=_usage(runs))
        yield "data: [DONE]\n\n"
    except Exception:
        # The 200 and the first chunks are sent already: an error event is all a client can still get.
        log.exception("generation failed")
        error = {"message": "generation failed; see the server log", "type": "server_error"}
        yield f"data: {json.dumps({'error': error})}\n\n"
    finally:
        for run in runs:  # a client gone mid-stream: stop sampling for it
            run.cancel()

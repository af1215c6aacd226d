"""OpenAI-compatible /v1/completions and /v1/chat/completions on a tiny trained causal LM: the real
`openai` client against a live server, the server-sent events themselves, auth, validation, and
the routes' answer for a model that cannot generate."""

import json
import threading

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from danlu.serve.app import ServeSettings, create_app
from danlu.serve.openai_routes import Message
from danlu.serve.runner import load_runner
from servekit import Gate, StubRunner, client_for, live_server, run, wait_for

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = [{"role": "system", "content": "write about animals"}, {"role": "user", "content": "the dog"}]


@pytest.fixture(scope="module")
def runner(lm_run):
    return load_runner(lm_run)


@pytest.fixture(scope="module")
def server(runner):
    """A live uvicorn server in a thread, API key required; yields its base URL."""
    with live_server(create_app(runner, ServeSettings(api_key=KEY))) as url:
        yield url


def openai_client(url, key=KEY):
    # No retries: a failure shows at once. No proxy from the environment: the server is local.
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30,
                  http_client=httpx.Client(trust_env=False))


def post_all(app, *requests, headers=None):
    """(status, body) of each (path, json) request against `app` in-process."""
    async def go():
        async with client_for(app) as client:
            return [await client.post(path, json=body, headers=headers) for path, body in requests]

    return run(go())


def events(text):
    """The `data:` payloads of a server-sent event stream, checking its framing on the way."""
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), text[:300]
    return [b[len("data: "):] for b in blocks]


# -- the real OpenAI client ---------------------------------------------------------------

def test_openai_client_chat_streamed_and_not_give_the_same_text(server):
    client = openai_client(server)
    options = dict(model="anything", messages=CHAT, max_tokens=40, temperature=0.8, seed=7)
    reply = client.chat.completions.create(**options)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == "tiny-lm"  # the served model names itself, whatever was asked for
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    # the prompt is "system: ...\nuser: ...\nassistant:" in a character-level model: one token a character
    assert usage.prompt_tokens == len("system: write about animals\nuser: the dog\nassistant:")
    assert 0 < usage.completion_tokens <= 40 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # streamed in pieces, not as one
    assert "".join(pieces) == choice.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == choice.finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == usage.total_tokens


def test_openai_client_completions_and_models(server):
    client = openai_client(server)
    reply = client.completions.create(model="tiny-lm", prompt="the cat", max_tokens=12, temperature=0, seed=0)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-") and reply.model == "tiny-lm"
    choice = reply.choices[0]
    assert choice.index == 0 and choice.logprobs is None and choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == len("the cat")
    assert reply.usage.completion_tokens == 12 or choice.finish_reason == "stop"
    streamed = client.completions.create(model="tiny-lm", prompt="the cat", max_tokens=12, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == choice.text  # greedy: the same text
    assert [m.id for m in client.models.list().data] == ["tiny-lm"]


def test_openai_client_without_the_key_gets_401(server):
    with pytest.raises(AuthenticationError):
        openai_client(server, key="wrong").chat.completions.create(model="m", messages=CHAT, max_tokens=2)
    for path in ("/v1/completions", "/v1/chat/completions"):
        reply = httpx.post(f"{server}{path}", json={"prompt": "a", "messages": CHAT}, trust_env=False)
        assert reply.status_code == 401 and "API key" in reply.json()["detail"]


def stream_lines(server, path: str, body: dict, out: list) -> threading.Thread:
    """Reads the stream of `path` into `out`, line by line, in a thread of its own."""
    def read():
        with httpx.Client(base_url=server, headers=AUTH, trust_env=False, timeout=60) as client:
            with client.stream("POST", path, json=body) as stream:
                out.extend(line for line in stream.iter_lines() if line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_a_stream_leaves_the_server_free_for_other_requests(server, runner):
    # Every forward pass waits at the gate: the stream is certainly mid-sampling while /healthz is asked.
    gate = Gate()
    hook = runner.model.register_forward_pre_hook(gate)
    lines: list = []
    try:
        body = {"prompt": "the", "max_tokens": 60, "temperature": 0, "stream": True}
        reader = stream_lines(server, "/v1/completions", body, lines)
        wait_for(lambda: gate.waiting == 1, "the stream's sampling reaching the model")
        # Sampling on the event loop would hold /healthz until the gate opens, and this would time out.
        health = httpx.get(f"{server}/healthz", trust_env=False, timeout=10)
        assert gate.waiting == 1 and gate.passed == 0 and reader.is_alive()  # still held mid-stream
        gate.open()
        reader.join(timeout=60)
    finally:
        gate.open()
        hook.remove()
    assert health.json() == {"status": "ok"}
    assert lines[0].startswith("data: ") and lines[-1] == "data: [DONE]"


def test_a_client_that_leaves_mid_stream_stops_the_sampling(server, runner, monkeypatch):
    runs = []
    generate = runner.task.generate
    monkeypatch.setattr(runner.task, "generate", lambda *a, **k: runs.append(generate(*a, **k)) or runs[-1])
    # Forward passes go one at a time, as the test allows: the server notices a client has gone when it
    # next has a piece to send, so tokens are let through until it has, and then no more.
    gate = Gate()
    hook = runner.model.register_forward_pre_hook(gate)
    try:
        with httpx.Client(base_url=server, headers=AUTH, trust_env=False, timeout=30) as client:
            body = {"messages": CHAT, "max_tokens": 2000, "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=body) as stream:
                assert next(stream.iter_lines()).startswith("data: ")  # the role chunk, before any token
        for _ in range(500):
            if runs[0].cancelled:
                break
            passed = gate.passed
            gate.allow()
            wait_for(lambda: (gate.passed > passed and gate.waiting == 1) or runs[0].cancelled, "the next token")
        assert runs[0].cancelled, "the server never noticed that the client had gone"
        gate.open()
        with httpx.Client(base_url=server, headers=AUTH, trust_env=False, timeout=60) as client:
            # Sampling is one request at a time: this waits for the abandoned stream unless it was stopped.
            reply = client.post("/v1/completions", json={"prompt": "the", "max_tokens": 3})
    finally:
        gate.open()
        hook.remove()
    assert reply.status_code == 200
    assert len(runs[0].ids) < 2000  # stopped at the next token, not run on to max_tokens


# -- the wire format, validation and limits, in-process -----------------------------------

def test_stream_is_server_sent_events_ending_in_done(runner):
    app = create_app(runner, ServeSettings())
    completion, chat = post_all(app, ("/v1/completions", {"prompt": ["the", "a dog"], "max_tokens": 8, "seed": 1,
                                                          "stream": True}),
                                ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 8, "stream": True}))
    for reply in (completion, chat):
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        payloads = events(reply.text)
        assert payloads[-1] == "[DONE]"
        chunks = [json.loads(p) for p in payloads[:-1]]
        assert len({c["id"] for c in chunks}) == 1
    chunks = [json.loads(p) for p in events(completion.text)[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    for index in (0, 1):  # one stream of chunks per prompt, each closed by its finish_reason
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[-1]["finish_reason"] in ("stop", "length") and not any(c["finish_reason"] for c in mine[:-1])
    chunks = [json.loads(p) for p in events(chat.text)[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"]


def test_stop_strings_end_the_text_streamed_or_not(runner):
    app = create_app(runner, ServeSettings())
    base = {"prompt": "the cat", "max_tokens": 40, "seed": 3}
    (free,) = post_all(app, ("/v1/completions", base))
    full = free.json()["choices"][0]["text"]
    assert len(full) == 40, full  # no end-of-text (see lm_run): the stop string below is in it
    stop = full[10:13]  # three characters the model writes anyway, found a character at a time
    cut = full[:full.find(stop)]
    plain, streamed = post_all(app, ("/v1/completions", {**base, "stop": [stop, "never"]}),
                               ("/v1/completions", {**base, "stop": stop, "stream": True}))
    choice = plain.json()["choices"][0]
    assert choice["text"] == cut and choice["finish_reason"] == "stop"
    # sampling ended there too, a token after the stop string was seen
    assert plain.json()["usage"]["completion_tokens"] < free.json()["usage"]["completion_tokens"]
    chunks = [json.loads(p) for p in events(streamed.text)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == cut
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_list_of_prompts_answers_one_choice_each(runner):
    (reply,) = post_all(create_app(runner, ServeSettings()),
                        ("/v1/completions", {"prompt": ["the", "the", "a"], "max_tokens": 5, "temperature": 0}))
    body = reply.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["choices"][0]["text"] == body["choices"][1]["text"]
    assert body["usage"]["prompt_tokens"] == 7 and body["usage"]["completion_tokens"] <= 15


@pytest.mark.parametrize("path, body, loc", [
    ("/v1/chat/completions", {"model": "m"}, ["body", "messages"]),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": "hot"}, ["body", "temperature"]),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, ["body", "messages", 0, "role"]),
    ("/v1/chat/completions", {"messages": CHAT, "n": 2}, ["body", "n"]),
    ("/v1/chat/completions", {"messages": CHAT, "logprobs": True}, ["body", "logprobs"]),
    ("/v1/completions", {"prompt": "a", "max_tokens": 0}, ["body", "max_tokens"]),
    ("/v1/completions", {"prompt": "a", "top_p": 1.5}, ["body", "top_p"]),
    ("/v1/completions", {}, ["body", "prompt"]),
    ("/v1/completions", {"prompt": "a", "seed": 2**64}, ["body", "seed"]),
])
def test_a_bad_body_is_422_naming_the_field(runner, path, body, loc):
    (reply,) = post_all(create_app(runner, ServeSettings()), (path, body))
    assert reply.status_code == 422
    assert loc in [error["loc"] for error in reply.json()["detail"]], reply.json()
    if loc == ["body", "n"]:
        assert "only n=1" in reply.text


def test_body_limit_applies_to_the_new_routes(runner):
    app = create_app(runner, ServeSettings(max_body_kb=1))
    (reply,) = post_all(app, ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 2000}]}))
    assert reply.status_code == 413


def test_a_classifier_answers_404_saying_why_and_predict_is_unchanged():
    app = create_app(StubRunner(), ServeSettings(api_key=KEY))
    completion, chat, predict = post_all(app, ("/v1/completions", {"prompt": "a"}),
                                         ("/v1/chat/completions", {"messages": CHAT}),
                                         ("/v1/predict", {"inputs": "a"}), headers=AUTH)
    for reply in (completion, chat):
        assert reply.status_code == 404
        assert "text-classification" in reply.json()["detail"] and "/v1/predict" in reply.json()["detail"]
    assert predict.status_code == 200 and predict.json()["predictions"][0]["label"] == "pos"
    (anonymous,) = post_all(app, ("/v1/completions", {"prompt": "a"}))
    assert anonymous.status_code == 401  # no key, no word about what is served
    assert "/v1/completions" not in app.openapi()["paths"]


def test_a_causal_lm_without_a_pytorch_model_answers_404_saying_why():
    (reply,) = post_all(create_app(StubRunner(task="causal-lm"), ServeSettings()),
                        ("/v1/completions", {"prompt": "a"}))
    assert reply.status_code == 404 and "--variant" in reply.json()["detail"]


def test_the_routes_are_in_the_openapi_schema_of_a_causal_lm(runner):
    paths = create_app(runner, ServeSettings()).openapi()["paths"]
    assert {"/v1/completions", "/v1/chat/completions", "/v1/predict"} <= set(paths)


def test_chat_prompt_uses_the_tokenizers_template_else_role_lines(runner):
    messages = [Message(role="system", content="be brief"),
                Message(role="user", content=[{"type": "text", "text": "the "}, {"type": "text", "text": "dog"}])]
    tokenizer = runner.task.tokenizer
    plain = [{"role": m.role, "content": m.text()} for m in messages]
    assert tokenizer.chat_template is None
    assert runner.task.chat_prompt(plain) == "system: be brief\nuser: the dog\nassistant:"
    tokenizer.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    try:
        assert runner.task.chat_prompt(plain) == "<system>be brief<user>the dog<assistant>"
    finally:
        tokenizer.chat_template = None


@pytest.mark.parametrize("path, raw, loc", [
    ("/v1/completions", '{"prompt": NaN}', ["body", "prompt"]),
    ("/v1/completions", '{"prompt": "a", "temperature": NaN}', ["body", "temperature"]),
    ("/v1/completions", '{"prompt": "a", "top_p": Infinity}', ["body", "top_p"]),
    ("/v1/completions", '{"prompt": "a \\ud800"}', ["body", "prompt"]),
    ("/v1/completions", '{"prompt": "a", "seed": 1' + "0" * 399 + "}", ["body", "seed"]),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\udc00"}]}',
     ["body", "messages", 0, "content"]),
])
def test_values_strict_json_lacks_are_422s_naming_the_field(runner, path, raw, loc):
    async def go():
        async with client_for(create_app(runner, ServeSettings())) as client:
            return await client.post(path, content=raw.encode(), headers={"content-type": "application/json"})

    reply = run(go())
    assert reply.status_code == 422, reply.text
    errors = json.loads(reply.text, parse_constant=lambda c: pytest.fail(f"{c} in the 422"))["detail"]
    assert any(e["loc"][:len(loc)] == loc for e in errors), errors

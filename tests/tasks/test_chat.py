"""chat: the data shapes, the template and its end token, the reply-only loss mask, packing without
leakage, hub architectures (tiny random Qwen2 / Llama saved locally with their own templates), and a
tiny chat run end to end: pretrained here, fine-tuned, reported, predicted and served to the `openai` client."""

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from openai import OpenAI
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from danlu import registry
from danlu.errors import DanluError, DataError, RecipeError
from danlu.inference import TorchForward
from danlu.pipeline import check_data, train
from danlu.predict import predict_input
from danlu.recipe import load_recipe, recipe_from_dict
from danlu.tasks import load_task, make_task
from danlu.tasks.chat import encoding, template as templates
from danlu.tasks.chat.conversations import conversations_of
from danlu.tasks.chat.sample import sample
from danlu.train.tokenizer import train_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from servekit import live_server  # noqa: E402  (the serve tests' live uvicorn, started and awaited)

REPO = Path(__file__).resolve().parents[2]
CONVERSATION = [{"role": "system", "content": "answer with one word"},
                {"role": "user", "content": "colour of sky?"}, {"role": "assistant", "content": "blue."},
                {"role": "user", "content": "and snow?"}, {"role": "assistant", "content": "white."}]
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def char_tokenizer(*specials):
    tok = train_tokenizer([json.dumps(CONVERSATION) + "\n colour of grass? green. coal black"], "char", 200, 1, False)
    if specials:
        tok.add_special_tokens({"additional_special_tokens": list(specials)})
    return tok


def chatml_tokenizer():
    tok = char_tokenizer(*templates.DEFAULT_TOKENS)
    tok.chat_template = templates.DEFAULT
    return tok


def runs_of_labels(labels):
    """(start, stop) of each stretch of labelled tokens."""
    marked = np.concatenate([[False], labels != encoding.IGNORE, [False]])
    edges = np.flatnonzero(np.diff(marked.astype(int)))
    return list(zip(edges[::2], edges[1::2]))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def chat_recipe(tmp_path, **sections):
    # The colours repeat: the gate's duplicates and leakage rules warn, as they should.
    raw = {"name": "tiny-chat", "task": "chat", "data": {"source": "chats.jsonl", "split": {"validation": 6, "test": 6}},
           "quality": {"on_fail": "warn"}, **sample().recipe}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe_from_dict(raw, recipe_path=tmp_path / "recipe.yaml")


def sample_records():
    return [{"messages": m} for m in sample(60, 0).frame["messages"]]


# -- data -------------------------------------------------------------------------------

def test_the_three_data_shapes_read_the_same_conversation(tmp_path):
    turns = CONVERSATION[1:]
    shapes = {
        "messages.jsonl": {"messages": CONVERSATION},
        "sharegpt.jsonl": {"conversations": [{"from": "system", "value": CONVERSATION[0]["content"]}] +
                           [{"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]} for t in turns]},
        "alpaca.json": {"system": CONVERSATION[0]["content"], "history": [["colour of sky?", "blue."]],
                        "instruction": "and snow?", "input": "", "output": "white."},
    }
    read = []
    for name, record in shapes.items():
        path = tmp_path / name
        if name.endswith(".json"):
            path.write_text(json.dumps([record]))
        else:
            write_jsonl(path, [record])
        recipe = chat_recipe(tmp_path, data={"source": name, "split": {"validation": 0, "test": 0}})
        splits, report, _ = check_data(recipe)
        read.append(splits.frames["train"]["messages"].iloc[0])
        assert splits.frames["train"]["text"].iloc[0] == "\n".join(t["content"] for t in CONVERSATION)
    assert read == [CONVERSATION] * 3
    # Alpaca's input joins its instruction; content given as parts is joined too
    frame = pd.DataFrame([{"instruction": "translate", "input": "hello", "output": "bonjour"},
                          {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi "},
                                                                     {"type": "text", "text": "there"}]},
                                        {"role": "assistant", "content": "hello"}]}])
    got = conversations_of(frame)["messages"].tolist()
    assert got[0][0] == {"role": "user", "content": "translate\n\nhello"}
    assert got[1][0] == {"role": "user", "content": "hi there"}


def test_a_conversation_without_an_assistant_turn_is_one_error_naming_its_line(tmp_path):
    records = sample_records()[:20]
    records[6] = {"messages": [{"role": "user", "content": "hello?"}]}
    records[11] = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}
    write_jsonl(tmp_path / "chats.jsonl", records)
    with pytest.raises(DataError) as caught:
        check_data(chat_recipe(tmp_path))
    message = str(caught.value)
    assert "2 records are not a conversation" in message and "chats.jsonl line 7" in message
    assert "chats.jsonl line 12" in message and "no assistant turn with text" in message
    write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "robot", "content": "beep"}]}])
    with pytest.raises(DataError, match="line 1 .*role 'robot'"):
        check_data(chat_recipe(tmp_path))
    write_jsonl(tmp_path / "chats.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(DataError, match="no conversations.*columns are: question, answer"):
        check_data(chat_recipe(tmp_path))


def test_held_out_conversations_are_carved_and_checked_by_the_gate(tmp_path):
    records = sample_records()
    write_jsonl(tmp_path / "chats.jsonl", records)
    splits, report, _ = check_data(chat_recipe(tmp_path))
    assert splits.sizes() == {"train": 48, "validation": 6, "test": 6}
    assert {r.name for r in report.rules} >= {"duplicates", "leakage"}  # the generic gate, on the turns' text
    assert any("with several replies" in note for note in report.notes)


# -- the template, its end token, the loss mask ---------------------------------------------

def test_the_loss_mask_covers_the_reply_tokens_only_in_a_multi_turn_conversation():
    tok = chatml_tokenizer()
    encoded = encoding.encode_conversation(tok, templates.DEFAULT, "<|im_end|>", CONVERSATION, block=500)
    labelled = [tok.decode(encoded.ids[a:b]) for a, b in runs_of_labels(encoded.labels)]
    assert labelled == ["blue.<|im_end|>", "white.<|im_end|>"]  # each reply and its end token, nothing else
    text = tok.decode(encoded.ids)
    assert text == templates.render(tok, templates.DEFAULT, CONVERSATION)  # tokenized whole, as the model reads it
    everything = encoding.encode_conversation(tok, templates.DEFAULT, "<|im_end|>", CONVERSATION, 500, loss="all")
    assert (everything.labels == everything.ids).all()
    cut = encoding.encode_conversation(tok, templates.DEFAULT, "<|im_end|>", CONVERSATION, block=30)
    assert cut.truncated and len(cut.ids) == 30 and not cut.learns  # the first reply starts after token 30


def test_the_end_token_closes_every_assistant_turn(tmp_path):
    write_jsonl(tmp_path / "chats.jsonl", sample_records())
    recipe = chat_recipe(tmp_path)
    splits, _, _ = check_data(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    end = task.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert task.tokenizer.eos_token_id == end  # sampling stops there
    for example, turns in zip(task.examples(splits.frames["train"]), splits.frames["train"]["messages"]):
        runs = runs_of_labels(example.labels)
        assert len(runs) == sum(t["role"] == "assistant" for t in turns)
        assert all(example.ids[stop - 1] == end for _, stop in runs)
        assert (example.ids == end).sum() == len(turns)  # every turn, user or assistant, is closed by it


def test_a_template_whose_end_token_the_tokenizer_lacks_is_refused_with_one_message(tmp_path):
    plain = char_tokenizer()  # a causal-lm tokenizer: no <|im_end|>
    with pytest.raises(templates.TemplateError) as caught:
        templates.end_token(plain, templates.DEFAULT, None, "runs/lm")
    message = str(caught.value)
    assert "'<|im_end|>', which is not a token of the tokenizer of runs/lm" in message and "pretrain" in message
    # the same check where training starts: a model without the template's tokens
    model_dir = tmp_path / "lm"
    plain.save_pretrained(model_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(plain), n_positions=128, n_embd=16, n_layer=1, n_head=2)
                    ).save_pretrained(model_dir)
    write_jsonl(tmp_path / "chats.jsonl", sample_records())
    recipe = chat_recipe(tmp_path, model={"from": str(model_dir)})
    with pytest.raises(DanluError, match="not a token of the tokenizer"):
        train(recipe, tmp_path / "run")
    # a template that does not close a reply with the end token it is given
    with pytest.raises(templates.TemplateError, match="does not close an assistant turn with"):
        templates.end_token(chatml_tokenizer(), templates.DEFAULT, "<|im_start|>", "here")


def test_templates_that_cannot_mark_replies_are_refused():
    tok = chatml_tokenizer()
    rewriting = ("{% for m in messages %}{% if loop.last or m.role != 'assistant' %}{{ '<|im_start|>' + m.role + "
                 "'\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with pytest.raises(templates.TemplateError, match="rewrites earlier turns"):
        templates.reply_spans(tok, rewriting, CONVERSATION, "<|im_end|>")
    silent = "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}"
    with pytest.raises(templates.TemplateError, match="no special token right after a reply"):
        templates.end_token(tok, silent, None, "here")


def test_the_recipe_refuses_what_cannot_work(tmp_path):
    write_jsonl(tmp_path / "chats.jsonl", sample_records())
    with pytest.raises(RecipeError, match="chat.template"):
        chat_recipe(tmp_path, chat={"template": "{% for m in messages %}"})
    with pytest.raises(RecipeError, match="chat.end_of_turn"):
        chat_recipe(tmp_path, chat={"template": "{{ messages }}"})
    with pytest.raises(RecipeError, match="measured after training"):
        chat_recipe(tmp_path, train={"early_stopping": {"metric": "eos_rate"}})
    assert chat_recipe(tmp_path, train={"early_stopping": {}}).train.early_stopping.metric == "loss"


# -- packing ------------------------------------------------------------------------------

def test_packed_conversations_never_attend_to_each_other():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()
    assert encoding.packs_safely(model)
    parts = [encoding.Encoded(np.arange(1, n + 1) % 40, np.arange(1, n + 1) % 40, False) for n in (6, 9, 4)]
    rows = encoding.packed_rows(parts, capacity=12)
    assert sorted(len(r["input_ids"]) for r in rows) == [9, 10]  # 9 alone (9 + 6 > 12), 6 + 4 together
    batch = encoding.collate(rows, pad_id=0)
    assert "attention_mask" not in batch and batch["use_cache"] is False
    with torch.no_grad():
        packed = model(**batch).logits
        row = next(i for i, r in enumerate(rows) if len(r["input_ids"]) == 10)
        for start, part in ((0, parts[0]), (6, parts[2])):
            alone = model(input_ids=torch.as_tensor(part.ids)[None]).logits[0]
            torch.testing.assert_close(packed[row, start:start + len(part.ids)], alone, atol=1e-5, rtol=1e-5)
        # the loss of the packed rows is the loss of the conversations alone, token for token
        alone = [model(input_ids=torch.as_tensor(p.ids)[None], labels=torch.as_tensor(p.labels)[None]).loss
                 for p in parts]
        weights = [len(p.ids) - 1 for p in parts]
        expected = sum(float(a) * w for a, w in zip(alone, weights)) / sum(weights)
        assert float(model(**batch).loss) == pytest.approx(expected, rel=1e-5)

    class Leaky(torch.nn.Module):  # a running mean over the row: every token sees the whole row
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(40, 8)

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids, position_ids=None, use_cache=None):
            x = self.embed(input_ids).cumsum(1)
            return type("Out", (), {"logits": x / torch.arange(1, x.shape[1] + 1)[None, :, None]})

    assert not encoding.packs_safely(Leaky())


# -- hub architectures, saved locally ---------------------------------------------------------

def hub_model(tmp_path, arch):
    """A tiny random model of a hub architecture with a byte-level tokenizer and its own chat template."""
    texts = [t["content"] for m in sample(60, 0).frame["messages"] for t in m] * 3
    tok = train_tokenizer(texts, "byte_bpe", 400, 1, False)
    if arch == "qwen2":
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tok.chat_template = QWEN_TEMPLATE
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=256, tie_word_embeddings=True))
    else:
        tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "additional_special_tokens": [
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
        tok.chat_template = LLAMA_TEMPLATE
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=256))
    folder = tmp_path / arch
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def test_a_llama_checkpoint_with_its_own_template_ends_turns_with_its_own_token(tmp_path):
    write_jsonl(tmp_path / "chats.jsonl", sample_records())
    recipe = chat_recipe(tmp_path, model={"from": str(hub_model(tmp_path, "llama")), "max_length": 128})
    splits, _, _ = check_data(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    assert task.template_source == "the model's own" and task.end_of_turn == "<|eot_id|>"
    model = task.build_model()
    assert type(model).__name__ == "LlamaForCausalLM" and task.packs
    example = task.examples(splits.frames["train"].head(1))[0]
    (start, stop), = runs_of_labels(example.labels)
    reply = splits.frames["train"]["messages"].iloc[0][-1]["content"]
    assert task.tokenizer.decode(example.ids[start:stop]) == reply + "<|eot_id|>"
    assert task.tokenizer.decode(example.ids[:1]) == "<|begin_of_text|>"  # once: the template's, no second bos
    predictions = task.predict(TorchForward(model), pd.DataFrame({"text": ["colour of sky?"]}))
    assert predictions[0]["finish_reason"] in ("stop", "length")


def test_a_qwen2_checkpoint_fine_tunes_with_lora_and_loads_without_danlu(tmp_path):
    write_jsonl(tmp_path / "chats.jsonl", sample_records())
    recipe = chat_recipe(tmp_path, model={"from": str(hub_model(tmp_path, "qwen2"))},
                         transfer={"lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target": ["q_proj", "v_proj"]}},
                         train={"max_steps": 6}, chat={"eval_replies": 3, "examples": 1, "max_new_tokens": 6})
    run = train(recipe, tmp_path / "run").root
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert {"loss", "response_perplexity", "eos_rate"} <= set(metrics[split])
        assert set(metrics["baselines"][split]) == {"unigram", "start"}
        assert "eos_rate" in metrics["baselines"][split]["start"]
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert tok.chat_template == QWEN_TEMPLATE and tok.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.generation_config.eos_token_id == tok.eos_token_id
    report = (run / "report.md").read_text()
    assert "LoRA r=4" in report and "the model's own" in report


# -- a tiny chat run: pretrained here, fine-tuned, reported, predicted, served ----------------

@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("chat")
    write_jsonl(root / "chats.jsonl", sample_records())
    recipe = chat_recipe(root, pretrain={"objective": "clm", "max_steps": 10}, train={"max_steps": 60})
    return train(recipe, root / "run").root


def test_a_chat_run_pretrains_fine_tunes_and_reports_its_replies(chat_run):
    metrics = json.loads((chat_run / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert 0 <= metrics[split]["eos_rate"] <= 1 and metrics[split]["response_perplexity"] > 1
        start = metrics["baselines"][split]["start"]  # the pretrained model it started from
        assert metrics[split]["response_perplexity"] < start["response_perplexity"]
    pretrained = AutoTokenizer.from_pretrained(chat_run / "pretrain" / "model")
    assert pretrained.convert_tokens_to_ids("<|im_end|>") is not None  # its vocabulary holds the template's tokens
    report = (chat_run / "report.md").read_text()
    assert "Replies to held-out prompts" in report and "reference reply:" in report
    assert "chat template: default (ChatML)" in report


def test_predict_answers_a_single_user_message(chat_run):
    (line,) = list(predict_input(chat_run, "colour of sky?"))
    assert line["text"] == "colour of sky?" and line["finish_reason"] in ("stop", "length")
    task, model = load_task(chat_run / "model")
    again = task.predict(TorchForward(model), pd.DataFrame({"messages": [[{"role": "user", "content": "colour of sky?"}]]}))
    assert again[0]["reply"] == line["reply"]  # a text is one user message


def openai_client(url):
    return OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30,
                  http_client=httpx.Client(trust_env=False))


def test_openai_client_chat_streamed_and_not_give_the_same_text(chat_run):
    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner

    runner = load_runner(chat_run)
    with live_server(create_app(runner, ServeSettings())) as url:
        client = openai_client(url)
        messages = [{"role": "user", "content": "colour of grass?"}]
        options = dict(model="tiny-chat", messages=messages, max_tokens=30, temperature=0.8, seed=11)
        reply = client.chat.completions.create(**options)
        text = reply.choices[0].message.content
        chunks = list(client.chat.completions.create(**options, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
        prompt = runner.task.chat_prompt(messages)
        assert prompt == "<|im_start|>user\ncolour of grass?<|im_end|>\n<|im_start|>assistant\n"
        assert reply.usage.prompt_tokens == len(runner.task.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        predicted = httpx.post(f"{url}/v1/predict", trust_env=False, json={"inputs": [
            "colour of sky?", {"messages": [{"role": "user", "content": "colour of sky?"}]}]}).json()["predictions"]
        assert predicted[0] == predicted[1] and set(predicted[0]) == {"reply", "finish_reason"}
        bad = httpx.post(f"{url}/v1/predict", trust_env=False,
                         json={"inputs": {"messages": [{"role": "robot", "content": "hi"}]}})
        assert bad.status_code == 422


def test_a_reply_ends_at_the_end_of_turn_token(chat_run):
    task, model = load_task(chat_run / "model")
    stream = task.generate(model, task.chat_prompt([{"role": "user", "content": "colour of snow?"}]),
                           max_new_tokens=40, temperature=0.0, seed=0)
    text = "".join(stream)
    assert stream.finish_reason == "stop" and "<|im_end|>" not in text and len(stream.ids) < 40


# -- the shipped recipes -----------------------------------------------------------------------

@pytest.mark.parametrize("language, count", [("en", 999), ("zh", 1000)])
def test_the_instruction_demo_recipes_read_their_conversations(language, count, datasets_dir):
    recipe = load_recipe(REPO / "recipes" / f"instruction_demo_{language}.yaml")
    assert recipe.pretrain.objective == "clm" and recipe.task == "chat"
    splits, report, _ = check_data(recipe)
    assert sum(splits.sizes().values()) == count and splits.sizes()["test"] >= 100
    assert all(m[-1]["role"] == "assistant" for m in splits.frames["test"]["messages"])


def test_the_chat_task_is_registered_with_its_capabilities():
    spec = registry.get("chat")
    assert spec.capabilities.generate and spec.capabilities.transformer_layers and "clm" in spec.capabilities.pretrain
    assert spec.main_metric == "response_perplexity" and not spec.higher_is_better("response_perplexity")
    assert spec.higher_is_better("eos_rate")

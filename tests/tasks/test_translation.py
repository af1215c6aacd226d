"""Translation: sacreBLEU scoring, the parallel-file reader and its gate, the tokenizer, decoding settings,
the baselines, the pretrained path, denoising pretraining, and one small run through check, train,
evaluate, report, predict and serve."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sacrebleu
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BartConfig, BartForConditionalGeneration

from danlu.errors import DanluError, DataError, RecipeError
from danlu.inference import TorchForward
from danlu.recipe import load_recipe, recipe_from_dict
from danlu.tasks import make_task
from danlu.tasks.translation import data as pairs
from danlu.tasks.translation.decode import score, translate_ids
from danlu.tasks.translation.pretrain import Infilling, infill
from danlu.tasks.translation.sample import RECIPE, pair, sample

TASK = "translation"
REPO = Path(__file__).resolve().parents[2]
HYPOTHESES = ["Ein Mann fährt Fahrrad auf der Straße.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."]
REFERENCES = ["Ein Mann fährt mit dem Fahrrad auf einer Straße.", "Zwei Hunde spielen im Schnee.",
              "Eine Frau liest ein Buch."]


def write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# Never in the toy training files: predict and serve translate sentences the model has not seen.
UNSEEN = {"the dog finds a fish.", "a bird likes the tree.", "the man sees the ball.", "the cat likes a house.",
          "a bird finds the tree."}


def toy_files(folder, rows=(240, 24, 24)):
    rng = np.random.default_rng(1)
    for name, n in zip(("train", "valid", "test"), rows):
        pairs_ = []
        while len(pairs_) < n:
            found = pair(rng)
            if name != "train" or found[0] not in UNSEEN:
                pairs_.append(found)
        write(folder / f"{name}.en", [s for s, _ in pairs_])
        write(folder / f"{name}.de", [t for _, t in pairs_])


def recipe(folder, **sections):
    if not (folder / "train.en").exists():
        toy_files(folder)
    raw = {"name": "toy-mt", "task": TASK,
           "data": {"train": ["train.en", "train.de"], "validation": ["valid.en", "valid.de"],
                    "test": ["test.en", "test.de"]},
           # 48 sentences in all: repeats and test sentences seen in training are the toy language's nature.
           "quality": {"max_duplicates": 1.0, "max_leakage": 1.0},
           **{k: dict(v) for k, v in RECIPE.items()}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe_from_dict(raw, recipe_path=folder / "r.yaml")


# -- scoring ---------------------------------------------------------------------------------
def test_bleu_and_chrf_are_sacrebleus_own_figures():
    got = score(HYPOTHESES, REFERENCES, "de")
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
    assert 0 < got["bleu"] < 100
    assert "tok:13a" in got["signature"]["bleu"] and "nc:6" in got["signature"]["chrf"]
    assert score(REFERENCES, REFERENCES, "de")["bleu"] == pytest.approx(100)


def test_a_chinese_target_is_scored_with_the_zh_tokenizer():
    hypotheses, references = ["两个男人在街上走路。"], ["两个男人在路上走。"]
    got = score(hypotheses, references, "zh")
    assert "tok:zh" in got["signature"]["bleu"]
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references], tokenize="zh").score)
    assert got["bleu"] != pytest.approx(score(hypotheses, references, "en")["bleu"])  # 13a sees one "word"
    assert "tok:char" in score(["猫"], ["猫"], "ja")["signature"]["bleu"]


# -- reading and the gate ----------------------------------------------------------------------
def test_misaligned_parallel_files_stop_naming_both_files_and_their_counts(tmp_path):
    toy_files(tmp_path)
    write(tmp_path / "train.de", ["dass der hund den ball sieht."] * 239)
    with pytest.raises(DataError) as caught:
        pairs.load(recipe(tmp_path))
    message = str(caught.value)
    assert "train.en has 240 lines but" in message and "train.de has 239" in message


def test_an_empty_side_stops_the_check_naming_its_line(tmp_path):
    from danlu.pipeline import check_data

    toy_files(tmp_path)
    lines = (tmp_path / "train.de").read_text().splitlines()
    lines[6] = "  "
    write(tmp_path / "train.de", lines)
    with pytest.raises(DataError, match=r"train.de line 7: the target is empty \(its en side: '"):
        check_data(recipe(tmp_path))
    splits, report, warnings = check_data(recipe(tmp_path, quality={"on_fail": "warn"}))
    assert len(splits.frames["train"]) == 239 and splits.dropped["train"]["an empty side"] == [7]
    assert any("empty_side" in w for w in warnings)


def test_an_extreme_length_ratio_is_flagged_with_its_line_and_left_out_of_training(tmp_path):
    toy_files(tmp_path)
    target = (tmp_path / "train.de").read_text().splitlines()
    target[3] = "dass."
    write(tmp_path / "train.de", target)
    splits, report = pairs.load(recipe(tmp_path))
    rule = next(r for r in report.rules if r.name == "length_ratio")
    assert rule.count == 1 and rule.examples[0].endswith("train.en line 4")
    assert "'dass.'" in rule.message and rule.passed  # 1 of 240 is under translation.max_extreme_share
    assert splits.dropped["train"]["extreme length ratio"] == [4] and len(splits.frames["train"]) == 239
    strict = recipe(tmp_path, translation={"max_extreme_share": 0.001})
    assert not next(r for r in pairs.load(strict)[1].rules if r.name == "length_ratio").passed


def test_a_table_of_pairs_is_read_and_split_by_data_split(tmp_path):
    frame = pd.DataFrame({"en": [f"sentence number {i}." for i in range(50)], "de": [f"Satz Nummer {i}." for i in range(50)]})
    frame.to_csv(tmp_path / "pairs.tsv", sep="\t", index=False)
    table = recipe(tmp_path, data={"train": "pairs.tsv", "validation": None, "test": None,
                                   "columns": {"source": "en", "target": "de"}, "split": {"validation": 5, "test": 10}})
    splits, report = pairs.load(table)
    assert splits.sizes() == {"train": 35, "validation": 5, "test": 10} and report.passed
    assert set(splits.frames["test"]["source"]) <= set(frame["en"])
    assert splits.frames["train"]["_row"].min() >= 2  # the header is line 1


def test_line_files_come_in_pairs(tmp_path):
    toy_files(tmp_path)
    with pytest.raises(DataError, match=r"line files come in pairs, \[source file, target file\]"):
        pairs.load(recipe(tmp_path, data={"train": "train.en"}))


def test_recipe_checks_refuse_what_translation_cannot_do(tmp_path):
    toy_files(tmp_path)
    for sections, key in (({"tokenizer": {"kind": "wordpiece"}}, "tokenizer.kind"),
                          ({"model": {"arch": "bert"}}, "model.arch"),
                          ({"train": {"early_stopping": {"patience": 2}}}, "train.early_stopping.metric"),
                          ({"data": {"features": ["x"]}}, "data.features")):
        with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
            recipe(tmp_path, **sections)
    assert recipe(tmp_path, train={"early_stopping": {"metric": "loss"}}).train.early_stopping.metric == "loss"


# -- tokenizer, model, decoding ---------------------------------------------------------------
def test_the_shared_tokenizer_round_trips_both_languages_and_ends_each_sentence(tmp_path):
    frame = pd.DataFrame({"source": ["Two men walk.", "A dog  runs, fast!"], "target": ["两个男人在走路。", "一只狗跑。"]})
    task = make_task(recipe(tmp_path))
    task.setup(frame)
    tokenizer = task.tokenizer
    for text in (*frame["source"], *frame["target"]):
        ids = tokenizer(text)["input_ids"]
        assert ids[-1] == tokenizer.eos_token_id and tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.pad_token_id == 0 and tokenizer.mask_token == "<mask>"
    tokenizer.save_pretrained(tmp_path / "tok")  # without danlu, the same ids
    assert AutoTokenizer.from_pretrained(tmp_path / "tok")("A dog")["input_ids"] == tokenizer("A dog")["input_ids"]


def test_the_model_has_the_recipes_shape(tmp_path):
    task = make_task(recipe(tmp_path, translation={"decoder_layers": 2}))
    task.setup(sample().frame)
    model = task.build_model()
    config = model.config
    assert (config.encoder_layers, config.decoder_layers, config.d_model, config.encoder_ffn_dim) == (1, 2, 32, 64)
    assert config.decoder_start_token_id == task.tokenizer.eos_token_id and config.encoder_layerdrop == 0
    assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()  # one shared vocabulary


def test_label_smoothing_applies_in_training_only(tmp_path):
    task = make_task(recipe(tmp_path, translation={"label_smoothing": 0.3}))
    task.setup(sample().frame)
    torch.manual_seed(0)
    model = task.build_model()
    data = task.encode(sample().frame.head(4))
    batch = task.collate(data.items)
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
        plain = float(model(**batch).loss)
        model.train()
        torch.manual_seed(1)
        smoothed = model(**batch)
    model.train()
    expected = torch.nn.functional.cross_entropy(smoothed.logits.flatten(0, 1), batch["labels"].flatten(),
                                                 label_smoothing=0.3)
    assert float(smoothed.loss) == pytest.approx(float(expected), rel=1e-5)
    assert plain == pytest.approx(float(torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                                          batch["labels"].flatten())), rel=1e-5)


def test_collate_pads_sources_with_the_pad_id_and_targets_out_of_the_loss(tmp_path):
    task = make_task(recipe(tmp_path))
    task.setup(sample().frame)
    data = task.encode(pd.DataFrame({"source": ["the cat sees a fish.", "a bird"], "target": ["dass.", "ein vogel"]}))
    batch = task.collate(data.items)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["labels"].shape[1] % 8 == 0
    short = len(data.items[1]["input_ids"])
    assert (batch["input_ids"][1, short:] == task.tokenizer.pad_token_id).all()
    assert batch["attention_mask"][1, :short].all() and not batch["attention_mask"][1, short:].any()
    assert (batch["labels"][0, len(data.items[0]["labels"]):] == -100).all()


class Recorder:
    """A model whose generate records its settings and answers the end-of-sentence token."""

    def __init__(self, eos):
        self.calls, self.eos = [], eos
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def eval(self):
        return self

    def parameters(self):
        return iter([self.weight])

    def generate(self, input_ids, attention_mask, **options):
        self.calls.append({"rows": input_ids.shape[0], "width": input_ids.shape[1], **options})
        return torch.full((input_ids.shape[0], 2), self.eos)


def test_decoding_uses_beams_length_penalty_and_a_cap_by_source_length(tmp_path):
    task = make_task(recipe(tmp_path, translation={"beams": 4, "length_penalty": 0.6, "max_new_tokens": 30}))
    task.setup(sample().frame)
    fake = Recorder(task.tokenizer.eos_token_id)
    sources = [[5] * 3] * 3 + [[5] * 40] * 2 + [[5] * 3] * 3
    out = task.translate(fake, sources)
    assert out == [""] * 8
    assert all(c["num_beams"] == 4 and c["length_penalty"] == 0.6 and c["do_sample"] is False for c in fake.calls)
    # The six short sentences together, capped at 2 x 3 + 10 new tokens; the long ones at max_new_tokens.
    assert sorted((c["rows"], c["max_new_tokens"]) for c in fake.calls) == [(2, 30), (6, 16)]
    greedy = Recorder(task.tokenizer.eos_token_id)
    translate_ids(greedy, task.tokenizer, sources, 1, 1.0, 30)
    assert {c["num_beams"] for c in greedy.calls} == {1}


# -- baselines -----------------------------------------------------------------------------------
def test_the_copy_baseline_is_the_bleu_of_the_source_and_memory_finds_the_closest_pair(tmp_path):
    task = make_task(recipe(tmp_path))
    train = pd.DataFrame({"source": ["a dog runs on the grass.", "two men sit on a bench."],
                          "target": ["Ein Hund läuft auf dem Gras.", "Zwei Männer sitzen auf einer Bank."]})
    test = pd.DataFrame({"source": ["two men sit on the bench."], "target": ["Zwei Männer sitzen auf der Bank."]})
    found = task.baseline({"train": train, "test": test}, ["test"])["test"]
    assert found["copy"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(list(test["source"]), [list(test["target"])]).score)
    memory = sacrebleu.corpus_bleu(["Zwei Männer sitzen auf einer Bank."], [list(test["target"])]).score
    assert found["memory"]["bleu"] == pytest.approx(memory) and memory > found["copy"]["bleu"]
    assert set(task.baseline_names()) == {"copy", "memory"}


# -- the pretrained path -------------------------------------------------------------------------
def tiny_pretrained(folder):
    """A random BART with a byte-level tokenizer of its own, saved as a hub checkpoint would be."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([s + " " + t for s, t in (pair(np.random.default_rng(i)) for i in range(100))],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<mask>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
                                        mask_token="<mask>")
    torch.manual_seed(0)
    config = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2, forced_bos_token_id=0)
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_pretrained_checkpoint_loads_through_from_pretrained_and_fine_tunes(tmp_path):
    from danlu.train import fitter

    toy_files(tmp_path)
    checkpoint = tiny_pretrained(tmp_path / "bart")
    rec = recipe(tmp_path, model={"from": "bart", "max_length": 32, "dropout": 0.2})
    assert "tokenizer" not in rec.to_yaml()  # the checkpoint's own tokenizer is used
    splits, _ = pairs.load(rec)
    task = make_task(rec)
    task.setup(splits.frames["train"])
    model = task.build_model()
    assert isinstance(model, BartForConditionalGeneration) and model.config.dropout == 0.2
    assert task.tokenizer("the cat")["input_ids"][0] == 0  # the checkpoint's tokenizer, <s> first
    data = task.encode(splits.frames["train"], train=True)
    batch = task.collate(data.items[:8])
    with torch.no_grad():
        before = float(model.eval()(**batch).loss)
    trained = fitter(task.engine)(model, data, None, task.collate, rec.train, tmp_path / "ck", tmp_path / "h.json",
                                  compute_metrics=None, metric=None, greater_is_better=True,
                                  large_model=True, group_by_length=True).model
    with torch.no_grad():
        after = float(trained.eval()(**batch).loss)
    assert after < before
    metrics = task.evaluate(TorchForward(trained), task.encode(splits.frames["test"]))
    assert 0 <= metrics["bleu"] <= 100 and np.isfinite(metrics["loss"])
    with pytest.raises(DanluError, match="model.max_length"):
        make_task(recipe(tmp_path, model={"from": str(checkpoint), "max_length": 100})).build_model()


# -- denoising pretraining ----------------------------------------------------------------------
def test_infilling_hides_spans_behind_one_mask_each_and_keeps_the_end_token():
    torch.manual_seed(0)
    ids = list(range(10, 40)) + [2]
    noisy = infill(ids, 0.3, mask_id=3, protected={2, 3})
    assert noisy[-1] == 2 and 3 in noisy
    kept = [t for t in noisy if t not in (2, 3)]
    assert len(kept) == 30 - 9  # 30% of the 30 open tokens hidden
    assert kept == sorted(kept) and all(a != b for a, b in zip(noisy, noisy[1:]) if a == 3)  # in order, spans merged
    assert infill([7, 2], 0.3, 3, {2, 3}) == [7, 2]  # nothing to hide in a one-token sentence


def test_denoise_pretraining_then_translation_fine_tunes_from_it(tmp_path):
    from danlu.pipeline import train

    toy_files(tmp_path, rows=(120, 12, 12))
    rec = recipe(tmp_path, pretrain={"objective": "denoise", "max_steps": 8, "batch_size": 8},
                 train={"max_steps": 8}, translation={"samples": 0}, evaluate={"baseline": False, "splits": ["test"]})
    run = train(rec, tmp_path / "run")
    stats = json.loads((run.pretrain_dir / "metrics.json").read_text())
    assert stats["objective"] == "denoise" and stats["steps"] == 8 and np.isfinite(stats["eval_loss"])
    assert stats["sentences"] == 240  # both sides of the 120 pairs
    pretrained = AutoTokenizer.from_pretrained(run.pretrain_dir / "model")
    final = AutoTokenizer.from_pretrained(run.model_dir)
    assert pretrained.get_vocab() == final.get_vocab()  # fine-tuning kept the pretraining's vocabulary
    assert "pretrained in this run (denoise" in (run.root / "report.md").read_text()


def test_the_infilling_collator_labels_the_clean_sentence(tmp_path):
    task = make_task(recipe(tmp_path))
    task.setup(sample().frame)
    items = [{"input_ids": task.tokenizer("the cat sees a fish.")["input_ids"]}]
    torch.manual_seed(0)
    batch = Infilling(task.tokenizer, 0.5)(items)
    n = len(items[0]["input_ids"])
    assert batch["labels"][0, :n].tolist() == items[0]["input_ids"] and (batch["labels"][0, n:] == -100).all()
    assert task.tokenizer.mask_token_id in batch["input_ids"][0].tolist()


# -- one run end to end ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from danlu.pipeline import train

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("mt")
    toy_files(folder)
    rec = recipe(folder, train={"max_steps": 300, "batch_size": 16, "lr": 0.005, "warmup": 10},
                 model={"layers": 2, "embedding": 64, "feed_forward": 128, "heads": 4},
                 translation={"compare_greedy": True, "samples": 3})
    run = train(rec, folder / "run")
    return run, rec


def test_a_run_learns_the_toy_language_and_reports_it(finished):
    run, _ = finished
    metrics = json.loads((run.root / "metrics.json").read_text())
    test = metrics["test"]
    assert test["bleu"] > 80 and test["chrf"] > 80 and test["n"] == 24
    assert test["signature"]["bleu"].startswith("nrefs:1|case:mixed") and test["decoding"]["beams"] == 2
    assert test["greedy"]["bleu"] > 0 and test["greedy"]["beams"] == 1
    assert metrics["baselines"]["test"]["copy"]["bleu"] < 10 < test["bleu"]
    report = (run.root / "report.md").read_text()
    assert "## Sample translations" in report and "## Decoding" in report and "greedy (1)" in report
    assert "tok:13a" in report


def test_predict_translates_a_sentence(finished):
    from danlu.predict import predict_input

    run, _ = finished
    (line,) = predict_input(run.root, "the dog finds a fish.")
    assert line == {"translation": "dass der hund einen fisch findet."}


def test_the_saved_model_translates_without_danlu(finished):
    run, _ = finished
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(run.model_dir)
    assert model.generation_config.num_beams == 2  # the run's decoding settings travel with it
    out = model.generate(**tokenizer(["a bird likes the tree."], return_tensors="pt"))
    assert tokenizer.decode(out[0], skip_special_tokens=True) == "dass ein vogel den baum mag."


def test_the_safetensors_export_carries_the_decoding_settings(finished, tmp_path):
    from danlu.compress.export import export_run

    run, _ = finished
    export_run(run.root, "safetensors", tmp_path / "export")
    assert (tmp_path / "export" / "generation_config.json").exists()
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "export")
    assert model.generation_config.num_beams == 2 and model.generation_config.early_stopping is True


def test_serve_translates(finished):
    from fastapi.testclient import TestClient

    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner

    run, _ = finished
    with TestClient(create_app(load_runner(run.root), ServeSettings())) as client:
        one = client.post("/v1/predict", json={"inputs": "the man sees the ball."})
        two = client.post("/v1/predict", json={"inputs": ["the cat likes a house.", "a bird finds the tree."]})
        models = client.get("/v1/models")
        bad = client.post("/v1/predict", json={"inputs": [{"source": "x"}]})
    assert one.status_code == 200, one.text
    assert one.json()["predictions"] == [{"translation": "dass der mann den ball sieht."}]
    assert [p["translation"] for p in two.json()["predictions"]] == ["dass die katze ein haus mag.",
                                                                   "dass ein vogel den baum findet."]
    assert "target_language" in models.text and bad.status_code == 422


def test_eval_scores_a_table_of_pairs(finished, tmp_path):
    from danlu.pipeline import evaluate_run

    run, _ = finished
    rows = [pair(np.random.default_rng(50 + i)) for i in range(10)]
    pd.DataFrame({"source": [s for s, _ in rows], "target": [t for _, t in rows]}).to_csv(
        tmp_path / "more.tsv", sep="\t", index=False)
    metrics = evaluate_run(run.root, tmp_path / "more.tsv")
    assert metrics["n"] == 10 and metrics["bleu"] > 80


# -- the shipped recipe on the real data ----------------------------------------------------
@pytest.mark.real
def test_the_multi30k_recipe_reads_and_checks_the_real_files(datasets_dir, monkeypatch):
    from danlu.pipeline import check_data

    monkeypatch.setenv("DANLU_DATA", str(datasets_dir))
    splits, report, warnings = check_data(load_recipe(REPO / "recipes" / "multi30k_en_de.yaml"))
    assert splits.sizes() == {"train": 28_998, "validation": 1_014, "test": 1_000} and report.passed
    assert splits.dropped["train"]["extreme length ratio"] == [16510, 16664]
    assert splits.frames["test"]["target"].iloc[0] == "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."

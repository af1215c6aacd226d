"""PII recognizers against a corpus with known counts, and quality.pii's actions through the data stage."""

import json
from collections import Counter

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from danlu.cli import app
from danlu.pipeline.stages import check_data
from danlu.recipe.load import load_recipe
from danlu.run import Run
from danlu.tasks import make_task
from danlu.data.pii import KINDS, cn_id_ok, find, iban_ok, luhn_ok, scrub
from pii_corpus import corpus


def test_the_checksums_accept_known_numbers_and_reject_one_digit_off():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert cn_id_ok("11010519491231002X") and not cn_id_ok("110105194912310021")
    assert not cn_id_ok("110105194913310025")  # month 13: no birth date
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")


@pytest.mark.parametrize("seed", [0, 1])
def test_recall_and_precision_per_kind_on_a_corpus_with_known_counts(seed):
    texts, planted = corpus(per_kind=200, seed=seed)
    assert {k: len(v) for k, v in planted.items()} == {k: 200 for k in KINDS}
    owner = {value: kind for kind, values in planted.items() for value in values}
    right, found = Counter(), Counter()
    for text in texts:
        for m in find(text):
            found[m.kind] += 1
            right[m.kind] += owner.get(text[m.start:m.end]) == m.kind
    for kind in KINDS:
        recall, precision = right[kind] / 200, right[kind] / max(found[kind], 1)
        assert recall >= 0.95 and precision >= 0.95, (kind, recall, precision)


def test_a_value_failing_its_check_is_left_alone_and_lends_no_digits():
    text = "card 4111 1111 1111 1112, id 110105194912310021, iban GB82 WEST 1234 5698 7654 33, at 12:30:45"
    assert find(text) == []
    assert scrub("mail a.b@x.org or +86 138 1234 5678") == "mail [EMAIL] or [PHONE]"


def _write(tmp_path, texts, pii):
    rows = pd.DataFrame({"text": texts, "label": [i % 2 for i in range(len(texts))]})
    rows.to_csv(tmp_path / "t.csv", index=False)
    body = {"name": "pii", "task": "text-classification", "data": {"source": "t.csv"},
            "quality": {"pii": pii, "max_duplicates": 1.0, "max_leakage": 1.0},
            "tokenizer": {"kind": "bpe", "vocab_size": 4000, "min_frequency": 1}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True))
    return load_recipe(path)


def test_mask_leaves_no_value_in_the_splits_the_tokenizer_or_the_saved_report(tmp_path):
    texts, planted = corpus(per_kind=40, seed=3)
    recipe = _write(tmp_path, texts, {"action": "mask"})
    run = Run(tmp_path / "run")
    run.root.mkdir()
    splits, report, _ = check_data(recipe, run)
    rule = next(r for r in report.rules if r.name == "pii")
    assert rule.observed == 6 * 40 and "masked" in rule.message
    for kind in KINDS:
        assert f"{kind} in text: 40" in rule.message
    values = [v for vs in planted.values() for v in vs]
    kept = "\n".join(t for f in splits.frames.values() for t in f["text"])
    assert "[EMAIL]" in kept and not [v for v in values if v in kept]
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    vocab = [t.replace("Ġ", " ").strip() for t in task.tokenizer.get_vocab()]
    compact = [v.replace(" ", "") for v in values if len(v.replace(" ", "")) >= 6]
    assert not [v for v in compact if any(v in t.replace(" ", "") for t in vocab if len(t) >= 6)]
    saved = "".join(p.read_text(encoding="utf-8") for p in run.root.glob("data_report.*"))
    assert "[CARD]" in saved or "[EMAIL]" in saved or "[PHONE]" in saved
    assert not find(saved.replace("\\n", " ")) and not [v for v in values if v in saved]


def test_drop_removes_the_rows_and_warn_keeps_them_but_reports_them_masked(tmp_path):
    texts = ["write to ann@example.com", "nothing here", "call +44 20 7946 0958", "plain text"] * 5
    dropped, report, _ = check_data(_write(tmp_path, texts, {"action": "drop", "kinds": ["email"]}))
    kept = [t for f in dropped.frames.values() for t in f["text"]]
    assert len(kept) == 15 and not any("@" in t for t in kept)
    warned, report, _ = check_data(_write(tmp_path, texts, {"action": "warn"}))
    rule = next(r for r in report.rules if r.name == "pii")
    assert sum(len(f) for f in warned.frames.values()) == 20 and rule.count == 10
    assert rule.examples and all("@" not in e and "7946" not in e for e in rule.examples)
    assert json.dumps(report.to_dict()).count("ann@") == 0


def test_an_unknown_kind_is_one_clear_message(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\na,0\nb,1\n")
    body = {"name": "t", "task": "text-classification", "data": {"source": "t.csv"},
            "quality": {"pii": {"kinds": ["email", "name"]}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(body))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "quality.pii.kinds" in result.output and "unknown PII kind 'name'" in result.output

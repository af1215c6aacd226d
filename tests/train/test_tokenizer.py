from transformers import AutoTokenizer

from danlu.train.tokenizer import train_tokenizer

TEXTS = ["the movie was great", "the movie was terrible", "a great great film", "terrible acting"] * 20


def test_wordpiece_round_trip_and_reload(tmp_path):
    tok = train_tokenizer(TEXTS, "wordpiece", vocab_size=200, min_frequency=1)
    enc = tok("The movie was GREAT")
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"][-1] == tok.sep_token_id
    assert tok.unk_token_id not in enc["input_ids"]
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "the movie was great"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("the movie was great")["input_ids"] == enc["input_ids"]


def test_bpe_tokenizer_pads_batches():
    tok = train_tokenizer(TEXTS, "bpe", vocab_size=200, min_frequency=1)
    batch = tok(["great", "the movie was terrible"], padding=True)
    assert len(batch["input_ids"][0]) == len(batch["input_ids"][1])
    assert tok.pad_token_id in batch["input_ids"][0]


def test_chinese_text_gets_one_token_per_character():
    poems = ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"] * 10
    tok = train_tokenizer(poems, "wordpiece", vocab_size=100, min_frequency=1)
    ids = tok("明月光")["input_ids"][1:-1]
    assert len(ids) == 3 and tok.unk_token_id not in ids

"""Training a tokenizer on the training text (WordPiece, BPE, byte-level BPE or characters, with the
`tokenizers` library).

The result is a transformers PreTrainedTokenizerFast, so it saves beside the model and
AutoTokenizer.from_pretrained loads it without danlu.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# GPT-2's document separator; it doubles as the start token of a generation and as padding.
EOT = "<|endoftext|>"
UNK = "<unk>"


def train_tokenizer(texts: Iterable[str], kind: str = "wordpiece", vocab_size: int = 8000,
                    min_frequency: int = 2, lowercase: bool = True) -> PreTrainedTokenizerFast:
    if kind == "char":
        return char_tokenizer(texts, vocab_size, min_frequency, lowercase)
    if kind == "byte_bpe":
        return byte_bpe_tokenizer(texts, vocab_size, min_frequency, lowercase)
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=SPECIALS)
        tok.decoder = decoders.WordPiece()
    else:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=SPECIALS, end_of_word_suffix="</w>")
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
    # NFKC first so full-width and compatibility forms of the same character share one id.
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(steps)
    # BertPreTokenizer also splits CJK characters one by one, so Chinese text gets usable tokens.
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def char_tokenizer(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 1,
                   lowercase: bool = False) -> PreTrainedTokenizerFast:
    """One token per character (any script: a Chinese character is one token), the `vocab_size`
    most frequent characters seen at least `min_frequency` times; the rest map to <unk>.

    No normalizer beyond the optional lowercasing: NFKC would turn the full-width comma of Chinese
    verse into an ASCII one, and decoding must give back exactly the characters of the text.
    """
    counts: Counter = Counter()
    for text in texts:
        counts.update(text.lower() if lowercase else text)
    keep = [c for c, n in counts.most_common(max(1, vocab_size - 2)) if n >= min_frequency]
    vocab = {EOT: 0, UNK: 1}
    for char in sorted(keep):  # code-point order: the same text gives the same ids
        vocab[char] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    tok.decoder = decoders.Fuse()  # characters are joined back with nothing between them
    return _causal_fast(tok, unk_token=UNK)


def byte_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
                       lowercase: bool = False) -> PreTrainedTokenizerFast:
    """GPT-2 style BPE over UTF-8 bytes: any text encodes (no unknown token), spaces and line breaks
    survive decoding, and Chinese characters are merged from their bytes as often as they occur."""
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return _causal_fast(tok)


def _causal_fast(tok: Tokenizer, **extra) -> PreTrainedTokenizerFast:
    # clean_up_tokenization_spaces would glue " ." into "." and break the round trip.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT,
                                   clean_up_tokenization_spaces=False, **extra)

"""Token classification (named entities): a tag per word or character, from CoNLL or jsonl files."""

"""Chat (instruction) fine-tuning: conversations -> a causal LM that replies and ends its turn."""

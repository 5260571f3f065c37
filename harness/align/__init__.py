"""Cross-tokenizer alignment of teacher top-k distributions onto student tokens."""

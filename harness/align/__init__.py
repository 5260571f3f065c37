"""Cross-tokenizer alignment of teacher top-k distributions onto student tokens.

Modules: `tokenizers` (ids, strings, offsets), `faithful_oracle` / `faithful_fast` (the authors'
DTW, plain and fast), `exact` (offset spans, ours), `targets` (fixed-K arrays, statistics),
`api` (`Aligner`, `AlignConfig`), `run` (JSONL runner), `bench` (benchmark and report),
`synthetic` (synthetic top-k for real texts). See docs/alignment.md.
"""

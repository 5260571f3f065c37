"""Cross-tokenizer alignment of teacher top-k distributions onto student tokens.

Modules: `tokenizers` (ids, strings, offsets), `faithful_oracle` / `faithful_fast` (the authors'
DTW, plain and fast), `exact` (offset spans, ours; any student tokenizer), `identity` (teacher and
student share a tokenizer: rows without alignment), `targets` (fixed-K arrays, statistics), `api` (`Aligner`, `AlignConfig`), `samples` (validated teacher samples), `pool` (worker processes),
`rows` (aligned rows), `store` (teacher store -> aligned Parquet, the pipeline's path), `jsonl`
(JSONL import/export on the same runner), `bench` (benchmark and report),
`synthetic` (synthetic top-k for real texts). See docs/alignment.md.
"""

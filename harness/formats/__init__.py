"""Training formats (paper Fig. 1B): render, demo selection, Parquet build, format mixing.

    from harness.formats import render_record, build_formats, authors_size_micro_batches
    render_record("zero_shot_cot", "faithful", question, cot, [])  # -> (encoder_input, decoder_target)

See docs/formats.md for the layouts, the faithful/corrected settings and the mixing rules.
"""

from harness.formats.build import CotSample, build_formats, schema
from harness.formats.demos import DemoPool, load_pool, select_demos
from harness.mixing import (
    BATCH_SIZES,
    GRAD_ACCUM,
    MicroBatch,
    authors_micro_batches,
    authors_mix_counts,
    authors_size_micro_batches,
    composition,
    weighted_micro_batches,
)
from harness.formats.render import (
    FORMATS,
    SETTINGS,
    answer_only_target,
    clean_text,
    render_record,
    strip_colons,
)

__all__ = [
    "BATCH_SIZES", "GRAD_ACCUM", "FORMATS", "SETTINGS", "CotSample", "DemoPool", "MicroBatch",
    "answer_only_target", "authors_micro_batches", "authors_mix_counts", "authors_size_micro_batches",
    "build_formats", "clean_text", "composition", "load_pool", "render_record", "schema",
    "select_demos", "strip_colons", "weighted_micro_batches",
]

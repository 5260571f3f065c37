"""Cheap option checks shared by the stages: the batch-size forms lm-eval accepts."""

from __future__ import annotations

import pytest

from harness.errors import UsageError, check_batch_size


@pytest.mark.parametrize("value, parsed", [
    (8, 8), ("8", 8), (" 16 ", 16), ("auto", "auto"), ("auto:4", "auto:4"), (None, None),
])
def test_batch_size_forms_parse(value, parsed):
    assert check_batch_size("--batch-size", value) == parsed


@pytest.mark.parametrize("value", [0, -1, "0", "-1", "fast", "auto:x", "auto:0", "auto:-2", "auto:", "auto:nan", "auto:0.5", "auto:1e308", "8.0", "", True, "²"])
def test_bad_batch_sizes_name_the_option_and_the_forms(value):
    with pytest.raises(UsageError) as err:
        check_batch_size("--batch-size", value)
    message = str(err.value)
    assert message.startswith("--batch-size: ") and "positive integer, auto, or auto:N" in message and "\n" not in message

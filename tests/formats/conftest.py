"""Fixtures of made-up items for the format tests (never text from the data files)."""

from __future__ import annotations

import pytest
from formats_testutil import item

from harness.records import Example


@pytest.fixture
def demos() -> list[Example]:
    return [
        item(901, "Ann has 4 cats: 2 are black. How many are not black?", "Not black: 4 - 2 = <<4-2=2>>2 cats.\n#### 2"),
        item(902, "What is 3 times 5?", "3 * 5 = <<3*5=15>>15\n#### 15"),
        item(903, "Bo runs 2 miles a day. How far in 3 days?", "2 * 3 = <<2*3=6>>6 miles.\n#### 6"),
        item(904, "A box holds 10 eggs; 4 break. How many are left?", "10 - 4 = <<10-4=6>>6\n#### 6"),
    ]


@pytest.fixture
def question() -> Example:
    return item(7, "Sam: how many pens are left? Note: he had 3 and gave 1 away.", "3 - 1 = <<3-1=2>>2\n#### 2")

import pytest

from harness.scoring import bbh_means


def test_bbh_means_pool_families_by_items():
    per_task = {
        "date_understanding": (60.0, 250),
        "logical_deduction_three_objects": (90.0, 100),
        "logical_deduction_five_objects": (30.0, 50),
        "tracking_shuffled_objects_seven_objects": (10.0, 250),
    }
    means = bbh_means(per_task)
    assert means["mean_27"] == pytest.approx((60 + 90 + 30 + 10) / 4)
    # groups: date 60; logical_deduction pooled (90*100 + 30*50) / 150 = 70; tracking 10
    assert means["mean_23"] == pytest.approx((60 + 70 + 10) / 3)
    assert bbh_means({}) == {"mean_27": None, "mean_23": None}

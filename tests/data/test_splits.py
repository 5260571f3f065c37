import pytest

from harness.data import load
from harness.data.prompts import gsm8k_validation_index
from harness.data.splits import DEV_SIZE, demo_questions, load_split, normalise_question


@pytest.mark.parametrize(
    "name, split, mode, size",
    [
        ("gsm8k", "dev", "faithful", 200), ("gsm8k", "test", "faithful", 1319), ("gsm8k", "train", "faithful", 7473),
        ("multiarith", "dev", "faithful", 200), ("multiarith", "test", "faithful", 400),
        ("asdiv", "test", "faithful", 2305), ("svamp", "test", "faithful", 1000),
        ("gsm8k", "dev", "clean", 200), ("multiarith", "dev", "clean", 200), ("asdiv", "dev", "clean", 300), ("svamp", "dev", "clean", 300),
    ],
)
def test_sizes(name, split, mode, size):
    assert len(load(name, split, mode)) == size


def test_faithful_gsm8k_dev_is_the_authors_index():
    train = load("gsm8k", "train")
    dev = load("gsm8k", "dev")
    assert [e.id for e in dev] == [train[i].id for i in gsm8k_validation_index()]


def test_clean_train_excludes_dev_and_demos():
    train = load("gsm8k", "train", "clean")
    dev_ids = {e.id for e in load("gsm8k", "dev", "clean")}
    assert not dev_ids & {e.id for e in train}
    demos = demo_questions()
    assert demos and not any(normalise_question(e.question) in demos for e in train)
    # The demo questions really are GSM8K train questions, so "clean" removes something.
    assert len(train) < 7473 - 200


@pytest.mark.parametrize("name", ["multiarith", "asdiv", "svamp"])
@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_dev_test_disjoint_and_deterministic(name, mode):
    if mode == "faithful" and name != "multiarith":
        with pytest.raises(ValueError, match="no .* dev split"):
            load(name, "dev", mode)
        return
    dev, test = load(name, "dev", mode), load(name, "test", mode)
    assert len(dev) == DEV_SIZE[name]
    assert not {e.id for e in dev} & {e.id for e in test}
    assert [e.id for e in load(name, "dev", mode)] == [e.id for e in dev]  # same draw every time
    other_seed = load_split(name, "dev", mode, seed=1)
    assert {e.id for e in other_seed} != {e.id for e in dev}


def test_clean_math_sets_are_decontaminated():
    seen = {normalise_question(e.question) for e in load("gsm8k", "train")} | demo_questions()
    for name in ("multiarith", "asdiv", "svamp"):
        for split in ("dev", "test"):
            assert not any(normalise_question(e.question) in seen for e in load(name, split, "clean"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="split mode"):
        load("gsm8k", "dev", "weird")
    with pytest.raises(ValueError, match="unknown math set"):
        load("mathqa", "test")
    with pytest.raises(ValueError, match="splits"):
        load("svamp", "train", "clean")

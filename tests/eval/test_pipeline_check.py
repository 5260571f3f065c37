"""A model the harness built is flagged as a pipeline check however it is named; output folders
are named from the model, never from a local path; group rows carry their item count."""

import shutil

from harness.eval.summary import summarise
from harness.eval.tiny import MARKER, build_tiny_t5, is_pipeline_check, model_label, resolve_model


def test_built_model_is_flagged_wherever_it_is_copied(tmp_path):
    built = build_tiny_t5(tmp_path / "tiny")
    assert (built / MARKER).is_file()
    renamed = tmp_path / "my-fine-student"
    shutil.copytree(built, renamed)
    assert resolve_model(str(renamed)) == (str(renamed.resolve()), True)


def test_data_dir_random_t5_is_flagged_when_copied(tmp_path, data_dir):
    copy = tmp_path / "somewhere" / "t5-small-ish"
    shutil.copytree(data_dir / "models/tiny-random-t5", copy)
    assert is_pipeline_check(copy)
    assert resolve_model("tiny-random-t5")[1] is True


def test_an_ordinary_model_folder_is_not_flagged(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not the tiny model")
    assert not is_pipeline_check(folder)
    assert resolve_model("google/flan-t5-xl") == ("google/flan-t5-xl", False)


def test_model_labels_never_carry_local_paths(tmp_path):
    folder = tmp_path / "deep" / "student-3b"
    folder.mkdir(parents=True)
    assert model_label(str(folder)) == "student-3b"
    assert model_label("google/flan-t5-xl") == "google__flan-t5-xl"
    assert model_label("tiny") == "tiny"


def test_group_rows_get_the_sum_of_their_members_items():
    results = {
        "results": {
            "mas_cot_spec": {"acc_faithful,none": 0.5, "acc_corrected,none": 0.5},
            "multiarith_cot_spec": {"acc_faithful,none": 0.5, "acc_corrected,none": 0.5},
            "asdiv_cot_spec": {"acc_faithful,none": 0.5, "acc_corrected,none": 0.5},
        },
        "n-samples": {"multiarith_cot_spec": {"effective": 4}, "asdiv_cot_spec": {"effective": 6}},
        "group_subtasks": {"mas_cot_spec": ["multiarith_cot_spec", "asdiv_cot_spec"]},
    }
    assert summarise(results)["tasks"]["mas_cot_spec"]["n"] == 10

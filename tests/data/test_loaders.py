import json

import pytest

from harness.config import DataDirError
from harness.data import asdiv, bbh, gsm8k, multiarith, svamp
from harness.data.prompts import PROMPTS, authors_prompt, gsm8k_validation_index
from harness.records import RecordError


def test_record_counts():
    assert len(gsm8k.load("train")) == 7473
    assert len(gsm8k.load("test")) == 1319
    assert len(multiarith.load()) == 600
    assert len(asdiv.load()) == 2305
    assert len(svamp.load()) == 1000
    assert len(bbh.TASKS) == 27
    sizes = {t: len(bbh.load(t)) for t in bbh.TASKS}
    assert sum(sizes.values()) == 6511
    assert sizes["causal_judgement"] == 187 and sizes["penguins_in_a_table"] == 146 and sizes["snarks"] == 178


def test_normalised_fields(data_dir):
    first = gsm8k.load("train")[0]
    assert first.number is not None and first.answer == str(int(first.number))
    assert "<<" not in first.rationale and "####" not in first.rationale
    assert first.gold_raw.rstrip().endswith(first.answer)
    for e in multiarith.load()[:20]:
        assert e.question == e.question.strip() and e.gold_raw.startswith("[")
    raw = json.loads((data_dir / "svamp/SVAMP.json").read_text())
    for e, row in zip(svamp.load(), raw):
        # The authors' join, byte for byte (".." where the body already ends in a period).
        assert e.question == row["Body"] + ". " + row["Question"] and e.number == row["Answer"]
    numeric = [e for e in asdiv.load() if e.number is not None]
    textual = [e for e in asdiv.load() if e.number is None]
    assert len(numeric) + len(textual) == 2305 and 0 < len(textual) < 250
    assert all(e.answer == e.gold_raw for e in textual)
    assert {e.subset for e in bbh.load("date_understanding")} == {"date_understanding"}


def test_ids_unique():
    for examples in (gsm8k.load("train"), gsm8k.load("test"), multiarith.load(), asdiv.load(), svamp.load()):
        assert len({e.id for e in examples}) == len(examples)


def test_prompts_and_index():
    for name in PROMPTS:
        assert "The answer is" in authors_prompt(name)
    index = gsm8k_validation_index()
    assert len(index) == 200 == len(set(index)) and min(index) == 9 and max(index) == 7455
    with pytest.raises(ValueError, match="unknown prompt"):
        authors_prompt("nope")


def test_missing_data_dir_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEC_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataDirError, match="SPEC_DATA_DIR"):
        gsm8k.load("test")
    monkeypatch.setenv("SPEC_DATA_DIR", str(tmp_path))
    with pytest.raises(DataDirError, match="gsm8k/test.jsonl not found"):
        gsm8k.load("test")


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "rel, text, loader, field, record",
    [
        ("gsm8k/test.jsonl", '{"question": "q", "answer": "a\\n#### 3"}\n{"question": "q"}\n', lambda d: gsm8k.load("test", d), "answer", "1"),
        ("gsm8k/test.jsonl", '{"question": "q", "answer": "no final"}\n', lambda d: gsm8k.load("test", d), "answer", "0"),
        ("gsm8k/test.jsonl", '{"question": "q", "answer": "a\\n#### 3"}\nnot json\n', lambda d: gsm8k.load("test", d), "<json>", "line 2"),
        ("multiarith/MultiArith.json", json.dumps([{"sQuestion": " q ", "lSolutions": [1, 2]}]), multiarith.load, "lSolutions", "0"),
        ("svamp/SVAMP.json", json.dumps([{"ID": "chal-9", "Body": "b", "Question": "q", "Answer": "x"}]), svamp.load, "Answer", "chal-9"),
        ("asdiv/ASDiv.xml", "<R><Problem ID='p-7'><Body>b</Body><Answer>3</Answer></Problem></R>", asdiv.load, "Question", "p-7"),
        ("bbh/snarks.json", json.dumps({"examples": [{"input": "i"}]}), lambda d: bbh.load("snarks", d), "target", "0"),
    ],
)
def test_bad_records_name_file_record_field(tmp_path, rel, text, loader, field, record):
    path = _write(tmp_path, rel, text)
    with pytest.raises(RecordError) as err:
        loader(tmp_path)
    assert err.value.field == field and str(err.value.record) == record
    assert str(path) in str(err.value)

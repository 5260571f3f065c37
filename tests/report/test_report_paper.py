"""reports/paper/fu2023.json: its structure, and every number against the paper's own text.

The tables are re-parsed here from shared/paper/specializing-smaller-lms-fu2023.txt with their
printed row labels, independently of the JSON, so a transcription error fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.errors import DataError
from harness.report.paper import PAPER_PATH, TABLE_COLUMNS, TABLE_ROWS, load_paper, published_halfwidth, size_in_params

TEXT = Path(__file__).resolve().parents[3] / "shared" / "paper" / "specializing-smaller-lms-fu2023.txt"
NUM = r"([-+]?\d+\.\d+|-|\?)"

# Table 1's printed labels (model, #params) -> our row names.
T1_LABELS = {
    "code-davinci-002 175B": "code-davinci-002", "La MDA 137B": "lamda-137b", "Pa LM 60B": "palm-60b", "UL2 20B": "ul2-20b",
    "Magister22, T5 11B": "magister22-t5-11b", "Shridhar22, GPT 6B": "shridhar22-gpt-6b", "Ho22, GPT 6B": "ho22-gpt-6b",
    "Flan T5-XXL 11B": "flan-t5-xxl", "Flan T5-XL 3B": "flan-t5-xl", "Flan T5-Large 760M": "flan-t5-large", "Flan T5-Base 250M": "flan-t5-base",
}
SPEC_PARAMS = {"11B": "flan-t5-xxl", "3B": "flan-t5-xl", "760M": "flan-t5-large", "250M": "flan-t5-base"}
T2_LABELS = {("Flan T5", "3B"): "flan-t5-xl", ("T5", "3B"): "t5-3b", ("Flan T5", "760M"): "flan-t5-large",
             ("T5", "760M"): "t5-large", ("Flan T5", "250M"): "flan-t5-base", ("T5", "250M"): "t5-base"}
T3_MODELS = {"Flan T5 3B": "flan-t5-xl", "Flan T5 Large": "flan-t5-large", "Flan T5 Base": "flan-t5-base"}


@pytest.fixture(scope="module")
def text() -> str:
    if not TEXT.is_file():
        pytest.skip(f"the paper text is not at {TEXT}")
    return TEXT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paper():
    return load_paper()


def _value(token: str) -> float | None:
    return None if token in ("-", "?") else float(token)


def parse_table1(text: str) -> dict[str, dict[str, float | None]]:
    """Each row is printed as LABEL then six (value, delta) pairs; deltas only on specialized rows."""
    start = text.index("Models #Params. Acc. Acc. Acc. Acc. Acc. Acc.")
    body = text[start:text.index("denoted as M-A-S", start)]
    rows, spec_index = {}, 0
    label_re = "|".join(re.escape(label) for label in T1_LABELS) + r"|\+ Specialized (?:11B|3B|760M|250M)"
    for match in re.finditer(rf"({label_re}) ((?:{NUM} {NUM} ?){{6}})", body):
        label, cells = match.group(1), match.group(2).split()
        if label.startswith("+ Specialized"):
            row = SPEC_PARAMS[label.split()[-1]] + " specialized"
            spec_index += 1
        else:
            row = T1_LABELS[label]
        values = [_value(t) for t in cells[0::2]]
        deltas = [_value(t) for t in cells[1::2]]
        rows[row] = dict(zip(TABLE_COLUMNS["table1"], values))
        rows[row]["_deltas"] = deltas
    assert spec_index == 4
    return rows


def test_file_loads_and_has_exactly_the_issue_rows_and_columns(paper):
    raw = json.loads(PAPER_PATH.read_text(encoding="utf-8"))
    for table in ("table1", "table2", "table3"):
        assert list(raw[table]) == list(TABLE_ROWS[table])
        assert all(list(cols) == list(TABLE_COLUMNS[table]) for cols in raw[table].values())
    required = ["code-davinci-002", *(r for m in ("xxl", "xl", "large", "base") for r in (f"flan-t5-{m}", f"flan-t5-{m} specialized"))]
    assert set(required) <= set(raw["table1"])
    assert raw["source"]["arxiv"] == "2301.12726" and "Specializing Smaller Language Models" in raw["source"]["title"]
    assert len(paper.cells) == 15 * 6 + 6 * 2 + 6 * 2


def test_every_reproducible_cell_names_a_protocol_with_a_real_task(paper):
    tasks = {p.stem for p in (PAPER_PATH.parents[2] / "tasks").glob("*.yaml")}
    groups = {"mas_cot_spec", "mas_cot_spec_dev", "bbh_cot_spec", "bbh_ao_spec_faithful"}
    for cell in paper.cells.values():
        if cell.value is None:
            continue
        p = cell.protocol
        assert p is not None and p.evidence, cell.key
        if p.task is not None:
            assert p.task in tasks or p.task in groups, f"{cell.key}: no lm-eval task {p.task}"
            assert p.rule in ("faithful", "corrected", "bbh")
    teacher = paper.cell("table1", "code-davinci-002", "bbh_cot").protocol
    assert (teacher.task, teacher.rule, teacher.aggregate) == (None, "bbh", "mean_23")
    assert paper.cell("table1", "flan-t5-xl specialized", "gsm8k").protocol.task == "gsm8k_cot_spec"
    assert paper.cell("table1", "flan-t5-xl", "gsm8k").protocol.task == "gsm8k_cot_base_dev"
    assert paper.cell("table3", "flan-t5-xl mas-dev", "out_of_dist").protocol.selection == "mas_dev"
    assert paper.cell("table1", "lamda-137b", "gsm8k").protocol.quoted


def test_table1_matches_the_paper_text(text, paper):
    parsed = parse_table1(text)
    assert set(parsed) == set(TABLE_ROWS["table1"])
    for row, columns in parsed.items():
        for column in TABLE_COLUMNS["table1"]:
            assert paper.value("table1", row, column) == columns[column], f"table1 / {row} / {column}"


def test_table1_printed_deltas_are_specialized_minus_before(text, paper):
    parsed = parse_table1(text)
    for model in SPEC_PARAMS.values():
        for column, delta in zip(TABLE_COLUMNS["table1"], parsed[f"{model} specialized"]["_deltas"]):
            diff = paper.value("table1", f"{model} specialized", column) - paper.value("table1", model, column)
            assert round(diff, 1) == delta, f"{model} {column}"


def test_table2_matches_the_paper_text(text, paper):
    body = text[text.index("Table 2. GSM8K validation performance"):]
    found = {T2_LABELS[(m.group(1), m.group(2))]: (float(m.group(3)), float(m.group(4)))
             for m in re.finditer(r"(Flan T5|(?<!Flan )T5) (3B|760M|250M) (\d+\.\d+) Specialized (\d+\.\d+)", body[:600])}
    assert set(found) == set(TABLE_ROWS["table2"])
    for row, (before, after) in found.items():
        assert (paper.value("table2", row, "before"), paper.value("table2", row, "after")) == (before, after), row


def test_table3_matches_the_paper_text(text, paper):
    body = text[text.index("Model Selection In-dist Out-of-dist"):][:400]
    pattern = r"(Flan T5 3B|Flan T5 Large|Flan T5 Base) GSM8K Dev (\d+\.\d+) (\d+\.\d+) M-A-S Dev (\d+\.\d+) (-?\d+\.\d+) (\d+\.\d+) \+(\d+\.\d+)"
    matches = list(re.finditer(pattern, body))
    assert len(matches) == 3
    for m in matches:
        model = T3_MODELS[m.group(1)]
        g_in, g_out, m_in, d_in, m_out, d_out = map(float, m.groups()[1:])
        assert paper.value("table3", f"{model} gsm8k-dev", "in_dist") == g_in
        assert paper.value("table3", f"{model} gsm8k-dev", "out_of_dist") == g_out
        assert paper.value("table3", f"{model} mas-dev", "in_dist") == m_in
        assert paper.value("table3", f"{model} mas-dev", "out_of_dist") == m_out
        assert round(m_in - g_in, 1) == d_in and round(m_out - g_out, 1) == d_out


def test_captions_are_the_papers(text, paper):
    def squash(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    flat = squash(text)
    for caption in [*paper.captions.values(), *(f["caption"] for f in paper.figures.values())]:
        assert squash(caption) in flat, caption[:60]


def test_cross_table_consistency(paper):
    # Table 2's Flan-T5 "before" is Table 1's GSM8K "before"; Table 3's GSM8K-dev rows are Table 2's "after".
    for model in ("flan-t5-xl", "flan-t5-large", "flan-t5-base"):
        assert paper.value("table2", model, "before") == paper.value("table1", model, "gsm8k")
        assert paper.value("table3", f"{model} gsm8k-dev", "in_dist") == paper.value("table2", model, "after")


def test_helpers():
    assert published_halfwidth(27.1) == pytest.approx(0.05)
    assert published_halfwidth(0.73) == pytest.approx(0.005)
    assert published_halfwidth(13.0) == pytest.approx(0.05)
    assert size_in_params("760M") == 7.6e8 and size_in_params("3B") == 3e9


def _broken(tmp_path, mutate) -> Path:
    raw = json.loads(PAPER_PATH.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["table1"].pop("flan-t5-xl"), "table1: rows must be exactly"),
    (lambda r: r["table2"]["t5-3b"].update(middle=1.0), "table2.t5-3b: columns must be exactly"),
    (lambda r: r["table1"]["flan-t5-xl"].update(gsm8k=13), "table1.flan-t5-xl.gsm8k: 13: write the value as printed"),
    (lambda r: r["table1"]["flan-t5-xl"].update(gsm8k=135.0), "not a percentage"),
    (lambda r: r["protocol_of"]["table1"]["flan-t5-xl"].update(gsm8k="nope"), "names protocol 'nope'"),
    (lambda r: r["protocol_of"]["table1"]["flan-t5-xl"].update(gsm8k=None), "needs a protocol"),
    (lambda r: r["protocols"]["spec_gsm8k"].update(rule="acc_faithful"), "protocols.spec_gsm8k.rule: 'acc_faithful' is not allowed"),
    (lambda r: r["protocols"]["spec_gsm8k"].update(splitt="x"), "unknown field(s) 'splitt'"),
])
def test_malformed_paper_file_names_the_field(tmp_path, mutate, message):
    with pytest.raises(DataError, match=re.escape(message)):
        load_paper(_broken(tmp_path, mutate))


def test_dev_values_are_k_over_500_not_k_over_200(paper):
    # docs/reports.md: the paper's "500 instances as the validation set" (Sec. 4.1), not the code's 200
    dev = [paper.value("table2", r, "after") for r in TABLE_ROWS["table2"]]
    dev += [paper.value("table3", r, "in_dist") for r in TABLE_ROWS["table3"]]
    assert all(abs(v * 5 - round(v * 5)) < 1e-9 for v in dev)
    assert not all(abs(v * 2 - round(v * 2)) < 1e-9 for v in dev)

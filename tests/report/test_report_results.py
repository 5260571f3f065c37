"""The results-file schema: a good file loads; each kind of mistake names the file and field."""

from __future__ import annotations

import copy
import json
import re

import pytest
from conftest import make_cell, results_dict, schema2

from harness.errors import DataError
from harness.report.results import effective_n, load_results, parse_results


def test_sample_file_loads(write_results):
    data = results_dict()
    loaded = load_results(write_results(data))
    assert loaded.table == "table1" and loaded.profile == "paper"
    assert len(loaded.cells) == len(data["cells"]) and loaded.curves and loaded.fig4
    cell = loaded.cell("table1/flan-t5-xl specialized/gsm8k")
    assert cell.value == 22.9 and cell.n == (1319,) and cell.protocol.task == "gsm8k_cot_spec"
    bbh = loaded.cell("table1/flan-t5-xl/bbh_cot")
    assert bbh.n == (250,) * 27 and bbh.protocol.aggregate == "mean_27"


def test_effective_n_of_an_unweighted_mean():
    assert effective_n((1319,)) == 1319
    assert effective_n((250,) * 27) == pytest.approx(250 * 27)
    # M-A-S test: 400, 2,305, 1,000 -> 9 / (1/400 + 1/2305 + 1/1000)
    assert effective_n((400, 2305, 1000)) == pytest.approx(9 / (1 / 400 + 1 / 2305 + 1 / 1000))


def _with(mutate):
    data = results_dict(with_figures=True)
    mutate(data)
    return data


CASES = [
    (lambda d: d.pop("schema"), "schema: missing"),
    (lambda d: d.update(schema=3), "schema: 3 is not supported"),
    (lambda d: d.update(table="table4"), "table: 'table4' is not allowed; choose one of: table1, table2, table3, figures"),
    (lambda d: d.update(profile="gpu"), "profile: 'gpu' is not allowed; choose one of: cpu, rehearsal, paper"),
    (lambda d: d.update(cels=[]), "unknown field(s) 'cels'"),
    (lambda d: d["cells"][2].update(row="flan-t5-xxxl"), "cells[2].row: 'flan-t5-xxxl' is not allowed"),
    (lambda d: d["cells"][0].update(column="gsm8k_test"), "cells[0].column: 'gsm8k_test' is not allowed"),
    (lambda d: d["cells"][0].update(value=122.4), "cells[0].value: 122.4 is not a percentage"),
    (lambda d: d["cells"][0].update(value="22.4"), "cells[0].value: expected a percentage"),
    (lambda d: d["cells"][0].pop("value"), "cells[0].value: missing"),
    (lambda d: d["cells"][0].update(n=0), "cells[0].n: expected a positive item count"),
    (lambda d: d["cells"][0].update(n=[]), "cells[0].n: expected a positive item count"),
    (lambda d: d["cells"][0].update(n=True), "cells[0].n: expected integer or list, got boolean True"),
    (lambda d: d["cells"][0]["protocol"].update(rule="acc_faithful"), "cells[0].protocol.rule: 'acc_faithful' is not allowed; choose one of: faithful, corrected, bbh"),
    (lambda d: d["cells"][0]["protocol"].pop("split"), "cells[0].protocol.split: missing"),
    (lambda d: d["cells"][0].pop("run"), "cells[0].run: missing"),
    (lambda d: d["cells"].append(copy.deepcopy(d["cells"][0])), "is already given by cells[0]"),
    (lambda d: d["curves"][1].update(matching="kl"), "curves[1].matching: 'kl' is not allowed"),
    (lambda d: d["curves"][1].update(examples=-1), "curves[1].examples: must be >= 0"),
    (lambda d: d["fig4"][0].update(test_format="few_shot"), "fig4[0].test_format: 'few_shot' is not allowed"),
    (lambda d: d.update(seeds={"train": "zero"}), "seeds.train: expected an integer seed"),
    (lambda d: d.update(tolerance={"z": -1}), "tolerance.z: must be >= 0"),
    (lambda d: d.update(tolerance={"sigma": 2}), "unknown field(s) 'sigma'"),
]


@pytest.mark.parametrize("mutate, message", CASES)
def test_errors_name_the_file_and_field(write_results, mutate, message):
    path = write_results(_with(mutate))
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_results(path)
    assert str(err.value).startswith(str(path) + ": ")


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="no such results file"):
        load_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 1,\n "table": }', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: line 2: not valid JSON"):
        load_results(bad)
    with pytest.raises(DataError, match="expected an object"):
        parse_results([], "x.json")


def test_minimal_file_and_other_tables_cells():
    minimal = parse_results({"schema": 1, "table": "figures", "profile": "cpu"})
    assert minimal.cells == [] and minimal.provenance == {} and minimal.seeds == {}
    mixed = parse_results({"schema": 1, "table": "table1", "profile": "cpu",
                           "cells": [make_cell("table2", "t5-base", "after", 3.0, n=5, limit=5)]})
    assert mixed.cells[0].table == "table2" and mixed.cells[0].protocol.limit == 5


def test_the_documented_example_is_valid():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"```json\n(.*?)```", doc, re.S).group(1))
    loaded = parse_results(example, "docs/reports.md")
    assert loaded.cells[0].key == "table1/flan-t5-xl specialized/gsm8k" and loaded.curves and loaded.fig4


# --- schema 2 ---------------------------------------------------------------------------------


def test_schema2_file_loads():
    loaded = parse_results(schema2(results_dict()), "r.json")
    assert loaded.schema == 2
    cell = loaded.cell("table1/flan-t5-xl specialized/asdiv")
    assert (cell.selection.rule, cell.selection.candidates, cell.selection.checkpoint) == ("mas-dev", 13, "runs/train/x/checkpoints/iter_60000")
    assert (cell.precision, cell.launcher, cell.teacher) == ("bf16", "accelerate launch: 8 processes, fsdp", "authors")
    assert cell.clean.value == pytest.approx(cell.value - 1.0) and cell.clean.n == (2005,)
    base = loaded.cell("table1/flan-t5-xl/gsm8k")
    assert base.selection is None and base.teacher is None and base.clean is None and base.precision == "fp32"
    authors = loaded.teacher_data["authors"]
    assert authors.kind == "authors-pickles" and authors.files["in_context_chain_of_thought.pkl"]["records"] == 120
    assert loaded.teacher_data["qwen"].setting == "corrected" and loaded.teacher_data["qwen"].files is None
    assert len(loaded.losses) == 20 and loaded.losses[0].matching == "distribution" and loaded.not_run == []


def test_schema1_files_still_load_without_the_new_fields():
    loaded = parse_results(results_dict(), "r.json")
    assert loaded.schema == 1 and loaded.losses == [] and loaded.not_run == [] and loaded.teacher_data == {}
    assert all(c.selection is None and c.clean is None for c in loaded.cells)


def test_a_schema2_field_in_a_schema1_file_says_which_schema_it_needs():
    data = results_dict()
    data["cells"][0]["precision"] = "fp32"
    with pytest.raises(DataError, match=re.escape('cells[0].precision: a schema-2 field, but this file says schema 1 (write "schema": 2)')):
        parse_results(data, "r.json")
    with pytest.raises(DataError, match=re.escape("r.json: losses: a schema-2 field")):
        parse_results({**results_dict(), "losses": []}, "r.json")


def _spec_cell(d: dict, row: str = "flan-t5-xl specialized", column: str = "gsm8k") -> dict:
    return next(c for c in d["cells"] if c["row"] == row and c["column"] == column and c["table"] == "table1")


def _index(d: dict, row: str = "flan-t5-xl specialized", column: str = "gsm8k") -> int:
    return d["cells"].index(_spec_cell(d, row, column))


NOT_RUN = {"table": "table1", "row": "flan-t5-xxl specialized", "stage": "plan", "reason": "needs 8 GPUs of 80 GB"}


def _borrowed(d: dict) -> None:
    """The sample run's loss logged under the distribution run: a curve borrowed from another run."""
    d["losses"][-1]["run"] = "runs/train/xl-distribution"


CASES2 = [
    (lambda d: _spec_cell(d)["selection"].update(rule="best"), "selection.rule: 'best' is not allowed; choose one of: last, gsm8k-dev, mas-dev"),
    (lambda d: _spec_cell(d)["selection"].update(candidates=0), "selection.candidates: must be >= 1"),
    (lambda d: _spec_cell(d)["selection"].update(epoch=2), "selection: unknown field(s) 'epoch'"),
    (lambda d: _spec_cell(d)["protocol"].update(selection="gsm8k_dev"), "selection.rule: 'mas-dev' contradicts protocol.selection 'gsm8k_dev'"),
    (lambda d: _spec_cell(d).update(precision="int8"), "precision: 'int8' is not allowed; choose one of: fp32, tf32, bf16, fp16"),
    (lambda d: _spec_cell(d).update(launcher=8), "launcher: expected string"),
    (lambda d: _spec_cell(d).update(teacher="codex"), "teacher: 'codex' is not a key of provenance.teacher_data (keys: authors, qwen)"),
    (lambda d: _spec_cell(d).update(clean={"value": 20.0, "n": [1000]}), "clean: only cells with a dev split inside their test set"),
    (lambda d: _spec_cell(d, column="asdiv").update(clean={"value": 120.0, "n": [2005]}), "clean.value: 120.0 is not a percentage"),
    (lambda d: _spec_cell(d, column="asdiv").update(clean={"value": 20.0}), "clean.n: missing"),
    (lambda d: d["not_run"].append({**NOT_RUN, "row": "flan-t5-xxxl"}), "not_run[0].row: 'flan-t5-xxxl' is not allowed"),
    (lambda d: d["not_run"].append({**NOT_RUN, "stage": "oom"}), "not_run[0].stage: 'oom' is not allowed; choose one of: plan, models"),
    (lambda d: d["not_run"].append({**NOT_RUN, "reason": " "}), "not_run[0].reason: say why the row did not run"),
    (lambda d: d["not_run"].extend([NOT_RUN, NOT_RUN]), "not_run[1]: table1/flan-t5-xxl specialized at stage plan is already given by [0]"),
    (lambda d: d["not_run"].append({**NOT_RUN, "table": "fig3", "row": ""}), "not_run[0].row: name the model or run whose curves are missing"),
    (lambda d: d["losses"][3].update(loss=float("nan")), "losses[3].loss: nan is not a training loss"),
    (lambda d: d["losses"][3].update(loss=-0.5), "losses[3].loss: -0.5 is not a training loss"),
    (lambda d: d["losses"][3].update(step=-1), "losses[3].step: must be >= 0"),
    (lambda d: d["losses"][3].update(step=0), "losses[3]: step 0 of run 'runs/train/xl-distribution' is already given by [0]"),
    (_borrowed, "losses[19].matching: run 'runs/train/xl-distribution' is 'distribution' at curves[0]"),
    (lambda d: d["curves"][0].update(model="flan-t5-base"), "curves[1].model: run 'runs/train/xl-distribution' is 'flan-t5-base' at curves[0]"),
    (lambda d: d["provenance"]["teacher_data"]["authors"].update(kind="codex"), "provenance.teacher_data.authors.kind: 'codex' is not allowed"),
    (lambda d: d["provenance"]["teacher_data"]["qwen"].update(setting="clean"), "provenance.teacher_data.qwen.setting: 'clean' is not allowed"),
    (lambda d: d["provenance"]["teacher_data"]["qwen"].pop("model"), "provenance.teacher_data.qwen.model: missing"),
    (lambda d: d["provenance"]["teacher_data"]["authors"]["files"]["zero_shot_chain_of_thought.pkl"].update(sha256="XYZ"),
     "provenance.teacher_data.authors.files.zero_shot_chain_of_thought.pkl.sha256: 'XYZ' is not a sha256"),
    (lambda d: d["provenance"]["teacher_data"]["authors"]["files"]["zero_shot_chain_of_thought.pkl"].update(bytes=-1),
     "files.zero_shot_chain_of_thought.pkl.bytes: must be >= 0"),
]


@pytest.mark.parametrize("mutate, message", CASES2)
def test_schema2_errors_name_the_file_and_field(write_results, mutate, message):
    data = schema2(results_dict())
    mutate(data)
    path = write_results(data)
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_results(path)
    assert str(err.value).startswith(str(path) + ": ")


def test_not_run_rows_of_figures_and_selection_rules():
    data = schema2(results_dict())
    data["not_run"] = [NOT_RUN, {"table": "fig3", "row": "flan-t5-base", "stage": "train", "reason": "given with --checkpoint"}]
    _spec_cell(data)["selection"] = {"rule": "last", "checkpoint": None, "candidates": None}
    loaded = parse_results(data, "r.json")
    assert [(r.table, r.row) for r in loaded.not_run] == [("table1", "flan-t5-xxl specialized"), ("fig3", "flan-t5-base")]
    assert loaded.not_run_of("table1", "flan-t5-xxl specialized")[0].reason == "needs 8 GPUs of 80 GB"
    assert loaded.cell("table1/flan-t5-xl specialized/gsm8k").selection.rule == "last"


def test_the_documented_schema2_example_is_valid():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc, re.S)]
    loaded = parse_results(next(e for e in examples if e.get("schema") == 2), "docs/reports.md")
    cell = loaded.cells[0]
    assert cell.selection.rule == "mas-dev" and cell.clean is not None and loaded.losses and loaded.not_run
    assert loaded.teacher_data[cell.teacher].kind == "authors-pickles"

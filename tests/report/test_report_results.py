"""The results-file schema: a good file loads; each kind of mistake names the file and field."""

from __future__ import annotations

import copy
import json
import re

import pytest
from conftest import make_cell, results_dict

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
    (lambda d: d.update(schema=2), "schema: 2 is not supported"),
    (lambda d: d.update(table="table4"), "table: 'table4' is not allowed; choose one of: table1, table2, table3, figures"),
    (lambda d: d.update(profile="gpu"), "profile: 'gpu' is not allowed; choose one of: cpu, paper"),
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

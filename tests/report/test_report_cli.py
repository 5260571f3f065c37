"""`report render | validate | teacher-row` through typer (the harness CLI registers this app)."""

from __future__ import annotations

import json

from conftest import results_dict, schema2
from typer.testing import CliRunner

from harness.errors import DataError
from harness.report.cli import app

runner = CliRunner()


def test_render_prints_the_files(write_results, tmp_path):
    path = write_results(results_dict("table2", with_figures=False))
    result = runner.invoke(app, ["render", str(path), "--out", str(tmp_path / "out"), "--no-teacher-row"])
    assert result.exit_code == 0, result.output
    # Figs. 3 and 4 have no data in these results: they are not drawn (the report says why)
    assert {line.rsplit("/", 1)[-1] for line in result.output.split()} == {
        "fig2.png", "table2.md", "table2.html", "table2.comparison.json"}


def test_validate(write_results):
    good = runner.invoke(app, ["validate", str(write_results(results_dict("table3")))])
    assert good.exit_code == 0 and "table3, paper profile: 12 cells, 24 curve points, 12 Fig. 4 points" in good.output
    data = results_dict("table3")
    data["cells"][0]["value"] = 0.5e3
    bad = runner.invoke(app, ["validate", str(write_results(data, "bad.json"))])
    assert isinstance(bad.exception, DataError) and "cells[0].value: 500.0 is not a percentage" in str(bad.exception)


def test_validate_schema2(write_results):
    good = runner.invoke(app, ["validate", str(write_results(schema2(results_dict("table1"))))])
    assert good.exit_code == 0, good.output
    assert "24 curve points, 12 Fig. 4 points; schema 2: 20 loss points, 0 rows not run, 2 teacher data entries" in good.output


def test_teacher_row(data_dir):
    result = runner.invoke(app, ["teacher-row", "--data-dir", str(data_dir), "--json", "--check"])
    assert result.exit_code == 0, result.output
    columns = {c["column"]: c for c in json.loads(result.output)["columns"]}
    assert round(columns["bbh_ao"]["bbh_mean_23"], 1) == columns["bbh_ao"]["paper"] == 56.6
    assert round(columns["bbh_cot"]["bbh_mean_23"], 1) == columns["bbh_cot"]["paper"] == 73.9
    assert round(columns["bbh_cot"]["faithful_mean_23"], 2) == 76.61
    table = runner.invoke(app, ["teacher-row", "--data-dir", str(data_dir)])
    assert "bbh_cot" in table.output and "73.93" in table.output and "76.61" in table.output

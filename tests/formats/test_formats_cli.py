"""The chain on files: teacher store -> aligned targets -> formats, through the CLI."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from harness.cli import main


def _run(capsys, *args):
    try:
        main(list(args))
    except SystemExit as done:
        assert done.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_gold_store_to_formats(tmp_path, capsys, data_dir):
    store, aligned, out = tmp_path / "store", tmp_path / "aligned", tmp_path / "formats"
    _run(capsys, "teacher", "gold", str(store), "--tokenizer", "tiktoken:p50k_base", "--limit", "8")
    _run(capsys, "align", "run", str(store), str(aligned), "--setting", "faithful", "--workers", "1")
    stats = json.loads(_run(capsys, "formats", "build", "--store", str(store), "--aligned", str(aligned), "--output", str(out),
                            "--setting", "faithful"))
    cot = pq.read_table(sorted(out.glob("in_context_cot-*.parquet"))).to_pylist()
    assert len(cot) == 8 and all(r["student_ids"] and len(r["topk_ids"]) == len(r["student_ids"]) for r in cot)
    assert all(r["encoder_input"].count("Q: ") == 5 and r["encoder_input"].endswith("Let's think step by step") for r in cot)
    zs_ao = pq.read_table(sorted(out.glob("zero_shot_answer_only-*.parquet"))).to_pylist()
    assert len(zs_ao) == 8 and all(r["decoder_target"].startswith("The answer is ") and r["student_ids"] is None for r in zs_ao)
    assert stats["settings"]["setting"] == "faithful"
    # aligned for another setting: refused with the fix
    try:
        main(["formats", "build", "--store", str(store), "--aligned", str(aligned), "--output", str(tmp_path / "f2"), "--setting", "corrected"])
    except SystemExit as done:
        assert done.code == 2
    assert "--setting faithful" in capsys.readouterr().err

"""The training benchmark runs on the tiny arch and writes a well-formed report (no timing asserts:
performance is measured side by side by `python -m harness.train.bench`, never by a test)."""

from __future__ import annotations

import json

import pytest

from harness.benchmarking import LoadMeter, rotations, spread
from harness.train import bench

TINY = ["--arch", "tiny", "--batch", "2", "--source-len", "16", "--target-len", "8", "--steps", "1", "--warmup", "0", "--repeats", "1"]
PAIR = ["--providers", "ours-sample,ours-distribution", "--repeats", "2"]  # no Trainer: quicker


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Seq2SeqTrainer sets accelerate's process-wide state; leave none behind for other tests."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def machine(monkeypatch, other_per_read: float):
    """The bench's load meter on a fake machine: each reading 1 s later, others took `other_per_read`
    CPU s of its 2 cores meanwhile (0.2 -> 10% of the machine)."""
    clock = iter(range(10**6))
    state = {"other": 0.0}

    def busy():
        state["other"] += other_per_read
        return 500.0 + state["other"]

    monkeypatch.setattr(bench, "LoadMeter", lambda: LoadMeter(busy=busy, own=lambda: 0.0, clock=lambda: float(next(clock)), cores=2))


def test_bench_writes_report(tmp_path, capsys, monkeypatch):
    machine(monkeypatch, 0.0)
    assert bench.main(TINY + ["--repeats", "2", "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["README.md", "bench-" + json.loads((tmp_path / files[1]).read_text())["device_slug"] + ".json"]
    report = json.loads((tmp_path / files[1]).read_text())
    m = report["manifest"]
    assert report["device"] == "cpu" and m["git_commit"] and m["packages"]["torch"] and m["cpu"]
    assert m["command"].startswith("python -m harness.train.bench --arch tiny --batch 2 --source-len 16 --target-len 8 ")
    assert "--repeats 2" in m["command"] and "--providers ours-sample,ours-distribution,authors,hf-trainer" in m["command"]
    s = report["settings"]
    assert (s["arch"], s["batch"], s["source_len"], s["target_len"], s["k"], s["steps"], s["repeats"]) == ("tiny", 2, 16, 8, 5, 1, 2)
    assert 2 <= s["target_tokens_per_step"] <= 16
    assert report["protocol"]["orders"] == rotations(bench.PROVIDERS, 2)
    assert len(report["protocol"]["load_per_repeat"]) == 2 and report["protocol"]["load"]["other_cpu_s"] == 0.0
    assert report["verdict"]["result"] is True
    assert list(report["providers"]) == list(bench.PROVIDERS)
    for name, p in report["providers"].items():
        assert p["status"] == "ok", name
        assert len(p["repeat_median_ms"]) == 2 and [len(x) for x in p["step_ms"]] == [1] * 2
        assert p["ms_per_step"]["n"] == 2 and p["ms_per_step"]["min"] <= p["ms_per_step"]["median"] <= p["ms_per_step"]["max"]
        assert p["tokens_per_s"] == pytest.approx(s["target_tokens_per_step"] / p["ms_per_step"]["median"] * 1e3)
        assert p["peak_memory_bytes"] is None  # CPU
    for key, (num, den) in bench.RATIOS.items():  # each ratio is formed inside a repeat, then summarised
        per_repeat = [a / b for a, b in zip(report["providers"][num]["repeat_median_ms"], report["providers"][den]["repeat_median_ms"])]
        assert report["ratios"][key]["median"] == pytest.approx(spread(per_repeat).median)
        assert report["ratios"][key]["min"] == pytest.approx(min(per_repeat))
    assert report["peak_memory_note"]
    assert all(v is None for v in report["targets_met"].values())  # targets are judged on a GPU only
    assert report["rerun_check"] is None  # nothing earlier in the folder
    readme = (tmp_path / "README.md").read_text()
    for name in bench.PROVIDERS:
        assert f"| {name} |" in readme
    assert m["device"] in readme and m["command"] in readme and "Result: measured on a quiet machine" in readme
    assert "GPU numbers pending" in readme and bench.GPU_COMMAND in readme
    assert "say little about GPU throughput" in readme
    assert "wrote" in capsys.readouterr().out


def test_a_loaded_machine_prints_but_writes_nothing(tmp_path, capsys, monkeypatch):
    machine(monkeypatch, 0.6)  # 30% of the machine
    assert bench.main(TINY + PAIR + ["--out", str(tmp_path / "r")]) == 3
    out, err = capsys.readouterr()
    assert "bench: ours-sample:" in out and "bench: distribution_over_sample_step_time:" in out  # the numbers are shown
    assert "not kept as a result" in err and "30.0% of the machine" in err and "--allow-load" in err
    assert not (tmp_path / "r").exists()


def test_allow_load_writes_it_labelled_and_a_rerun_is_checked(tmp_path, capsys, monkeypatch):
    machine(monkeypatch, 0.6)
    assert bench.main(TINY + PAIR + ["--allow-load", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("bench-*.json")
    first = json.loads(path.read_text())
    assert first["verdict"]["result"] is False and first["verdict"]["write"] is True
    assert "Measured under load, not a result" in (tmp_path / "README.md").read_text()
    assert "not a result" in capsys.readouterr().out
    machine(monkeypatch, 0.0)
    assert bench.main(TINY + PAIR + ["--out", str(tmp_path)]) == 0
    second = json.loads(path.read_text())
    check = second["rerun_check"]
    assert check["previous_was_result"] is False and check["previous_commit"] == first["manifest"]["git_commit"]
    (c,) = check["figures"].values()
    before = first["ratios"]["distribution_over_sample_step_time"]
    assert c["previous"] == {k: before[k] for k in ("median", "min", "max")}
    assert c["within_previous_spread"] == (before["min"] <= c["now"] <= before["max"])
    assert second["history"] == []  # the loaded first run is no earlier quiet run
    readme = (tmp_path / "README.md").read_text()
    assert "Rerun check against the previous report" in readme and "itself not a result" in readme
    assert "distribution / sample step time" in readme and "Earlier quiet runs" not in readme
    assert "Result: measured on a quiet machine" in readme
    assert "bench: rerun check distribution_over_sample_step_time:" in capsys.readouterr().out
    # a third run of the same settings keeps the quiet second one
    assert bench.main(TINY + PAIR + ["--out", str(tmp_path)]) == 0
    third = json.loads(path.read_text())
    assert [h["commit"] for h in third["history"]] == [second["manifest"]["git_commit"]]
    assert third["history"][0]["figures"]["distribution_over_sample_step_time"]["median"] == \
        second["ratios"]["distribution_over_sample_step_time"]["median"]
    assert third["rerun_check"]["previous_was_result"] is True and "Earlier quiet runs" in (tmp_path / "README.md").read_text()
    # other settings: not compared
    assert bench.main(TINY + PAIR + ["--k", "3", "--out", str(tmp_path)]) == 0
    fourth = json.loads(path.read_text())
    assert fourth["rerun_check"] is None and fourth["history"] == []
    assert "Rerun check" not in (tmp_path / "README.md").read_text()


def test_profile_prints_one_step_per_provider(tmp_path, capsys):
    assert bench.main(TINY + ["--providers", "ours-sample,hf-trainer", "--profile", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== ours-sample: step 1 took" in out and "== hf-trainer: step 1 took" in out and "aten::mm" in out
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_bench_fused_head_and_subset(tmp_path, monkeypatch):
    machine(monkeypatch, 0.0)
    assert bench.main(TINY + ["--providers", "ours-distribution", "--head", "fused", "--k", "3", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("bench-*.json")
    report = json.loads(path.read_text())
    (p,) = report["providers"].values()
    assert p["head"] == "fused linear+KL" and p["tokens_per_s"] > 0
    assert all(v is None for v in report["ratios"].values())
    assert "| ours-distribution |" in (tmp_path / "README.md").read_text()


def test_authors_target_is_their_dense_target():
    """One-hot pad everywhere, each position's dict written over it, one-hot EOS; equals the sparse top-k."""
    import torch

    from kernels.reference import dense_target_from_topk

    batch, dicts = bench.synthetic_batch(3, 5, 6, 4, seed=1)
    dense = bench.authors_target(dicts, 3, 6)
    mask = batch.labels != -100
    sparse = dense_target_from_topk(batch.topk_ids.reshape(-1, 4), batch.topk_probs.reshape(-1, 4), bench.VOCAB)
    assert torch.allclose(dense.reshape(-1, bench.VOCAB)[mask.reshape(-1)], sparse[mask.reshape(-1)])
    assert (dense[~mask][:, bench.PAD] == 1).all()
    assert (batch.topk_ids[..., 0][mask] == batch.labels[mask]).all()  # the target token first


@pytest.mark.parametrize("args, option", [
    (["--steps", "0"], "--steps"),
    (["--target-len", "1"], "--target-len"),
    (["--k", "65"], "--k"),
    (["--warmup", "-1"], "--warmup"),
    (["--providers", "ours-sample,deepspeed"], "--providers"),
    (["--repeats", "0"], "--repeats"),
    (["--max-load", "2"], "--max-load"),
])
def test_bad_options(tmp_path, capsys, args, option):
    assert bench.main(TINY + args + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and option in err
    assert not (tmp_path / "r").exists()


def test_bad_choice_and_missing_cuda(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--arch", "flan-t5-huge"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert bench.main(TINY + ["--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "no CUDA device" in capsys.readouterr().err

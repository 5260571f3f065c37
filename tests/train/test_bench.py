"""The training benchmark runs on the tiny arch and writes a well-formed report (no timing asserts:
performance is measured side by side by `python -m harness.train.bench`, never by a test)."""

from __future__ import annotations

import json

import pytest

from harness.train import bench

TINY = ["--arch", "tiny", "--batch", "2", "--source-len", "16", "--target-len", "8", "--steps", "1", "--warmup", "0"]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Seq2SeqTrainer sets accelerate's process-wide state; leave none behind for other tests."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_bench_writes_report(tmp_path, capsys):
    assert bench.main(TINY + ["--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["README.md", "bench-" + json.loads((tmp_path / files[1]).read_text())["device_slug"] + ".json"]
    report = json.loads((tmp_path / files[1]).read_text())
    assert report["device"] == "cpu" and report["manifest"]["git_commit"] and report["manifest"]["packages"]["torch"]
    s = report["settings"]
    assert (s["arch"], s["batch"], s["source_len"], s["target_len"], s["k"], s["steps"]) == ("tiny", 2, 16, 8, 5, 1)
    assert 2 <= s["target_tokens_per_step"] <= 16
    assert list(report["providers"]) == list(bench.PROVIDERS)
    for name, p in report["providers"].items():
        assert p["status"] == "ok", name
        assert p["median_ms"] > 0 and p["tokens_per_s"] > 0 and p["timed_steps"] == 1
        assert p["peak_memory_bytes"] is None  # CPU
    assert report["peak_memory_note"]
    assert all(v > 0 for v in report["ratios"].values())
    assert all(v is None for v in report["targets_met"].values())  # targets are judged on a GPU only
    readme = (tmp_path / "README.md").read_text()
    for name in bench.PROVIDERS:
        assert f"| {name} |" in readme
    assert report["manifest"]["device"] in readme
    assert "GPU numbers pending" in readme and bench.GPU_COMMAND in readme
    assert "say little about GPU throughput" in readme
    assert "wrote" in capsys.readouterr().out


def test_bench_fused_head_and_subset(tmp_path):
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

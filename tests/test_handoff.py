"""Sealed hand-offs between stages (issue 21): every reader refuses an incomplete, damaged, foreign
or other-version input in one line, through the real commands on a small real chain
(gold teacher store -> align -> formats -> train)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from harness import handoff
from harness.cli import main
from harness.errors import DataError
from harness.schemas import ALIGNED, FORMATS, TEACHER_STORE


def run_cli(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    return exited.value.code or 0, capsys.readouterr().err


def one_line(err: str, *names: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, data_dir):
    """A sealed gold store (8 questions, p50k tokens), its alignment and formats, built by the CLI."""
    root = tmp_path_factory.mktemp("chain")
    for args in (["teacher", "gold", root / "store", "--tokenizer", "tiktoken:p50k_base", "--limit", "8"],
                 ["align", "run", root / "store", root / "aligned", "--workers", "1", "--chunk-size", "4", "--shard-rows", "4"],
                 ["formats", "build", "--store", root / "store", "--aligned", root / "aligned", "--output", root / "formats",
                  "--formats", "zero_shot_answer_only,zero_shot_cot"]):
        try:
            main([str(a) for a in args])
        except SystemExit as done:
            assert done.code in (0, None)
    return root


def copy(chain: Path, tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(chain / name, tmp_path / name)
    return tmp_path


def first_shard(folder: Path, contract) -> Path:
    return folder / sorted(handoff.read_manifest(folder).shards)[0]


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# --- the manifest ----------------------------------------------------------------------------------


def test_every_output_is_sealed_with_its_shards_and_inputs(chain):
    store = handoff.verify(chain / "store", TEACHER_STORE, hashes=True)
    aligned = handoff.verify(chain / "aligned", ALIGNED, hashes=True)
    formats = handoff.verify(chain / "formats", FORMATS, hashes=True)
    assert store.complete and store.rows == 8 and len(aligned.shards) == 2
    assert aligned.inputs["teacher-store"]["content"] == store.content
    assert formats.inputs["teacher-store"]["content"] == store.content and formats.inputs["aligned"]["content"] == aligned.content
    assert all(name.startswith(("zero_shot_answer_only-", "zero_shot_cot-")) for name in formats.shards)


@pytest.mark.parametrize("damage, words", [(truncate, "corrupted"), (flip_a_bit, "corrupted: its sha256")])
def test_a_damaged_shard_is_named(chain, tmp_path, damage, words):
    folder = copy(chain, tmp_path, "aligned") / "aligned"
    shard = first_shard(folder, ALIGNED)
    damage(shard)
    with pytest.raises(DataError, match=f"{shard.name}: {words}") as err:
        for name, _ in handoff.read_shards(folder, ALIGNED):
            pass
    assert len(str(err.value).splitlines()) == 1


def test_unsealed_and_foreign_outputs_are_refused(chain, tmp_path):
    folder = copy(chain, tmp_path, "formats") / "formats"
    with pytest.raises(DataError, match="a formats output, not aligned"):
        handoff.verify(folder, ALIGNED)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(DataError, match="incomplete formats: `harness formats build` started but did not finish"):
        handoff.verify(folder, FORMATS)
    (folder / "manifest.json").unlink()
    with pytest.raises(DataError, match="incomplete formats: no manifest.json"):
        handoff.verify(folder, FORMATS)


def test_a_shard_the_manifest_does_not_list_is_refused(chain, tmp_path):
    folder = copy(chain, tmp_path, "formats") / "formats"
    shutil.copy(first_shard(folder, FORMATS), folder / "zero_shot_cot-00099.parquet")
    with pytest.raises(DataError, match="zero_shot_cot-00099.parquet: a shard the manifest does not list"):
        handoff.verify(folder, FORMATS)


# --- every reader, through its command ---------------------------------------------------------------


@pytest.mark.parametrize("damage", [truncate, flip_a_bit], ids=["truncated", "bit-flipped"])
def test_a_damaged_store_is_named_by_every_reader(chain, tmp_path, capsys, damage):
    root = copy(chain, tmp_path, "store", "aligned")
    shard = first_shard(root / "store", TEACHER_STORE)
    damage(shard)
    for args in (["align", "run", root / "store", root / "aligned2", "--workers", "1"],
                 ["formats", "build", "--store", root / "store", "--output", root / "formats2"],
                 ["teacher", "gold", root / "store", "--tokenizer", "tiktoken:p50k_base", "--limit", "8"]):  # the store's own writer, rerun
        code, err = run_cli(capsys, *args)
        assert code == 1, args
        one_line(err, shard.name, "corrupted")


@pytest.mark.parametrize("damage", [truncate, flip_a_bit], ids=["truncated", "bit-flipped"])
def test_a_refused_rerun_leaves_the_damaged_output_sealed(chain, tmp_path, capsys, damage):
    """The writer rerun over its damaged output says "corrupted" (size and sha256 are checked before the
    Parquet is parsed) and changes nothing: the manifest stays sealed, so a reader after it still names
    the damaged shard instead of calling the output unfinished (the fault table, issue 21)."""
    root = copy(chain, tmp_path, "store", "aligned")  # the aligned copy's settings name the chain's store: align from it
    for folder, rerun, reader in (
            ("store", ["teacher", "gold", root / "store", "--tokenizer", "tiktoken:p50k_base", "--limit", "8"],
             ["align", "run", root / "store", root / "aligned2", "--workers", "1"]),
            ("aligned", ["align", "run", chain / "store", root / "aligned", "--workers", "1", "--chunk-size", "4", "--shard-rows", "4"],
             ["formats", "build", "--store", chain / "store", "--aligned", root / "aligned", "--output", root / "f"])):
        shard = first_shard(root / folder, None)
        damage(shard)
        for args in (rerun, reader):
            code, err = run_cli(capsys, *args)
            assert code == 1, args
            one_line(err, str(shard), "corrupted")
        assert handoff.read_manifest(root / folder).complete


def test_damaged_aligned_targets_are_named_by_formats_build(chain, tmp_path, capsys):
    root = copy(chain, tmp_path, "store", "aligned")
    shard = first_shard(root / "aligned", ALIGNED)
    flip_a_bit(shard)
    code, err = run_cli(capsys, "formats", "build", "--store", root / "store", "--aligned", root / "aligned", "--output", root / "f")
    assert code == 1
    one_line(err, shard.name, "corrupted")


@pytest.mark.parametrize("damage", [truncate, flip_a_bit], ids=["truncated", "bit-flipped"])
def test_damaged_formats_are_named_by_train(chain, tmp_path, capsys, damage):
    root = copy(chain, tmp_path, "formats")
    shard = first_shard(root / "formats", FORMATS)
    damage(shard)
    code, err = run_cli(capsys, "train", "--config", "cpu-tiny", "--formats", root / "formats", "--output", root / "run",
                        "--set", "formats=[zero_shot_answer_only,zero_shot_cot]", "--no-eval", "--quiet")
    assert code == 1
    one_line(err, shard.name, "corrupted")
    assert not (root / "run" / "settings.json").exists()  # refused before the run folder was claimed


def test_a_killed_formats_build_is_refused_by_train(chain, tmp_path, capsys):
    root = copy(chain, tmp_path, "formats")
    (root / "formats" / "manifest.json").unlink()  # killed before it sealed its output
    code, err = run_cli(capsys, "train", "--config", "cpu-tiny", "--formats", root / "formats", "--output", root / "run", "--no-eval")
    assert code == 1
    one_line(err, "incomplete formats output", "no manifest.json")


def test_aligned_targets_of_another_store_are_refused(chain, tmp_path, capsys):
    other = tmp_path / "other-store"
    code, _ = run_cli(capsys, "teacher", "gold", other, "--tokenizer", "tiktoken:p50k_base", "--limit", "6")
    assert code == 0
    code, err = run_cli(capsys, "formats", "build", "--store", other, "--aligned", chain / "aligned", "--output", tmp_path / "f")
    assert code == 1
    one_line(err, "was aligned from other teacher data", str(other))


def test_a_second_align_run_into_the_same_output_is_refused(chain, tmp_path, capsys):
    with handoff.OutputFolder(tmp_path / "aligned", ALIGNED) as busy:
        busy.lock()  # the first run, still writing
        code, err = run_cli(capsys, "align", "run", chain / "store", tmp_path / "aligned", "--workers", "1")
    assert code == 2
    one_line(err, "being written by another process")


def test_outputs_that_cannot_be_written_are_found_before_any_work(chain, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    code, err = run_cli(capsys, "align", "run", chain / "store", target, "--workers", "1")
    assert code == 2
    one_line(err, str(target), "not a folder")
    code, err = run_cli(capsys, "formats", "build", "--store", chain / "store", "--output", target)
    assert code == 2
    one_line(err, str(target), "not a folder")


def test_a_schema_version_change_is_refused_by_each_reader(chain, tmp_path, capsys):
    root = copy(chain, tmp_path, "store", "aligned", "formats")
    readers = {
        TEACHER_STORE: ["align", "run", root / "store", root / "aligned2", "--workers", "1"],
        ALIGNED: ["formats", "build", "--store", root / "store", "--aligned", root / "aligned", "--output", root / "f2"],
        FORMATS: ["train", "--config", "cpu-tiny", "--formats", root / "formats", "--output", root / "run", "--no-eval"],
    }
    for contract, args in readers.items():
        old = contract.version
        object.__setattr__(contract, "version", old + 1)  # this harness now reads the next version
        try:
            code, err = run_cli(capsys, *args)
        finally:
            object.__setattr__(contract, "version", old)
        assert code == 1, args
        one_line(err, f"{contract.name} schema v{old}", f"reads v{old + 1}")


def test_schema_check_names_the_columns_that_differ(tmp_path):
    table = pa.table({"question_id": ["a"]})
    path = tmp_path / "part-00000.parquet"
    info = handoff.write_parquet(path, table, TEACHER_STORE)
    with pytest.raises(DataError, match="schema differs from the teacher store schema v2: column 'sample_index' missing"):
        handoff.read_table(path, contract=TEACHER_STORE, expect=info)

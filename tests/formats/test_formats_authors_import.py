"""Importing the authors' released format pickles: made-up records in the documented layout
(authors-code-protocol.md §1.3), never text from GSM8K or the authors' prompts."""

from __future__ import annotations

import collections
import json
import os
import pickle

import pyarrow.parquet as pq
import pytest
from formats_testutil import item

from harness import safe_pickle
from harness.cli import main
from harness.config import data_file
from harness.errors import DataError, ResumeError
from harness.formats.authors_import import SETTING, T5Pieces, import_authors_formats
from harness.templates import strip_colons

OD = collections.OrderedDict

# Made-up questions (GSM8K-shaped, ids gsm8k/train/{i}); 2 has no records.
EXAMPLES = [
    item(0, "Tom has 3 red balls: he buys 2 more. How many balls does he have?", "3 + 2 = <<3+2=5>>5\n#### 5"),
    item(1, "Lia reads 4 pages a day. How many pages does she read in 6 days?", "4 * 6 = <<4*6=24>>24\n#### 24"),
    item(2, "A jar has 9 plums and 3 are eaten. How many are left?", "9 - 3 = <<9-3=6>>6\n#### 6"),
]
COT = {  # question index -> the correct CoT samples (their ": " already deleted)
    0: ["Tom starts with 3 balls.\nHe buys 2 more, so 3 + 2 = 5.\nThe answer is 5", "3 + 2 = 5 balls.\nThe answer is 5"],
    1: ["Lia reads 4 pages each day.\nIn 6 days 4 * 6 = 24.\nThe answer is 24"],
}
DEMOS_AO = "Q: Demo question one?\nA: The answer is 1\n\nQ: Demo question two?\nA: The answer is 2\n\n"
DEMOS_COT = "Q: Demo question one?\nLet's think step by step\nOne step.\nThe answer is 1\n\n"


@pytest.fixture(scope="module")
def sp():
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(data_file("tokenizers/t5/spiece.model")))


def soft_steps(sp, answer: str, soft: dict[str, list[tuple[str, float]]] | None = None) -> list[dict]:
    """The authors' per_step_probs for `answer`: one-hot everywhere, except pieces named in `soft`,
    which get an OrderedDict (the piece first, then the given alternatives)."""
    soft = soft or {}
    out = []
    for piece in sp.encode(answer, out_type=str):
        if piece in soft:
            out.append(OD([(piece, 0.7), *soft[piece]]))
        else:
            out.append({piece: 1.0})
    return out


SOFT = {"▁balls": [("▁ball", 0.1), ("▁toys", 0.05)], "▁pages": [("▁page", 0.2), ("▁books", 0.0), ("▁lines", 0.01), ("▁words", 0.01), ("▁days", 0.01)]}


def records(sp) -> dict[str, list[dict]]:
    out = {name: [] for name in ("zero_shot_answer_only", "zero_shot_chain_of_thought", "in_context_answer_only", "in_context_chain_of_thought")}
    for i, cots in COT.items():
        ex = EXAMPLES[i]
        q = strip_colons(ex.question)
        gold = "Answer: " + ex.gold_raw + "\n"
        final = f"The answer is {ex.answer}"
        base = {"answer_gold": gold, "answer_label": 1}
        out["zero_shot_answer_only"].append({**base, "question": f"Q: {q} A:", "answer": final, "type": "zero_shot_answer_only"})
        out["in_context_answer_only"].append({**base, "question": f"{DEMOS_AO}Q: {q}\nA:", "answer": final, "type": "in_context_answer_only"})
        for cot in cots:
            steps = soft_steps(sp, cot, SOFT)
            out["zero_shot_chain_of_thought"].append({**base, "question": f"Q: {q}\nLet's think step by step", "answer": cot,
                                                      "per_step_probs": steps, "type": "zero_shot_chain_of_thought"})
            out["in_context_chain_of_thought"].append({**base, "question": f"{DEMOS_COT}Q: {q}\nLet's think step by step", "answer": cot,
                                                       "per_step_probs": [OD(d) if len(d) > 1 else dict(d) for d in steps],
                                                       "type": "in_context_chain_of_thought"})
    return out


def write(folder, data: dict[str, list]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in data.items():
        (folder / f"{name}.pkl").write_bytes(pickle.dumps(rows, protocol=4))
    return folder


def run(folder, output, **kw):
    kw.setdefault("examples", EXAMPLES)
    return import_authors_formats(folder, output, **kw)


def read(output, fmt):
    return pq.read_table(sorted(output.glob(f"{fmt}-*.parquet"))).to_pylist()


# ------------------------------------------------------------------------------------ tokenizer


def test_t5_pieces_is_the_authors_tokenizer(sp):
    t5 = T5Pieces(data_file("tokenizers/t5/spiece.model"))
    assert t5.encode("The answer is 42.") == [37, 1525, 19, 6426, 5]  # published T5 ids (harness.t5_tokenizer)
    assert len(t5.vocab) == 32100 and t5.vocab["<extra_id_0>"] == 32099 and t5.vocab["<extra_id_99>"] == 32000
    assert t5.pieces[2] == "<unk>" and t5.vocab["</s>"] == 1
    # Special-token strings are split off as single ids, with the whitespace next to them stripped
    # (the slow tokenizer's legacy behaviour); plain SentencePiece would spell them out.
    assert [t5.pieces[i] for i in t5.encode("a <extra_id_0> b")] == ["▁", "a", "<extra_id_0>", "▁", "b"]
    assert t5.encode("x </s>") == sp.encode("x") + [1]
    texts = ["Tom has 3 balls.\nHe buys 2 more.\n\nThe answer is 5", "two  spaces\tand a tab", "½ cup {x} ~y < 3",
             "a <extra_id_0> b", "x</s>y", "  <unk>  z ", "<pad>q", "a <extra_id_99> <extra_id_5>b", "no <extra_id_100> id"]
    for text in texts[:3]:
        assert t5.encode(text) == sp.encode(text)
    # The fast tokenizer (what their training used) gives the same ids on all of these.
    pytest.importorskip("transformers")
    from harness import t5_tokenizer

    fast = t5_tokenizer.load()
    for text in texts:
        assert t5.encode(text) == fast(text, add_special_tokens=False)["input_ids"], text


# ------------------------------------------------------------------------------------ round trip


def test_round_trip(tmp_path, sp):
    data = records(sp)
    folder = write(tmp_path / "pkl", data)
    out = tmp_path / "formats"
    stats = run(folder, out, shard_size=2)
    assert stats["records"] == {"in_context_answer_only": 2, "in_context_cot": 3, "zero_shot_answer_only": 2, "zero_shot_cot": 3}
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "in_context_answer_only-00000.parquet", "in_context_cot-00000.parquet", "in_context_cot-00001.parquet",
        "zero_shot_answer_only-00000.parquet", "zero_shot_cot-00000.parquet", "zero_shot_cot-00001.parquet"]
    assert stats["cot_formats_same_targets"] is True and stats["resumed"] == []
    assert stats["authors_mix"]["3b"]["per_format"] == {f: 0 for f in stats["records"]}  # too few records for one batch
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["records"] == stats["records"] and "resumed" not in on_disk
    assert json.loads((out / "settings.json").read_text())["settings"]["setting"] == SETTING

    rows = read(out, "zero_shot_cot")
    assert [(r["question_id"], r["sample_index"]) for r in rows] == [("gsm8k/train/0", 0), ("gsm8k/train/0", 1), ("gsm8k/train/1", 0)]
    for r, rec in zip(rows, data["zero_shot_chain_of_thought"]):
        ids = sp.encode(rec["answer"])
        assert r["encoder_input"] == rec["question"] and r["decoder_target"] == rec["answer"]
        assert r["student_ids"] == ids and len(r["topk_ids"]) == len(r["topk_probs"]) == len(r["topk_mask"]) == len(ids)
        assert all(len(x) == 6 for x in r["topk_ids"] + r["topk_probs"] + r["topk_mask"])
        assert [t[0] for t in r["topk_ids"]] == ids
        assert r["setting"] == SETTING and r["teacher_model"] == "code-davinci-002" and r["demo_ids"] is None and r["seed"] is None
        assert r["format"] == "zero_shot_cot"
    assert [r["gold_answer"] for r in rows] == ["5", "5", "24"]
    # One-hot position: [id, pad×5], [1.0, 0×5], [1, 0×5].
    first = rows[0]
    assert first["topk_ids"][0] == [first["student_ids"][0], 0, 0, 0, 0, 0]
    assert first["topk_probs"][0] == [1.0, 0, 0, 0, 0, 0] and first["topk_mask"][0] == [1, 0, 0, 0, 0, 0]
    # OrderedDict position: entries in dict order, probabilities as stored (float32).
    pos = sp.encode(data["zero_shot_chain_of_thought"][0]["answer"], out_type=str).index("▁balls")
    assert first["topk_ids"][pos] == [sp.piece_to_id(p) for p in ("▁balls", "▁ball", "▁toys")] + [0, 0, 0]
    assert first["topk_probs"][pos] == pytest.approx([0.7, 0.1, 0.05, 0, 0, 0]) and first["topk_mask"][pos] == [1, 1, 1, 0, 0, 0]
    six = rows[2]["topk_ids"][sp.encode(COT[1][0], out_type=str).index("▁pages")]
    assert six == [sp.piece_to_id(p) for p in ("▁pages", "▁page", "▁books", "▁lines", "▁words", "▁days")] and 2 not in six
    counts = stats["counts"]["zero_shot_cot"]
    assert counts["multi_entry_positions"] == 3 and counts["max_entries"] == 6 and counts["questions"] == 2
    assert counts["positions"] == sum(len(sp.encode(c)) for cs in COT.values() for c in cs)
    assert counts["one_hot_positions"] == counts["positions"] - 3 and counts["max_records_per_question"] == 2

    ic = read(out, "in_context_cot")
    assert [(r["question_id"], r["sample_index"], r["topk_ids"]) for r in ic] == [(r["question_id"], r["sample_index"], r["topk_ids"]) for r in rows]
    assert ic[0]["encoder_input"].startswith(DEMOS_COT)
    ao = read(out, "in_context_answer_only") + read(out, "zero_shot_answer_only")
    assert [(r["question_id"], r["sample_index"], r["decoder_target"]) for r in ao] == [
        ("gsm8k/train/0", 0, "The answer is 5"), ("gsm8k/train/1", 0, "The answer is 24")] * 2
    assert all(r[f] is None for r in ao for f in ("student_ids", "topk_ids", "topk_probs", "topk_mask"))


def test_subset_and_content_ids(tmp_path, sp):
    data = records(sp)
    folder = write(tmp_path / "pkl", {n: data[n] for n in ("zero_shot_answer_only", "in_context_chain_of_thought")})
    stats = import_authors_formats(folder, tmp_path / "out", match_gsm8k=False)
    assert stats["records"] == {"in_context_cot": 3, "zero_shot_answer_only": 2} and stats["cot_formats_same_targets"] is None
    cot, ao = read(tmp_path / "out", "in_context_cot"), read(tmp_path / "out", "zero_shot_answer_only")
    assert cot[0]["question_id"].startswith("authors/") and len(cot[0]["question_id"]) == len("authors/") + 16
    assert [r["question_id"] for r in ao] == [cot[0]["question_id"], cot[2]["question_id"]]  # the same id in every format


def test_k_truncation(tmp_path, sp):
    folder = write(tmp_path / "pkl", {"zero_shot_chain_of_thought": records(sp)["zero_shot_chain_of_thought"]})
    stats = run(folder, tmp_path / "out", k=2)
    rows = read(tmp_path / "out", "zero_shot_cot")
    pos = sp.encode(COT[1][0], out_type=str).index("▁pages")
    assert rows[2]["topk_ids"][pos] == [sp.piece_to_id("▁pages"), sp.piece_to_id("▁page")]
    assert rows[2]["topk_probs"][pos] == pytest.approx([0.7, 0.2])
    assert all(len(t) == 2 for r in rows for t in r["topk_ids"])
    assert stats["counts"]["zero_shot_cot"]["truncated_positions"] == 3 and stats["settings"]["k"] == 2


# ------------------------------------------------------------------------------------ resume


def test_rerun_resumes_and_refuses_other_settings(tmp_path, sp):
    data = records(sp)
    folder = write(tmp_path / "pkl", data)
    out = tmp_path / "formats"
    first = run(folder, out, shard_size=2)
    rows = read(out, "zero_shot_cot")
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    again = run(folder, out, shard_size=2)
    assert sorted(again["resumed"]) == sorted(first["records"]) and again["records"] == first["records"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == before
    # An interrupted run: the format missing from progress.json is redone, the others are kept.
    progress = json.loads((out / "progress.json").read_text())
    del progress["formats"]["zero_shot_cot"]
    (out / "progress.json").write_text(json.dumps(progress))
    (out / "zero_shot_cot-00001.parquet").unlink()
    (out / "zero_shot_cot-00007.parquet").write_bytes(b"stale")
    third = run(folder, out, shard_size=2)
    assert "zero_shot_cot" not in third["resumed"] and len(third["resumed"]) == 3
    assert sorted(p.name for p in out.glob("zero_shot_cot-*")) == ["zero_shot_cot-00000.parquet", "zero_shot_cot-00001.parquet"]
    assert read(out, "zero_shot_cot") == rows and third["records"] == first["records"]
    with pytest.raises(ResumeError, match="k: 6 -> 3"):
        run(folder, out, shard_size=2, k=3)
    data["zero_shot_answer_only"].append(data["zero_shot_answer_only"][0])
    write(folder, {"zero_shot_answer_only": data["zero_shot_answer_only"]})
    with pytest.raises(ResumeError, match="zero_shot_answer_only.pkl"):
        run(folder, out, shard_size=2)


# ------------------------------------------------------------------------------------ malformed


def _break(kind: str, data: dict) -> tuple[str, str]:
    """Break one record of `data`; returns (file, expected message regex)."""
    zs, ao = data["zero_shot_chain_of_thought"], data["zero_shot_answer_only"]
    if kind == "steps":
        zs[1]["per_step_probs"] = zs[1]["per_step_probs"][:-1]
        return "zero_shot_chain_of_thought", r"record 1: field 'per_step_probs': \d+ steps, but `answer` is \d+ T5 tokens"
    if kind == "answer_type":
        zs[2]["answer"] = 24
        return "zero_shot_chain_of_thought", r"record 2: field 'answer': expected a string, got int"
    if kind == "entry_type":
        zs[0]["per_step_probs"][3] = [("▁x", 1.0)]
        return "zero_shot_chain_of_thought", r"record 0: field 'per_step_probs': step 3: expected a non-empty"
    if kind == "first_piece":
        zs[0]["per_step_probs"][0] = {"▁Someone": 1.0}
        return "zero_shot_chain_of_thought", r"record 0: field 'per_step_probs': step 0: first piece '▁Someone' is not the answer's T5 token"
    if kind == "unknown_piece":
        step = next(s for s, d in enumerate(zs[0]["per_step_probs"]) if len(d) > 1)
        zs[0]["per_step_probs"][step]["Ġball"] = 0.01
        return "zero_shot_chain_of_thought", rf"record 0: field 'per_step_probs': step {step}: 'Ġball' is not a T5 piece"
    if kind == "prob":
        zs[0]["per_step_probs"][1] = {next(iter(zs[0]["per_step_probs"][1])): "1.0"}
        return "zero_shot_chain_of_thought", r"record 0: field 'per_step_probs': step 1: probability '1.0'"
    if kind == "missing_steps":
        del zs[1]["per_step_probs"]
        return "zero_shot_chain_of_thought", r"record 1: field 'per_step_probs': missing"
    if kind == "label":
        ao[1]["answer_label"] = 0
        return "zero_shot_answer_only", r"record 1: field 'answer_label': 0"
    if kind == "type":
        ao[0]["type"] = "in_context_answer_only"
        return "zero_shot_answer_only", r"record 0: field 'type'"
    if kind == "suffix":
        ao[0]["question"] = ao[0]["question"][: -len(" A:")]
        return "zero_shot_answer_only", r"record 0: field 'question': does not end with ' A:'"
    if kind == "gold":
        ao[1]["answer_gold"] = "Answer: no final answer here\n"
        return "zero_shot_answer_only", r"record 1: field 'answer_gold': has no '#### N'"
    if kind == "not_gsm8k":
        ao[1]["answer_gold"] = "Answer: 1 + 1 = 2\n#### 2\n"
        return "zero_shot_answer_only", r"record 1: field 'answer_gold': is no GSM8K train gold answer"
    if kind == "question_text":
        ao[1]["question"] = "Q: Another question? A:"
        return "zero_shot_answer_only", r"record 1: field 'question': the target question differs from gsm8k/train/1"
    if kind == "not_grouped":
        zs.append(dict(zs[0]))
        return "zero_shot_chain_of_thought", r"record 3: field 'question': question gsm8k/train/0 appears again"
    if kind == "record_type":
        ao[0] = ["not", "a", "dict"]
        return "zero_shot_answer_only", r"record 0: field '<record>': expected a dict, got list"
    if kind == "top_level":
        data["zero_shot_answer_only"] = {"records": ao}
        return "zero_shot_answer_only", r"expected a list of record dicts, got dict"
    raise AssertionError(kind)


KINDS = ["steps", "answer_type", "entry_type", "first_piece", "unknown_piece", "prob", "missing_steps", "label", "type",
         "suffix", "gold", "not_gsm8k", "question_text", "not_grouped", "record_type", "top_level"]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_record_names_file_record_field(tmp_path, sp, kind):
    data = records(sp)
    name, message = _break(kind, data)
    folder = write(tmp_path / "pkl", {n: data[n] for n in ("zero_shot_answer_only", "zero_shot_chain_of_thought")})
    with pytest.raises(DataError, match=rf"{name}\.pkl: {message}") as err:
        run(folder, tmp_path / "out")
    assert len(str(err.value).splitlines()) <= 3


def test_drop_unknown_counts(tmp_path, sp):
    data = records(sp)
    _break("unknown_piece", data)
    folder = write(tmp_path / "pkl", {"zero_shot_chain_of_thought": data["zero_shot_chain_of_thought"]})
    stats = run(folder, tmp_path / "out", drop_unknown=True)
    assert stats["counts"]["zero_shot_cot"]["unknown_pieces_dropped"] == 1
    assert read(tmp_path / "out", "zero_shot_cot")[0]["topk_ids"] == read_plain(tmp_path, sp)


def read_plain(tmp_path, sp):
    folder = write(tmp_path / "plain", {"zero_shot_chain_of_thought": records(sp)["zero_shot_chain_of_thought"]})
    run(folder, tmp_path / "plain-out")
    return read(tmp_path / "plain-out", "zero_shot_cot")[0]["topk_ids"]


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        import_authors_formats(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="none of the authors' format pickles"):
        import_authors_formats(tmp_path / "empty", tmp_path / "out")


# ------------------------------------------------------------------------------------ security

# Hand-assembled pickles that would call os.system("echo pwned") if a plain unpickler loaded them.
EVIL_PROTO0 = b"cos\nsystem\n(S'echo pwned'\ntR."  # GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP
EVIL_PROTO4 = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0aecho pwned\x85R."  # STACK_GLOBAL form
EVIL_NESTED = b"\x80\x04]\x8c\x02os\x8c\x06system\x93\x8c\x0aecho pwned\x85Ra."  # inside a list, as a "record"


@pytest.fixture
def no_system(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    yield calls
    assert calls == []


@pytest.mark.parametrize("payload", [EVIL_PROTO0, EVIL_PROTO4, EVIL_NESTED], ids=["proto0", "proto4", "nested"])
def test_restricted_unpickler_refuses_globals(tmp_path, payload, no_system):
    path = tmp_path / "zero_shot_answer_only.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=r"zero_shot_answer_only.pkl: cannot be read.*refusing to load os.system"):
        safe_pickle.load_pickle(path)
    with pytest.raises(DataError, match=r"zero_shot_answer_only.pkl: cannot be read.*refusing to load os.system"):
        import_authors_formats(tmp_path, tmp_path / "out", match_gsm8k=False)
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_restricted_unpickler_loads_plain_data(tmp_path):
    plain = [OD([("▁a", 0.5), ("b", 0.25)]), {"c": (1, 2.0, True)}, {"x"}, frozenset([1]), None]
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(plain, protocol=2))
    got = safe_pickle.load_pickle(path)
    assert got == plain and type(got[0]) is OD
    with pytest.raises(DataError, match="missing.pkl: not found"):
        safe_pickle.load_pickle(tmp_path / "missing.pkl")
    from harness.teacher import authors_import as teacher  # the teacher stage's names still work

    assert teacher.load_pickle is safe_pickle.load_pickle and teacher.RestrictedUnpickler is safe_pickle.RestrictedUnpickler


# ------------------------------------------------------------------------------------ CLI


def test_cli_import_authors(tmp_path, sp, capsys):
    folder = write(tmp_path / "pkl", records(sp))
    out = tmp_path / "formats"
    try:
        main(["formats", "import-authors", str(folder), "--output", str(out), "--no-match-gsm8k", "--shard-size", "2"])
    except SystemExit as done:
        assert done.code in (0, None), capsys.readouterr().err
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"]["zero_shot_cot"] == 3 and (out / "zero_shot_cot-00001.parquet").is_file()
    broken = records(sp)
    _break("steps", broken)
    write(tmp_path / "bad", broken)
    with pytest.raises(SystemExit) as done:
        main(["formats", "import-authors", str(tmp_path / "bad"), "--output", str(tmp_path / "bad-out"), "--no-match-gsm8k"])
    assert done.value.code == 1
    assert "zero_shot_chain_of_thought.pkl: record 1: field 'per_step_probs'" in capsys.readouterr().err

import hashlib

import pytest

from harness.data import download as D

BBH_RAW = "https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/9ee07bd481feebf959a6b59d61ea57bdcf30964d/"
CODE_DAVINCI = "bbh/code-davinci-002-outputs/"


def test_manifest_matches_staged_data(data_dir):
    status = D.verify(data_dir)
    assert len(status) == len(D.manifest()) >= 131
    assert set(status.values()) == {"ok"}, {k: v for k, v in status.items() if v != "ok"}


def test_manifest_pins_every_code_davinci_output(data_dir):
    """The BBH authors' recorded code-davinci-002 generations: 27 tasks x {cot, direct}."""
    entries = {e.file: e for e in D.manifest()}
    assert len(entries) == len(D.manifest())  # no duplicates
    staged = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / CODE_DAVINCI).rglob("*.json"))
    pinned = sorted(f for f in entries if f.startswith(CODE_DAVINCI))
    assert pinned == staged and len(pinned) == 54
    tasks = sorted(e.file[len("bbh/") : -len(".json")] for e in entries.values() if e.file.count("/") == 1 and e.file.startswith("bbh/"))
    for mode in ("cot", "direct"):
        assert [f for f in pinned if f"-{mode}/" in f] == [
            f"{CODE_DAVINCI}code-davinci-002-{mode}/{t}_few_shot_template_0-255000.json" for t in tasks
        ]
    for f in pinned:  # same snapshot and raw-URL form as the other BBH files
        assert entries[f].url == BBH_RAW + f[len("bbh/") :]
        assert entries[f].size == (data_dir / f).stat().st_size


def test_download_verifies_and_fills_tiktoken_cache(tmp_path, data_dir, monkeypatch):
    wanted = [e for e in D.manifest() if e.file.startswith(("svamp/", "tokenizers/tiktoken/p50k"))]
    local = [D.ManifestEntry(e.file, (data_dir / e.file).resolve().as_uri(), e.sha256, e.size) for e in wanted]
    monkeypatch.setattr(D, "manifest", lambda: local)
    fetched = D.download(tmp_path)
    assert sorted(fetched) == sorted(e.file for e in wanted)
    assert D.verify(tmp_path) == {e.file: "ok" for e in wanted}
    p50k_url = "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken"
    assert (tmp_path / "tokenizers/tiktoken_cache" / hashlib.sha1(p50k_url.encode()).hexdigest()).exists()
    assert D.download(tmp_path) == []  # already present and verified: nothing fetched


def test_download_rejects_checksum_mismatch(tmp_path, data_dir, monkeypatch):
    entry = next(e for e in D.manifest() if e.file == "svamp/SVAMP.json")
    bad = D.ManifestEntry(entry.file, (data_dir / entry.file).resolve().as_uri(), "0" * 64, entry.size)
    monkeypatch.setattr(D, "manifest", lambda: [bad])
    with pytest.raises(ValueError, match="sha256") as caught:
        D.download(tmp_path)
    assert isinstance(caught.value, D.DownloadError)
    assert not (tmp_path / "svamp/SVAMP.json").exists()  # nothing written half-way
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporary file left behind

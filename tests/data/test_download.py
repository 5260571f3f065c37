import hashlib

import pytest

from harness.data import download as D


def test_manifest_matches_staged_data(data_dir):
    status = D.verify(data_dir)
    assert len(status) == len(D.manifest()) >= 70
    assert set(status.values()) == {"ok"}, {k: v for k, v in status.items() if v != "ok"}


def test_download_verifies_and_fills_tiktoken_cache(tmp_path, data_dir, monkeypatch):
    wanted = [e for e in D.manifest() if e.file.startswith(("svamp/", "tokenizers/tiktoken/p50k"))]
    local = [D.ManifestEntry(e.file, (data_dir / e.file).as_uri(), e.sha256, e.size) for e in wanted]
    monkeypatch.setattr(D, "manifest", lambda: local)
    fetched = D.download(tmp_path)
    assert sorted(fetched) == sorted(e.file for e in wanted)
    assert D.verify(tmp_path) == {e.file: "ok" for e in wanted}
    p50k_url = "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken"
    assert (tmp_path / "tokenizers/tiktoken_cache" / hashlib.sha1(p50k_url.encode()).hexdigest()).exists()
    assert D.download(tmp_path) == []  # already present and verified: nothing fetched


def test_download_rejects_checksum_mismatch(tmp_path, data_dir, monkeypatch):
    entry = next(e for e in D.manifest() if e.file == "svamp/SVAMP.json")
    bad = D.ManifestEntry(entry.file, (data_dir / entry.file).as_uri(), "0" * 64, entry.size)
    monkeypatch.setattr(D, "manifest", lambda: [bad])
    with pytest.raises(ValueError, match="sha256"):
        D.download(tmp_path)
    assert not (tmp_path / "svamp/SVAMP.json").exists()  # nothing written half-way

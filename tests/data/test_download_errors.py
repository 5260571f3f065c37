"""download(): a file that cannot be fetched gives a short DownloadError, not a traceback.

No test touches the network: good files come from file:// URIs into the data directory, failures
from a nonexistent local path, a scheme urllib does not know, or a patched urlopen.
"""

import http.client
import socket
import urllib.error

import pytest

from harness.data import download as D
from harness.errors import DataError, HarnessError

SVAMP = "svamp/SVAMP.json"
MULTIARITH = "multiarith/MultiArith.json"
SNARKS_PROMPT = "bbh/cot-prompts/snarks.txt"


def local(data_dir, name: str) -> D.ManifestEntry:
    """The manifest entry for `name`, fetched from the staged copy instead of the internet."""
    entry = next(e for e in D.manifest() if e.file == name)
    return D.ManifestEntry(entry.file, (data_dir / entry.file).resolve().as_uri(), entry.sha256, entry.size)


def broken(data_dir, name: str, url: str) -> D.ManifestEntry:
    entry = local(data_dir, name)
    return D.ManifestEntry(entry.file, url, entry.sha256, entry.size)


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def check_message(err: D.DownloadError, entry: D.ManifestEntry) -> None:
    message = str(err)
    assert isinstance(err, DataError) and isinstance(err, HarnessError)
    assert 1 <= len(message.splitlines()) <= 2, message
    first = message.splitlines()[0]
    assert entry.file in first and entry.url in first, message
    assert "SPEC_DATA_DIR" in message
    assert "Traceback" not in message
    assert (err.file, err.url) == (entry.file, entry.url)


def test_unreachable_url_names_file_and_url(tmp_path, data_dir, monkeypatch):
    missing = (tmp_path / "nowhere" / "SVAMP.json").resolve()
    entry = broken(data_dir, SVAMP, missing.as_uri())
    monkeypatch.setattr(D, "manifest", lambda: [entry])
    root = tmp_path / "cache"
    with pytest.raises(D.DownloadError) as caught:
        D.download(root)
    check_message(caught.value, entry)
    assert "No such file or directory" in str(caught.value)  # the reason, from the URLError
    assert isinstance(caught.value.__cause__, urllib.error.URLError)
    assert caught.value.fetched == []
    assert not root.exists() or files_under(root) == []  # nothing written half-way


def test_unknown_scheme_is_a_download_error(tmp_path, data_dir, monkeypatch):
    entry = broken(data_dir, SVAMP, "nosuchscheme://example.invalid/SVAMP.json")
    monkeypatch.setattr(D, "manifest", lambda: [entry])
    with pytest.raises(D.DownloadError, match="unknown url type") as caught:
        D.download(tmp_path)
    check_message(caught.value, entry)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    "exc, reason",
    [
        (urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")), "name resolution"),
        (urllib.error.URLError(socket.timeout("timed out")), "timed out"),
        (socket.timeout("timed out"), "timed out after 60s"),
        (urllib.error.HTTPError("https://example.invalid/x", 404, "Not Found", {}, None), "HTTP 404 Not Found"),
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
        (http.client.IncompleteRead(b"partial", 100), "IncompleteRead"),
    ],
    ids=["dns", "connect-timeout", "read-timeout", "http-404", "reset", "incomplete-read"],
)
def test_network_failures_give_one_reason(tmp_path, data_dir, monkeypatch, exc, reason):
    """What urlopen raises offline (simulated: urlopen is patched, nothing is contacted)."""
    entry = broken(data_dir, SVAMP, "https://example.invalid/SVAMP.json")
    monkeypatch.setattr(D, "manifest", lambda: [entry])

    def urlopen(url, timeout=None):
        raise exc

    monkeypatch.setattr(D.urllib.request, "urlopen", urlopen)
    with pytest.raises(D.DownloadError) as caught:
        D.download(tmp_path)
    check_message(caught.value, entry)
    assert reason in str(caught.value).splitlines()[0]
    assert caught.value.__cause__ is exc
    assert files_under(tmp_path) == []


def test_stops_at_first_failure_and_keeps_earlier_files(tmp_path, data_dir, monkeypatch):
    good = [local(data_dir, SVAMP), local(data_dir, MULTIARITH)]
    bad = broken(data_dir, SNARKS_PROMPT, (tmp_path / "missing" / "snarks.txt").resolve().as_uri())
    after = local(data_dir, "bbh/snarks.json")
    monkeypatch.setattr(D, "manifest", lambda: [*good, bad, after])
    root = tmp_path / "cache"
    seen = []
    with pytest.raises(D.DownloadError) as caught:
        D.download(root, progress=lambda e: seen.append(e.file))
    check_message(caught.value, bad)
    assert caught.value.fetched == [SVAMP, MULTIARITH]
    assert seen == [SVAMP, MULTIARITH]  # stopped at the failure: the entry after it was not tried
    # Earlier files stay, complete and verified; nothing else (no temporary file) is left.
    assert files_under(root) == sorted([SVAMP, MULTIARITH])
    assert D.verify(root) == {SVAMP: "ok", MULTIARITH: "ok", SNARKS_PROMPT: "missing", "bbh/snarks.json": "missing"}

    # Once the source is reachable, a rerun fetches only what is still missing.
    fixed = [*good, local(data_dir, SNARKS_PROMPT), after]
    monkeypatch.setattr(D, "manifest", lambda: fixed)
    assert D.download(root) == [SNARKS_PROMPT, "bbh/snarks.json"]
    assert set(D.verify(root).values()) == {"ok"}


def test_checksum_mismatch_keeps_earlier_files_and_the_old_copy(tmp_path, data_dir, monkeypatch):
    good = local(data_dir, MULTIARITH)
    entry = local(data_dir, SVAMP)
    bad = D.ManifestEntry(entry.file, entry.url, "0" * 64, entry.size)
    root = tmp_path / "cache"
    (root / "svamp").mkdir(parents=True)
    (root / SVAMP).write_text("an old, corrupt copy")
    monkeypatch.setattr(D, "manifest", lambda: [good, bad])
    with pytest.raises(D.DownloadError, match="sha256") as caught:
        D.download(root)
    assert isinstance(caught.value, ValueError)  # still a ValueError for older callers
    check_message(caught.value, bad)
    assert caught.value.fetched == [MULTIARITH]
    assert (root / SVAMP).read_text() == "an old, corrupt copy"  # not replaced by the bad payload
    assert files_under(root) == sorted([MULTIARITH, SVAMP])


def test_unwritable_target_is_a_download_error(tmp_path, data_dir, monkeypatch):
    entry = local(data_dir, SVAMP)
    monkeypatch.setattr(D, "manifest", lambda: [entry])
    root = tmp_path / "cache"
    root.mkdir()
    (root / "svamp").write_text("a file where the folder should be")
    with pytest.raises(D.DownloadError, match="cannot write") as caught:
        D.download(root)
    check_message(caught.value, entry)
    assert files_under(root) == ["svamp"]

"""Fetch the public data files into a cache and verify them against the pinned manifest."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from harness.checksums import ManifestEntry, check_files, manifest, sha256_of  # noqa: F401 (re-exported)
from harness.config import ENV_DATA_DIR
from harness.errors import DataError
from harness.records import atomic_write

TIKTOKEN_FILES = ("r50k_base", "p50k_base", "cl100k_base")
OPENAI_BLOB = "https://openaipublic.blob.core.windows.net"
FETCH_TIMEOUT_S = 60


class DownloadError(DataError, ValueError):
    """A manifest file could not be fetched, or what came back is not the pinned file.

    The message names the file, the URL and the reason, and says that SPEC_DATA_DIR can point at
    an existing copy instead. `fetched` lists the files written before the failure (kept: each
    was verified and written atomically).
    """

    def __init__(self, file: str, url: str, reason: str, fetched: list[str] | None = None):
        self.file, self.url, self.reason = file, url, reason
        self.fetched = list(fetched or [])
        super().__init__(
            f"{file}: cannot download {url}: {reason}\n"
            f"To use an existing copy of the data instead, set {ENV_DATA_DIR} to it (e.g. {ENV_DATA_DIR}=../shared/data)."
        )


# The manifest and sha256 helpers live in the core (harness.checksums); re-exported here.


def verify(root: Path, only: str | None = None) -> dict[str, str]:
    """Map each manifest file to 'ok', 'missing' or 'mismatch' (optionally under a prefix)."""
    return check_files(root, (only,) if only else (), entries=manifest())


def tiktoken_cache_name(url: str) -> str:
    """tiktoken caches a download under the sha1 of its URL."""
    return hashlib.sha1(url.encode()).hexdigest()


def fill_tiktoken_cache(root: Path) -> None:
    """Copy the BPE files to the names tiktoken's own cache uses, so TIKTOKEN_CACHE_DIR works."""
    cache = root / "tokenizers" / "tiktoken_cache"
    cache.mkdir(parents=True, exist_ok=True)
    pairs = [(root / f"tokenizers/tiktoken/{n}.tiktoken", f"{OPENAI_BLOB}/encodings/{n}.tiktoken") for n in TIKTOKEN_FILES]
    pairs += [(root / f"tokenizers/gpt2/{n}", f"{OPENAI_BLOB}/gpt-2/encodings/main/{n}") for n in ("encoder.json", "vocab.bpe")]
    for source, url in pairs:
        target = cache / tiktoken_cache_name(url)
        if source.exists() and not target.exists():
            shutil.copyfile(source, target)


def _reason(exc: BaseException) -> str:
    """One line saying why a fetch failed (URLError wraps the OS error that says it)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return f"timed out after {FETCH_TIMEOUT_S}s"
    return " ".join(str(exc).split()) or type(exc).__name__


def fetch(entry: ManifestEntry, fetched: list[str] | None = None) -> bytes:
    """The bytes at `entry.url`, checked against the manifest's sha256; DownloadError otherwise."""
    try:
        with urllib.request.urlopen(entry.url, timeout=FETCH_TIMEOUT_S) as response:
            payload = response.read()
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, HTTPError, timeouts
        raise DownloadError(entry.file, entry.url, _reason(exc), fetched) from exc
    got = hashlib.sha256(payload).hexdigest()
    if got != entry.sha256:
        raise DownloadError(
            entry.file,
            entry.url,
            f"sha256 {got} ({len(payload)} bytes) does not match the manifest's {entry.sha256} ({entry.size} bytes)",
            fetched,
        )
    return payload


def download(root: Path, only: str | None = None, progress=None) -> list[str]:
    """Download missing or corrupt files; returns the files fetched. Each is verified before rename.

    Stops at the first file that cannot be fetched or does not match the manifest, raising
    DownloadError; the files fetched before it stay in place (verified, written atomically).
    """
    fetched: list[str] = []
    entries = [e for e in manifest() if not only or e.file.startswith(only)]
    for entry in entries:
        path = root / entry.file
        if path.exists() and sha256_of(path) == entry.sha256:
            if progress:
                progress(entry)
            continue
        payload = fetch(entry, fetched)
        try:
            with atomic_write(path, "wb") as handle:
                handle.write(payload)
        except OSError as exc:
            raise DownloadError(entry.file, entry.url, f"fetched, but cannot write {path}: {_reason(exc)}", fetched) from exc
        fetched.append(entry.file)
        if progress:
            progress(entry)
    fill_tiktoken_cache(root)
    return fetched

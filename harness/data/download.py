"""Fetch the public data files into a cache and verify them against the pinned manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.records import atomic_write

TIKTOKEN_FILES = ("r50k_base", "p50k_base", "cl100k_base")
OPENAI_BLOB = "https://openaipublic.blob.core.windows.net"


@dataclass(frozen=True)
class ManifestEntry:
    file: str
    url: str
    sha256: str
    size: int


def manifest() -> list[ManifestEntry]:
    raw = json.loads(resources.files("harness.data").joinpath("manifest.json").read_text())
    return [ManifestEntry(e["file"], e["url"], e["sha256"], e["size"]) for e in raw["files"]]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(root: Path, only: str | None = None) -> dict[str, str]:
    """Map each manifest file to 'ok', 'missing' or 'mismatch' (optionally under a prefix)."""
    status = {}
    for entry in manifest():
        if only and not entry.file.startswith(only):
            continue
        path = root / entry.file
        if not path.exists():
            status[entry.file] = "missing"
        else:
            status[entry.file] = "ok" if sha256_of(path) == entry.sha256 else "mismatch"
    return status


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


def download(root: Path, only: str | None = None, progress=None) -> list[str]:
    """Download missing or corrupt files; returns the files fetched. Each is verified before rename."""
    fetched = []
    entries = [e for e in manifest() if not only or e.file.startswith(only)]
    for entry in entries:
        path = root / entry.file
        if path.exists() and sha256_of(path) == entry.sha256:
            if progress:
                progress(entry)
            continue
        with urllib.request.urlopen(entry.url, timeout=60) as response:
            payload = response.read()
        got = hashlib.sha256(payload).hexdigest()
        if got != entry.sha256:
            raise ValueError(f"{entry.url}: sha256 {got} does not match the manifest's {entry.sha256} for {entry.file}")
        with atomic_write(path, "wb") as handle:
            handle.write(payload)
        fetched.append(entry.file)
        if progress:
            progress(entry)
    fill_tiktoken_cache(root)
    return fetched

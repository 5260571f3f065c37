"""The pinned data manifest and sha256 checks: core, so provenance and every stage can use them.

The manifest (`harness/data/manifest.json`) pins each data file to a public URL at a fixed
commit and its sha256; `harness data download` fetches from it, `harness data verify` and
`harness eval` check files against it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST_PATH = Path(__file__).resolve().parent / "data" / "manifest.json"


@dataclass(frozen=True)
class ManifestEntry:
    file: str
    url: str
    sha256: str
    size: int


def manifest() -> list[ManifestEntry]:
    raw = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    return [ManifestEntry(e["file"], e["url"], e["sha256"], e["size"]) for e in raw["files"]]


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(root: Path, prefixes: tuple[str, ...] = (), entries: list[ManifestEntry] | None = None) -> dict[str, str]:
    """Map each manifest file (under the prefixes) to 'ok', 'missing' or 'mismatch'."""
    status = {}
    for entry in manifest() if entries is None else entries:
        if prefixes and not entry.file.startswith(prefixes):
            continue
        path = root / entry.file
        if not path.exists():
            status[entry.file] = "missing"
        else:
            status[entry.file] = "ok" if sha256_of(path) == entry.sha256 else "mismatch"
    return status

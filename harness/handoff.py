"""Sealed hand-offs: an output folder a stage writes, and the checks every reader makes.

    out = OutputFolder(root, schemas.ALIGNED)      # the writer: output checked writable
    out.open("align.store", settings)               # lock, resume.claim; the manifest marked incomplete
    out.keep_shards()                                # resuming: earlier shards checked and kept
    out.write_shard(table)                           # atomic; its size and sha256 enter the manifest
    out.seal(inputs={"teacher-store": inputs_of(store_root)})   # manifest.json complete, written last

    manifest = verify(root, schemas.ALIGNED)         # a reader: refuses incomplete/corrupted/foreign data
    table = read_table(path, columns, manifest)      # Arrow/Parquet/zstd errors -> one DataError line

`manifest.json` lists every shard (bytes, sha256, rows), the schema and version, and the content
of the inputs (each input's shards and their sha256). It is rewritten after every shard with
`complete: false` and sealed last with `complete: true`, so a reader can tell a finished output
from a killed one, a damaged shard from a good one, and data made from another input.
Sizes are checked on every read; sha256 when the shard is read whole (the bytes are hashed in
memory as they are parsed: no second pass over the disk).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.errors import DataError, HarnessError, ResumeError, UsageError
from harness.records import atomic_write, current_umask
from harness.resume import LOCK_NAME
from harness.schemas import Contract

MANIFEST = "manifest.json"
LOCK = LOCK_NAME
WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd"}


# --- manifests ------------------------------------------------------------------------------------


@dataclass
class Manifest:
    schema: str
    version: int
    complete: bool = False
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative path -> {bytes, sha256, rows}
    inputs: dict[str, Any] = field(default_factory=dict)  # name -> inputs_of(...) of that input
    created: str = ""

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards.values())

    @property
    def content(self) -> str:
        """A short id of the shard contents (names and sha256): equal ids, equal data."""
        digest = hashlib.sha256(f"{self.schema} v{self.version}\n".encode())
        for name in sorted(self.shards):
            digest.update(f"{name} {self.shards[name]['sha256']}\n".encode())
        return digest.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "version": self.version, "complete": self.complete, "rows": self.rows,
                "content": self.content, "created": self.created, "shards": self.shards, "inputs": self.inputs}


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / MANIFEST


def read_manifest(root: str | os.PathLike) -> Manifest | None:
    path = manifest_path(root)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(raw["schema"], int(raw["version"]), bool(raw["complete"]), dict(raw["shards"]), dict(raw.get("inputs") or {}),
                        raw.get("created", ""))
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a manifest this harness wrote ({type(err).__name__}: {err})") from None


def _write_manifest(root: Path, manifest: Manifest) -> None:
    with atomic_write(manifest_path(root)) as handle:
        json.dump(manifest.to_json(), handle, indent=1, sort_keys=True)
        handle.write("\n")


def inputs_of(root: str | os.PathLike, manifest: Manifest | None = None) -> dict[str, Any]:
    """How a downstream output records one of its inputs: where it was, its content id and shards."""
    manifest = manifest or read_manifest(root)
    if manifest is None:
        raise DataError(f"{root}: no {MANIFEST}")
    return {"path": str(Path(root).resolve()), "schema": manifest.schema, "content": manifest.content,
            "shards": {name: s["sha256"] for name, s in manifest.shards.items()}}


def same_input(recorded: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    return bool(recorded) and recorded.get("content") == current["content"]


def grown_from(recorded: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """`current` holds every shard of `recorded`, unchanged (an append-only input that grew)."""
    if not recorded:
        return False
    return all(current["shards"].get(name) == sha for name, sha in recorded.get("shards", {}).items())


# --- verification --------------------------------------------------------------------------------

_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: each file hashed once per process


def sha256_file(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def _remember(path: Path, data: bytes | memoryview) -> str:
    sha = hashlib.sha256(data).hexdigest()
    stat = path.stat()
    _HASHED[(str(path.resolve()), stat.st_size, stat.st_mtime_ns)] = sha
    return sha


def shards_on_disk(root: Path, contract: Contract) -> list[str]:
    """Relative paths of the complete shards in the folder (temp files are hidden, never listed)."""
    folder = contract.shard_folder(root)
    if not folder.is_dir():
        return []
    if contract.shard_prefix:
        pattern = contract.shard_pattern()
        found = [p for p in folder.iterdir() if pattern.fullmatch(p.name)]
    else:
        found = [p for p in folder.glob("*.parquet") if not p.name.startswith(".")]
    return sorted(str(p.relative_to(root)) for p in found)


def verify(root: str | os.PathLike, contract: Contract, *, hashes: bool = False, what: str | None = None,
           complete: bool = True) -> Manifest:
    """The manifest of a finished, undamaged output of `contract`, or a DataError in one line.

    Checks: the manifest exists and is sealed (else the writing stage did not finish); it is of this
    schema and version; every listed shard exists with its size (and sha256 with `hashes=True`);
    no other shard lies beside them. `complete=False` accepts an unfinished output (to inspect what a
    killed run left), with the same checks of what is there.
    """
    root = Path(root)
    what = what or contract.name
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (the {what} output of `{contract.produced_by}`)")
    manifest = read_manifest(root)
    if manifest is None:
        raise DataError(f"{root}: incomplete {what}: no {MANIFEST} (`{contract.produced_by}` did not finish, or this is not "
                        f"its output); rerun it to complete the output")
    if manifest.schema != contract.name:
        raise DataError(f"{root}: a {manifest.schema} output, not {what}; give the output of `{contract.produced_by}`")
    if manifest.version != contract.version:
        raise DataError(f"{root}: {contract.name} schema v{manifest.version}, this harness reads v{contract.version}; "
                        f"rebuild it with `{contract.produced_by}`")
    if complete and not manifest.complete:
        raise DataError(f"{root}: incomplete {what}: `{contract.produced_by}` started but did not finish "
                        f"({len(manifest.shards)} shard(s) so far); rerun it to complete the output")
    for name, info in manifest.shards.items():
        check_shard(root, name, info, hashes=hashes)
    extra = sorted(set(shards_on_disk(root, contract)) - set(manifest.shards))
    if extra:
        raise DataError(f"{root / extra[0]}: a shard the manifest does not list ({len(extra)} such); the output was changed "
                        f"after `{contract.produced_by}` sealed it: rerun it")
    return manifest


def check_shard(root: Path, name: str, info: dict[str, Any], hashes: bool = False) -> None:
    path = root / name
    if not path.is_file():
        raise DataError(f"{path}: missing (listed in {root / MANIFEST}); the output is damaged: rerun the stage that wrote it")
    size = path.stat().st_size
    if size != info["bytes"]:
        raise DataError(f"{path}: corrupted: {size} bytes, the manifest says {info['bytes']} (truncated or replaced); "
                        "rerun the stage that wrote it")
    if hashes and sha256_file(path) != info["sha256"]:
        raise DataError(f"{path}: corrupted: its sha256 differs from the manifest's; rerun the stage that wrote it")


# --- reading -------------------------------------------------------------------------------------


def read_table(path: str | os.PathLike, columns: Iterable[str] | None = None, *, contract: Contract | None = None,
               expect: dict[str, Any] | None = None):
    """A Parquet shard as an Arrow table; any decode error becomes one DataError naming the file.

    `expect` (the shard's manifest entry): the bytes read are checked against its size and sha256.
    `contract`: the shard's schema version is checked first.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if expect is not None:
        if len(data) != expect["bytes"]:
            raise DataError(f"{path}: corrupted: {len(data)} bytes, the manifest says {expect['bytes']} (truncated or replaced); "
                            "rerun the stage that wrote it")
        stat = path.stat()
        known = _HASHED.get((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
        if (known or _remember(path, data)) != expect["sha256"]:
            raise DataError(f"{path}: corrupted: its sha256 differs from the manifest's; rerun the stage that wrote it")
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        if contract is not None:
            contract.check(path, file.schema_arrow)
        return file.read(columns=list(columns) if columns is not None else None)
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable Parquet ({_first_line(err)})") from None


def read_schema(path: str | os.PathLike):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable Parquet ({_first_line(err)})") from None


def num_rows(path: str | os.PathLike) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable Parquet ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def read_shards(root: str | os.PathLike, contract: Contract, columns: Iterable[str] | None = None,
                manifest: Manifest | None = None, prefix: str | None = None) -> list[tuple[str, Any]]:
    """(relative path, table) of every shard of a verified output, in name order."""
    root = Path(root)
    manifest = manifest or verify(root, contract)
    names = sorted(manifest.shards)
    if prefix is not None:
        pattern = contract.shard_pattern(prefix)
        names = [n for n in names if pattern.fullmatch(Path(n).name)]
    return [(name, read_table(root / name, columns, contract=contract, expect=manifest.shards[name])) for name in names]


# --- writing -------------------------------------------------------------------------------------


def check_output(path: str | os.PathLike, option: str = "output") -> Path:
    """Cheap checks of an output folder before any work: not a file, and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option}: {path} exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: {probe} is not writable")
    return path


class OutputFolder:
    """The writer's side of a sealed output: lock, claim, shards with their manifest, seal."""

    def __init__(self, root: str | os.PathLike, contract: Contract, *, option: str = "output"):
        self.root = check_output(root, option)
        self.contract = contract
        self.manifest = Manifest(contract.name, contract.version)
        self.previous: Manifest | None = None
        self._lock_fd: int | None = None

    # --- opening ---------------------------------------------------------------------------------

    def open(self, job: str, settings: dict[str, Any]) -> bool:
        """Lock the folder, claim it for `settings` (resume.claim), drop crashed writers' temp files and
        mark the output unfinished. The new manifest starts empty: `keep_shards` takes over shards of
        an earlier run; a writer that rewrites everything keeps none. Returns True when resuming."""
        from harness.resume import claim

        self.root.mkdir(parents=True, exist_ok=True)
        self.lock()
        resuming = claim(self.root, job, settings, folder=True)
        folder = self.contract.shard_folder(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink()
        self.previous = read_manifest(self.root)
        if self.previous is not None and (self.previous.schema, self.previous.version) != (self.contract.name, self.contract.version):
            raise ResumeError(f"{self.root}: holds {self.previous.schema} schema v{self.previous.version}, this harness writes "
                              f"{self.contract.name} v{self.contract.version}; delete it or choose another output")
        if self.previous is not None and self.previous.complete:  # readers must not take it while it changes
            _write_manifest(self.root, Manifest(**{**self.previous.__dict__, "complete": False}))
        self.manifest = Manifest(self.contract.name, self.contract.version, inputs=dict(self.previous.inputs) if self.previous else {})
        return resuming

    def keep_shards(self, names: Iterable[str] | None = None) -> None:
        """Take over shards an earlier run wrote (default: every shard on disk), each checked first:
        its schema version, and its size and sha256 against the earlier manifest. A shard the earlier
        manifest does not list was renamed into place just before a crash: complete, so adopted."""
        on_disk = shards_on_disk(self.root, self.contract)
        listed = self.previous.shards if self.previous is not None else {}
        try:
            if names is None:
                names = on_disk
                missing = sorted(set(listed) - set(on_disk))
                if missing:
                    raise DataError(f"{self.root / missing[0]}: listed in {MANIFEST} but missing; the output is damaged: "
                                    "delete it and rerun")
            for name in names:
                path = self.root / name
                if name in listed:  # size and sha256 first: a damaged shard is "corrupted", not "unreadable Parquet"
                    check_shard(self.root, name, listed[name], hashes=True)
                self.contract.check(path, read_schema(path))
                if name in listed:
                    self.manifest.shards[name] = dict(listed[name])
                else:
                    self.manifest.shards[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path), "rows": num_rows(path)}
        except HarnessError:
            if self.previous is not None and self.previous.complete:  # refused before changing anything: still sealed,
                _write_manifest(self.root, self.previous)              # so readers keep naming the damaged shard
            raise
        _write_manifest(self.root, self.manifest)

    def lock(self) -> None:
        import fcntl

        if self._lock_fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(f"{self.root} is being written by another process ({self.root / LOCK} is locked); "
                             "wait for it to finish or stop it") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        with contextlib.suppress(Exception):
            self.close()

    # --- shards ----------------------------------------------------------------------------------

    @property
    def shard_names(self) -> list[str]:
        return sorted(self.manifest.shards)

    def next_shard(self, prefix: str | None = None) -> Path:
        """The path of the next shard in the series (numbers never reused)."""
        pattern = self.contract.shard_pattern(prefix)
        numbers = [int(m.group(1)) for n in self.manifest.shards if (m := pattern.fullmatch(Path(n).name))]
        return self.contract.shard_folder(self.root) / self.contract.shard_name(max(numbers, default=-1) + 1, prefix)

    def write_shard(self, table, path: Path | None = None, prefix: str | None = None, **options) -> Path:
        """Write `table` as a complete shard (temp file, fsync, rename) and enter it in the manifest."""
        path = path or self.next_shard(prefix)
        info = write_parquet(path, table, self.contract, **options)
        self.add_shard(path, info)
        return path

    def add_shard(self, path: Path, info: dict[str, Any]) -> None:
        self.manifest.shards[str(Path(path).relative_to(self.root))] = info
        _write_manifest(self.root, self.manifest)

    def remove_shard(self, name: str) -> None:
        self.manifest.shards.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.root / name).unlink()
        _write_manifest(self.root, self.manifest)

    def seal(self, inputs: dict[str, Any] | None = None, prune: bool = False) -> Manifest:
        """Mark the output finished (written last): readers accept it from now on. `prune`: delete
        shard files the manifest does not list (left by an earlier, longer run of a rewriting writer)."""
        if inputs is not None:
            self.manifest.inputs = inputs
        if prune:
            for name in sorted(set(shards_on_disk(self.root, self.contract)) - set(self.manifest.shards)):
                (self.root / name).unlink()
        self.manifest.complete = True
        self.manifest.created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        _write_manifest(self.root, self.manifest)
        return self.manifest


def write_parquet(path: Path, table, contract: Contract, **options) -> dict[str, Any]:
    """Write one shard atomically; returns its manifest entry (bytes, sha256, rows)."""
    import pyarrow.parquet as pq

    if table.schema.metadata != contract.schema.metadata:
        table = table.replace_schema_metadata(contract.schema.metadata)
    with atomic_write(path, "wb") as handle:  # `.NAME.*.tmp` until renamed
        pq.write_table(table, handle, **{**WRITE_OPTIONS, **options})
    _fsync_dir(path.parent)
    data = path.read_bytes()  # in the page cache: hashing costs CPU, not disk
    return {"bytes": len(data), "sha256": _remember(path, data), "rows": table.num_rows}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_complete(root: str | os.PathLike, contract: Contract) -> bool:
    """A sealed output of `contract` whose shards are all there with their sizes (no hashing)."""
    try:
        verify(root, contract)
    except DataError:
        return False
    return True

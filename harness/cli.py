"""`python -m harness …`: one command per stage. Parses options and calls the stage; no logic here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Fetch and verify the data sets.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)

# Stage sub-apps register here (one line each).
from harness.align.cli import app as align_app  # noqa: E402

app.add_typer(align_app, name="align")


@data_app.command("download")
def data_download(
    data_dir: Optional[Path] = typer.Option(None, help="Target folder (default: $SPEC_DATA_DIR or the cache)."),
    only: Optional[str] = typer.Option(None, help="Only files under this prefix, e.g. 'bbh/'."),
):
    """Download every data file from its public source, verified by sha256 against the manifest."""
    from harness.config import ENV_DATA_DIR, default_cache_dir
    from harness.data.download import download, manifest
    import os

    root = Path(data_dir or os.environ.get(ENV_DATA_DIR) or default_cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    entries = [e for e in manifest() if not only or e.file.startswith(only)]
    with Progress(console=console) as progress:
        bar = progress.add_task("downloading", total=len(entries))
        fetched = download(root, only, progress=lambda entry: progress.advance(bar))
    console.print(f"{len(fetched)} fetched, {len(entries) - len(fetched)} already present in {root}")


@data_app.command("verify")
def data_verify(
    data_dir: Optional[Path] = typer.Option(None, help="Folder to check (default: $SPEC_DATA_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
):
    """Check every data file's sha256 against the pinned manifest."""
    from harness.config import data_dir as resolve
    from harness.data.download import verify

    status = verify(resolve(data_dir))
    if as_json:
        print(json.dumps(status, indent=1))
    else:
        table = Table("file", "status")
        for name, state in status.items():
            table.add_row(name, state)
        Console().print(table)
    if any(state != "ok" for state in status.values()):
        raise typer.Exit(1)

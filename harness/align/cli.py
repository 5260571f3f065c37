"""`python -m harness align …` (placeholder until the alignment stage lands)."""

import typer

app = typer.Typer(no_args_is_help=True, help="Align teacher top-k distributions onto student tokens.")

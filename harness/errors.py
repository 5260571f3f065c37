"""Errors a user can fix, and how the CLI shows them.

Every stage raises one of these for a bad option, a bad file or a refused resume. The CLI
(`harness.cli.main`) prints the message (one to three lines: the file, record and field, or the
option and its allowed values) and exits with `exit_code`; `--debug` shows the traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Iterable


class HarnessError(Exception):
    """A user or data error: the message says what is wrong and where, in one to three lines."""

    exit_code = 1


class UsageError(HarnessError, ValueError):
    """An option has a value it cannot take; the message names the option and the allowed values."""

    exit_code = 2


class DataError(HarnessError):
    """A data file is missing, unreadable or malformed."""


class ResumeError(HarnessError):
    """An existing output was written with other settings (or by something else)."""


class Interrupted(HarnessError):
    """Ctrl-C during a job: the message says what was kept and how to resume."""

    exit_code = 130


def check_choice(option: str, value, allowed: Iterable) -> None:
    """Raise UsageError unless `value` is one of `allowed`."""
    allowed = list(allowed)
    if value not in allowed:
        raise UsageError(f"{option}: {value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def check_positive(option: str, value, allow_zero: bool = False) -> None:
    """Raise UsageError unless `value` is > 0 (or >= 0)."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        shown = f"{value:g}" if isinstance(value, float) else value
        raise UsageError(f"{option}: {shown} is not allowed; it must be {'>= 0' if allow_zero else '> 0'}")


BATCH_SIZE_FORMS = "a positive integer, auto, or auto:N (N a positive integer)"


def check_batch_size(option: str, value) -> int | str | None:
    """An lm-eval batch size: a positive int, "auto" (probe once for the largest size that fits) or
    "auto:N" (re-probe N times over the run); numeric text becomes an int. Raise UsageError otherwise.
    None passes through (the backend's default)."""
    if value is None:
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text:
        raise UsageError(f"{option}: {value!r} is not allowed; give {BATCH_SIZE_FORMS}")
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    if text == "auto":
        return text
    if text.startswith("auto:") and text[5:].isascii() and text[5:].isdigit() and int(text[5:]) > 0:
        return text  # lm-eval re-probes every len(requests) // N requests: a fraction or a huge N divides by 0
    shown = text if isinstance(value, str) else value
    raise UsageError(f"{option}: {shown!r} is not allowed; give {BATCH_SIZE_FORMS}")

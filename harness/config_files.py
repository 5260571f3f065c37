"""Settings files and overrides -> a stage's config dataclass, with one set of rules for every stage.

    values = read_mapping("job.yaml", "a teacher config")          # YAML or JSON, a mapping
    key, value = parse_override("sampling.n=4")                    # `--set`: the value read as YAML
    cfg = build(SampleJobConfig, values, where="job.yaml")         # nested sections, types checked

Types come from the dataclass annotations: a float setting takes an int or a number written as
text (YAML 1.1 reads `1e-4` as a string), a bool must be true/false, lists and dicts must be
lists and dicts, a tuple of floats takes a list. Unknown keys are errors naming the file (or
`--set`) and the known keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def read_mapping(path: str | Path, what: str = "a config") -> dict[str, Any]:
    """A YAML (or .json) file holding a mapping; an empty file is {}."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise UsageError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {what} must be a mapping of settings, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` (key may be dotted: `sampling.n`), the value read as YAML (numbers, lists, null)."""
    import yaml

    if "=" not in text:
        raise UsageError(f"--set: expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"sampling.n": 4} -> {"sampling": {"n": 4}} (None values skipped: an option not given)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *sections, name = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, section by section."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def build(cls, values: dict[str, Any], where: str, prefix: str = ""):
    """`cls(**values)`, every value checked (and numbers coerced) against its annotation; nested
    dataclass fields take a mapping (a section)."""
    hints = typing.get_type_hints(cls)
    known = field_names(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise UsageError(f"{where}: unknown setting {prefix + key!r}; known: {', '.join(sorted(known))}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise UsageError(f"{where}: {prefix + key} must be a section (a mapping), got {value!r}")
            kwargs[key] = build(kind, value, where, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = coerce(prefix + key, value, kind, where)
    return cls(**kwargs)


def coerce(name: str, value: Any, kind: Any, where: str) -> Any:
    """`value` as the annotation `kind` wants it, or a UsageError naming the setting."""
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return coerce(name, value, options[0], where)
        for option in options:  # e.g. int | str: the first that takes the value as it is
            if option in (int, float, str, bool) and isinstance(value, option) and not (option is int and isinstance(value, bool)):
                return value
        return value
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise UsageError(f"{where}: {name} must be a number, got {value!r}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UsageError(f"{where}: {name} must be a number, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UsageError(f"{where}: {name} must be a whole number, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            raise UsageError(f"{where}: {name} must be a list of {len(args)} values, got {value!r}")
        inner = args[0] if args else Any
        return tuple(coerce(name, v, inner, where) for v in value)
    if origin is list or kind is list:
        if not isinstance(value, list):
            raise UsageError(f"{where}: {name} must be a list, got {value!r}")
        return value
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: {name} must be a mapping, got {value!r}")
        return value
    if kind is Path:
        return Path(value)
    return value

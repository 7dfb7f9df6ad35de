"""Loading YAML files into validated pydantic objects.

Shared by the training recipes and the edge camera files, so both give the same kind of error:
one message that names the file and the dotted field, never a half-configured run.

Recipes may inherit: a top-level ``_BASE_: other.yaml`` (path relative to the file) is loaded
first and the file's own keys are merged over it, recursively (the fast-reid convention); a
relative path a value names is relative to the file that sets it (:func:`defining_file`).
Command-line overrides ``KEY=VALUE`` (dotted keys, VALUE parsed as YAML) are applied last.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)

BASE_KEY = "_BASE_"


class ConfigError(ValueError):
    """A configuration file (or override) that cannot be used as it is."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in; nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML file and resolve its ``_BASE_`` chain into one mapping."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: circular {BASE_KEY} chain: {chain}")
    data = _read_yaml(path)
    base_ref = data.pop(BASE_KEY, None)
    if base_ref is None:
        return data
    base = load_yaml_tree(path.parent / base_ref, (*_seen, path))
    return deep_merge(base, data)


def defining_file(path: str | Path, dotted: str) -> Path:
    """The file of ``path``'s ``_BASE_`` chain whose own keys set ``dotted`` (the file itself when
    none does): where a relative path in that value is relative to."""
    path = Path(path).resolve()
    return _setting_file(path, dotted) or path


def _setting_file(path: Path, dotted: str) -> Optional[Path]:
    """The file of ``path``'s chain whose own keys set ``dotted``, or None when none does."""
    data = _read_yaml(path)
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            base_ref = data.get(BASE_KEY)
            return _setting_file((path.parent / base_ref).resolve(), dotted) if base_ref is not None else None
        node = node[part]
    return path


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; the value is parsed as YAML (``3``, ``true``, ``[1, 2]``)."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        parts = key.strip().split(".")
        patch: dict[str, Any] = {parts[-1]: value}
        for part in reversed(parts[:-1]):
            patch = {part: patch}
        data = deep_merge(data, patch)
    return data


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {field}: {msg}")
    return "\n".join(lines)


def validate(model_cls: type[T], data: dict[str, Any], source: str) -> T:
    """Validate ``data`` into ``model_cls``; errors name ``source`` and every bad field."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(model_cls: type[T], path: str | Path, overrides: Iterable[str] = ()) -> T:
    """Load ``path`` (with its ``_BASE_`` chain and overrides) into ``model_cls``."""
    data = apply_overrides(load_yaml_tree(path), overrides)
    return validate(model_cls, data, str(path))

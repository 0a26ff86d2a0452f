"""Layered YAML presets of the built-in agents: ``default`` ← task family ← extra blocks ← overrides."""

from __future__ import annotations

from typing import Any, Mapping

from ..core.errors import ConfigError


def layered_preset(
    filename: str,
    family: str | None,
    overrides: Mapping[str, Any] | None,
    extra_blocks: Mapping[str, Mapping[str, Any]] | None = None,
    what: str = "agent",
) -> dict[str, Any]:
    """Merge the blocks of the shipped preset ``agents/<filename>`` into one flat dict.

    The ``default`` block comes first, then the ``family`` block (if the file has one),
    then each block named in ``extra_blocks`` (its mapped value is used when the file
    lacks that block), then ``overrides``. Values are
    replaced, not merged. Validation is left to the caller.

    Raises:
        ConfigError: the file is missing or malformed, or ``overrides`` is not a mapping.
    """
    import yaml

    from ..paths import data_dir

    path = data_dir("agents") / filename
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the {what} preset {path}: {exc}") from exc
    params: dict[str, Any] = dict(data.get("default") or {})
    if family and isinstance(data.get(family), Mapping):
        params.update(data[family])
    for block, fallback in (extra_blocks or {}).items():
        params.update(data.get(block) or fallback)
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"agent overrides must be a mapping, got {type(overrides).__name__}")
        params.update(overrides)
    return params

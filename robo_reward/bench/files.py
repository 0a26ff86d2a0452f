"""Helpers of the benchmark scripts: their result files (``<out>.json``, ``<out>.md``) and the machine load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_result_files(out: str | Path, data: Any, markdown: str, *, indent: int = 1, echo: bool = True) -> Path:
    """Write ``data`` to ``<out>.json`` and ``markdown`` to ``<out>.md`` (any suffix of ``out`` is replaced).

    Creates the folder; prints the markdown when ``echo``. Returns the JSON file's path.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=indent))
    out.with_suffix(".md").write_text(markdown)
    if echo:
        print(markdown)
    return json_path


def load_average() -> float | None:
    """The 1-minute load average, rounded (``None`` where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None

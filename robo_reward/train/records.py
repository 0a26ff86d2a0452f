"""Small helpers for the run folder's records, shared by the SB3 and the built-in-agent paths.

Nothing here imports Stable-Baselines3 or torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def mean_or_none(values: Sequence[float]) -> float | None:
    """The mean of ``values``, or ``None`` when there are none."""
    return float(np.mean(values)) if len(values) else None


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float, or ``None`` when it is missing or not finite (strict JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else float(x)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` and flush it to disk (survives a kill right after)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, allow_nan=False) + "\n")
        fh.flush()


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temporary file (a kill never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    tmp.replace(path)

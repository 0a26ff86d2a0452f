"""Small helpers for the run folder's records, shared by the SB3, the built-in-agent
and the offline paths.

Nothing here imports Stable-Baselines3 or torch.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
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


def package_versions(dists: Sequence[str], *, python: bool = True) -> dict[str, str]:
    """Installed versions of the distributions ``dists`` (missing ones left out), plus Python's when ``python``."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()} if python else {}
    for dist in dists:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temporary file (a kill never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    tmp.replace(path)


def line_head(timesteps: int, segment: int, start_timesteps: int, wall_time_offset: float,
              elapsed: float) -> dict[str, Any]:
    """The leading fields of a ``metrics.jsonl`` line: ``timesteps``, ``segment``, ``time_s``, ``steps_per_s``.

    ``elapsed`` is the seconds of this segment so far; ``steps_per_s`` counts the steps
    taken since ``start_timesteps`` over them (``None`` before any time has passed).
    """
    done_here = int(timesteps) - int(start_timesteps)
    return {
        "timesteps": int(timesteps),
        "segment": segment,
        "time_s": round(wall_time_offset + elapsed, 3),
        "steps_per_s": round(done_here / elapsed, 1) if elapsed > 0 else None,
    }


class SegmentClock:
    """Training time of a segment, for classes with ``_t0`` (a ``perf_counter`` start) and ``wall_time_offset``."""

    _t0: float
    wall_time_offset: float

    @property
    def elapsed(self) -> float:
        """Seconds of training in this segment so far."""
        return time.perf_counter() - self._t0

    @property
    def total_train_time(self) -> float:
        """Training seconds over all segments (earlier ones from the checkpoint)."""
        return self.wall_time_offset + self.elapsed


class EpisodeWindow:
    """The last ``size`` finished training episodes: learned-reward return, env return, success, length."""

    def __init__(self, size: int):
        self.learned: deque[float] = deque(maxlen=size)
        self.env: deque[float] = deque(maxlen=size)
        self.success: deque[float] = deque(maxlen=size)
        self.lengths: deque[int] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.learned)

    def add(self, learned: float, env: float | None, success: Any, length: int) -> None:
        """Record one finished episode (``env=None``: its env return is unknown and left out)."""
        self.learned.append(float(learned))
        if env is not None:
            self.env.append(float(env))
        self.success.append(float(success))
        self.lengths.append(int(length))

    def stats(self) -> dict[str, Any]:
        """Means over the window (``None`` before the first episode) and how many episodes it holds."""
        return {
            "learned_return": finite_or_none(mean_or_none(self.learned)),
            "env_return": finite_or_none(mean_or_none(self.env)),
            "success_rate": finite_or_none(mean_or_none(self.success)),
            "ep_length": finite_or_none(mean_or_none(self.lengths)),
            "window_episodes": len(self.learned),
        }

"""Plumbing shared by the wrappers: batching observations, unbatching vector infos."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..core.errors import ConfigError
from ..core.registry import make_reward
from ..core.types import RewardPlugin


def build_plugin(reward: Any, task: Any = None) -> RewardPlugin:
    """Make a plugin from anything :func:`make_reward` accepts (or pass a plugin through)."""
    if reward is None:
        raise ConfigError("a reward is required: give a registered name, a 'name:k=v' spec, a mapping or a RewardPlugin")
    return make_reward(reward, task=task)


def batch1(x: Any) -> Any:
    """Add a leading batch dimension of 1 (recursing into dict observations)."""
    if isinstance(x, np.ndarray):
        return x[None]
    if isinstance(x, Mapping):
        return {k: batch1(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(batch1(v) for v in x)
    return np.asarray([x])


def copy_obs(x: Any) -> Any:
    """Copy a batched observation (array, dict or tuple of arrays)."""
    if isinstance(x, Mapping):
        return {k: copy_obs(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(copy_obs(v) for v in x)
    return np.array(x, copy=True)


def set_row(x: Any, i: int, value: Any) -> None:
    """Write ``value`` into row ``i`` of a batched observation, in place."""
    if isinstance(x, Mapping):
        for k in x:
            set_row(x[k], i, value[k])
    elif isinstance(x, tuple):
        for sub, v in zip(x, value):
            set_row(sub, i, v)
    else:
        x[i] = value


def stack_frames(frames: Any, n: int) -> np.ndarray:
    """Stack ``n`` rendered frames into ``uint8[n, H, W, 3]``, or raise a clear error."""
    if frames is None or any(f is None for f in frames):
        raise ConfigError(
            "the reward needs rendered frames but the environment returned none: create it with "
            "render_mode='rgb_array'"
        )
    arr = np.stack([np.asarray(f) for f in frames])
    if arr.shape[0] != n or arr.ndim != 4:
        raise ConfigError(f"expected {n} frames of shape (H, W, C), got an array of shape {arr.shape}")
    return arr

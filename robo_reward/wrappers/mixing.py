"""How a plugin's reward is combined with the environment's own reward."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.errors import ConfigError

MODES = ("replace", "add", "blend", "weighted")


@dataclass(frozen=True)
class RewardMix:
    """``reward = plugin_weight * plugin_reward + env_weight * env_reward``.

    Built by :func:`resolve_mode` from one of the modes:

    * ``replace`` — the plugin's reward only (1, 0);
    * ``add`` — plugin plus env reward (1, 1);
    * ``blend`` — ``alpha * plugin + (1 - alpha) * env`` with ``0 <= alpha <= 1``;
    * ``weighted`` — any ``weights=(plugin_weight, env_weight)``.
    """

    mode: str
    plugin_weight: float
    env_weight: float

    def combine(self, plugin_reward: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
        """Combine two ``float32[n]`` arrays into a new ``float32[n]`` array."""
        if self.env_weight == 0.0 and self.plugin_weight == 1.0:
            return np.array(plugin_reward, dtype=np.float32, copy=True)
        out = np.float32(self.plugin_weight) * plugin_reward + np.float32(self.env_weight) * env_reward.astype(
            np.float32, copy=False
        )
        return out.astype(np.float32, copy=False)

    def combine_scalar(self, plugin_reward: float, env_reward: float) -> float:
        """Scalar form of :meth:`combine` for single environments."""
        if self.env_weight == 0.0 and self.plugin_weight == 1.0:
            return plugin_reward
        return self.plugin_weight * plugin_reward + self.env_weight * env_reward


def resolve_mode(mode: str = "replace", alpha: float | None = None, weights: Sequence[float] | None = None) -> RewardMix:
    """Turn ``mode``/``alpha``/``weights`` into a :class:`RewardMix`, or raise :class:`ConfigError`."""
    if mode not in MODES:
        raise ConfigError(f"unknown reward mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "blend" and alpha is not None:
        raise ConfigError(f"'alpha' only applies to mode='blend', not mode={mode!r}")
    if mode != "weighted" and weights is not None:
        raise ConfigError(f"'weights' only applies to mode='weighted', not mode={mode!r}")
    if mode == "replace":
        return RewardMix(mode, 1.0, 0.0)
    if mode == "add":
        return RewardMix(mode, 1.0, 1.0)
    if mode == "blend":
        a = 0.5 if alpha is None else float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ConfigError(f"blend alpha must lie in [0, 1], got {alpha!r}")
        return RewardMix(mode, a, 1.0 - a)
    if weights is None or len(weights) != 2:
        raise ConfigError("mode='weighted' needs weights=(plugin_weight, env_weight)")
    wp, we = (float(w) for w in weights)
    if not (math.isfinite(wp) and math.isfinite(we)):
        raise ConfigError(f"weights must be finite, got {tuple(weights)!r}")
    return RewardMix(mode, wp, we)

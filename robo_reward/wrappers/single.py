"""``RewardWrapper``: a ``gymnasium.Wrapper`` that replaces, adds to or blends with the env reward."""

from __future__ import annotations

import math
from typing import Any, Sequence, SupportsFloat

import gymnasium as gym
import numpy as np

from ..core.errors import ConfigError, RewardComputationError
from ..core.types import RewardOutput, TransitionBatch
from ._common import batch1, build_plugin
from .mixing import resolve_mode

_FALSE1 = np.zeros(1, dtype=bool)
_TRUE1 = np.ones(1, dtype=bool)
_FALSE1.flags.writeable = False
_TRUE1.flags.writeable = False
_IDS1 = np.zeros(1, dtype=np.int64)
_IDS1.flags.writeable = False
# The whole batch of a plugin that asks for nothing, for each (terminated, truncated):
# every field is a shared read-only array or None, so one object per case serves every step.
_BARE = {
    (te, tr): TransitionBatch(_TRUE1 if te else _FALSE1, _TRUE1 if tr else _FALSE1, None, _IDS1)
    for te in (False, True)
    for tr in (False, True)
}


class RewardWrapper(gym.Wrapper):
    """Wrap a single Gymnasium env so that its reward comes from a reward plugin.

    The env's own reward is kept in ``info["env_reward"]`` and the plugin's named
    terms go to ``info["reward_terms"]``. The returned reward is a Python ``float``.

    Args:
        env: the environment.
        reward: a plugin, registered name, ``"name:k=v"`` spec or mapping.
        mode: ``"replace"`` (default), ``"add"``, ``"blend"`` (with ``alpha``) or
            ``"weighted"`` (with ``weights=(plugin_weight, env_weight)``).
        alpha: weight of the plugin reward in ``blend`` mode.
        weights: ``(plugin_weight, env_weight)`` in ``weighted`` mode.
        task: a task card handed to the plugin factory (e.g. for its success signal).

    Raises:
        ConfigError: bad spec or mode, or a plugin that needs frames on an env whose
            ``render_mode`` is not ``"rgb_array"``.
    """

    def __init__(
        self,
        env: gym.Env,
        reward: Any,
        mode: str = "replace",
        *,
        alpha: float | None = None,
        weights: Sequence[float] | None = None,
        task: Any = None,
    ):
        super().__init__(env)
        self.plugin = build_plugin(reward, task)
        self.mix = resolve_mode(mode, alpha, weights)
        self._replace = self.mix.plugin_weight == 1.0 and self.mix.env_weight == 0.0
        req = self.plugin.requires
        self._need_obs = "obs" in req
        self._need_action = "action" in req
        self._need_next = "next_obs" in req
        self._need_info = "info" in req
        self._need_frames = "frames" in req
        self._need_env_reward = "env_reward" in req
        self._bare = not req
        if self._need_frames and env.render_mode != "rgb_array":
            raise ConfigError(
                f"reward {self.plugin.name or type(self.plugin).__name__!r} scores rendered frames: "
                f"create the env with render_mode='rgb_array' (it has {env.render_mode!r})"
            )
        self._last_obs: Any = None
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and the plugin's per-episode state."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = obs
        self._needs_reset = False
        self.plugin.reset(_TRUE1)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and compute the plugin reward on the transition."""
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before the first step()")
        obs, env_r, terminated, truncated, info = self.env.step(action)
        env_r = float(env_r)
        if self._bare:  # the plugin asked for nothing: a prebuilt batch
            out = self.plugin.compute(_BARE[terminated, truncated])
        else:
            out = self.plugin.compute(TransitionBatch(
                _TRUE1 if terminated else _FALSE1,
                _TRUE1 if truncated else _FALSE1,
                np.array((env_r,), dtype=np.float32) if self._need_env_reward else None,
                _IDS1,
                batch1(self._last_obs) if self._need_obs else None,
                batch1(np.asarray(action)) if self._need_action else None,
                batch1(obs) if self._need_next else None,
                (info,) if self._need_info else None,
                self._render() if self._need_frames else None,
            ))
        if out.__class__ is RewardOutput and not out.terms and out.reward.__class__ is np.ndarray \
                and out.reward.shape == (1,):
            value = float(out.reward[0])  # fast path: one reward, no terms
            if not math.isfinite(value):
                _scalar_reward(out, self.plugin)  # raises with the full message
            info["reward_terms"] = {}
        else:
            value = _scalar_reward(out, self.plugin)
            info["reward_terms"] = {k: float(v[0]) for k, v in out.terms.items()}
        info["env_reward"] = env_r
        if self._need_obs:
            self._last_obs = obs
        if self._replace:
            return obs, value, terminated, truncated, info
        return obs, self.mix.combine_scalar(value, env_r), terminated, truncated, info  # type: ignore[return-value]

    def _render(self) -> np.ndarray:
        frame = self.env.render()
        if frame is None:
            raise ConfigError("the reward needs frames but env.render() returned None; use render_mode='rgb_array'")
        return np.asarray(frame)[None]


def _scalar_reward(out: Any, plugin: Any) -> float:
    """Pull the single reward out of a plugin's output, validating it cheaply."""
    if not isinstance(out, RewardOutput):
        out = RewardOutput(np.asarray(out))
    r = out.reward
    if type(r) is np.ndarray and r.shape == (1,):
        value = float(r[0])
    else:
        out.validate(1, plugin.name or type(plugin).__name__)
        value = float(out.reward[0])
    if not math.isfinite(value):
        raise RewardComputationError(
            f"reward {plugin.name or type(plugin).__name__!r} returned a non-finite value ({value}); "
            "fix the reward so it returns finite numbers"
        )
    if out.terms:
        out.validate(1, plugin.name or type(plugin).__name__)
    return value

"""``SB3RewardWrapper``: reward plugins on Stable-Baselines3 ``VecEnv``s."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.errors import ConfigError, MissingDependencyError
from ..core.types import TransitionBatch
from ._common import build_plugin, copy_obs, set_row, stack_frames
from .frames import FINAL_FRAME_KEY
from .mixing import resolve_mode

try:
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError:  # pragma: no cover - exercised only without SB3
    VecEnv = None  # type: ignore[assignment,misc]
    VecEnvWrapper = object  # type: ignore[assignment,misc]


class SB3RewardWrapper(VecEnvWrapper):  # type: ignore[misc,valid-type]
    """Wrap a Stable-Baselines3 ``VecEnv`` so that its rewards come from a reward plugin.

    SB3 VecEnvs reset a finished sub-env inside ``step_wait`` and return the reset
    observation, with the real last one in ``info["terminal_observation"]`` and
    ``info["TimeLimit.truncated"]`` telling truncation from termination. The reward is
    computed on that real last observation. For rewards that score frames, make each
    sub-env with ``render_mode="rgb_array"`` and wrap it in
    :class:`~robo_reward.wrappers.FinalFrameWrapper`, so the terminal frame survives
    the reset.

    Each sub-env's info gets ``"env_reward"`` (float) and ``"reward_terms"``
    (dict of floats).

    Args:
        venv: the SB3 vector env.
        reward, mode, alpha, weights, task: as for :class:`~robo_reward.RewardWrapper`.
    """

    def __init__(
        self,
        venv: Any,
        reward: Any,
        mode: str = "replace",
        *,
        alpha: float | None = None,
        weights: Sequence[float] | None = None,
        task: Any = None,
    ):
        if VecEnv is None:
            raise MissingDependencyError("stable_baselines3", "sb3", "SB3RewardWrapper")
        if not isinstance(venv, VecEnv):
            raise ConfigError(f"SB3RewardWrapper wraps a stable_baselines3 VecEnv, got {type(venv).__name__}")
        super().__init__(venv)
        self.plugin = build_plugin(reward, task)
        self.mix = resolve_mode(mode, alpha, weights)
        req = self.plugin.requires
        self._need_obs = "obs" in req
        self._need_action = "action" in req
        self._need_next = "next_obs" in req
        self._need_info = "info" in req
        self._need_frames = "frames" in req
        self._need_env_reward = "env_reward" in req
        self._ids = np.arange(self.num_envs, dtype=np.int64)
        self._ids.flags.writeable = False
        self._all = np.ones(self.num_envs, dtype=bool)
        self._last_obs: Any = None
        self._actions: Any = None

    def reset(self) -> Any:
        """Reset all sub-envs and the plugin's per-episode state."""
        obs = self.venv.reset()
        self._last_obs = copy_obs(obs) if self._need_obs else obs
        self.plugin.reset(self._all.copy())
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions (the plugin may need them) and pass them on."""
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        """Finish the step and compute the plugin reward on the real transitions."""
        if self._last_obs is None:
            raise ConfigError("call reset() on the vector env before stepping it")
        obs, env_r, dones, infos = self.venv.step_wait()
        n = self.num_envs
        dones = np.asarray(dones, dtype=bool)
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos]) & dones
        terminated = dones & ~truncated
        next_obs = obs
        if dones.any() and (self._need_next or self._need_obs):
            next_obs = copy_obs(obs)
            for i in np.flatnonzero(dones):
                if "terminal_observation" not in infos[i]:
                    raise ConfigError(
                        f"sub-env {i} finished but its info has no 'terminal_observation'; "
                        "SB3RewardWrapper needs an SB3 VecEnv (DummyVecEnv/SubprocVecEnv)"
                    )
                set_row(next_obs, int(i), infos[i]["terminal_observation"])
        frames = None
        if self._need_frames:
            images = list(self.venv.get_images())
            for i in np.flatnonzero(dones):
                if FINAL_FRAME_KEY not in infos[i]:
                    raise ConfigError(
                        "SB3 VecEnvs reset finished sub-envs before the reward sees them: wrap each sub-env in "
                        "robo_reward.wrappers.FinalFrameWrapper so the terminal frame is kept"
                    )
                images[i] = infos[i][FINAL_FRAME_KEY]
            frames = stack_frames(images, n)
        env_r32 = np.asarray(env_r, dtype=np.float32)
        batch = TransitionBatch(
            terminated=terminated,
            truncated=truncated,
            env_reward=env_r32 if self._need_env_reward else None,
            env_ids=self._ids,
            obs=self._last_obs if self._need_obs else None,
            action=np.asarray(self._actions) if self._need_action else None,
            next_obs=next_obs if self._need_next else None,
            infos=infos if self._need_info else None,
            frames=frames,
        )
        out = self.plugin(batch)
        reward = self.mix.combine(out.reward, env_r32)
        for i, info in enumerate(infos):
            info["env_reward"] = float(env_r32[i])
            info["reward_terms"] = {k: float(v[i]) for k, v in out.terms.items()}
        if dones.any():
            self.plugin.reset(dones)
        self._last_obs = copy_obs(obs) if self._need_obs else obs
        return obs, reward, dones, infos

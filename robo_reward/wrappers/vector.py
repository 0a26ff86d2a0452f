"""``VectorRewardWrapper``: reward plugins on Gymnasium vector envs, one batched call per step."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ..core.errors import ConfigError
from ..core.infos import unbatch_infos
from ..core.types import RewardOutput, TransitionBatch
from ._common import build_plugin, copy_obs, set_row, stack_frames
from .frames import FINAL_FRAME_KEY
from .mixing import resolve_mode


class VectorRewardWrapper(gym.vector.VectorWrapper):
    """Wrap a Gymnasium ``VectorEnv`` so that its rewards come from a reward plugin.

    The plugin is called once per step for all sub-envs (frames, when needed, are
    rendered in one batch). Episode boundaries follow the env's autoreset mode:

    * ``NEXT_STEP`` (Gymnasium's default): the step after an episode ends only
      resets that sub-env. No reward is computed for it: its reward is 0, its row is
      left out of the plugin's batch, and the plugin is told of the new episode.
    * ``SAME_STEP``: the returned observation of a finished sub-env is already the
      reset one; the reward is computed on the real last observation from
      ``info["final_obs"]`` (and ``info["final_info"]``; frames from
      :class:`FinalFrameWrapper`'s ``final_frame``).
    * ``DISABLED``: the user resets sub-envs with ``reset(options={"reset_mask": m})``;
      the plugin is reset for exactly those.

    ``info["env_reward"]`` holds the env's own rewards (``float32[num_envs]``) and
    ``info["reward_terms"]`` a dict of ``float32[num_envs]`` terms; rows not computed
    this step are 0 and marked false in ``info["_reward_terms"]``.

    Args:
        env: the vector env.
        reward, mode, alpha, weights, task: as for :class:`~robo_reward.RewardWrapper`.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
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
        raw_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.autoreset_mode = raw_mode if isinstance(raw_mode, AutoresetMode) else AutoresetMode(raw_mode)
        req = self.plugin.requires
        self._need_obs = "obs" in req
        self._need_action = "action" in req
        self._need_next = "next_obs" in req
        self._need_info = "info" in req
        self._need_frames = "frames" in req
        self._need_env_reward = "env_reward" in req
        if self._need_frames and env.render_mode != "rgb_array":
            raise ConfigError(
                f"reward {self.plugin.name!r} scores rendered frames: make the sub-envs with render_mode='rgb_array'"
            )
        n = self.num_envs
        self._ids = np.arange(n, dtype=np.int64)
        self._ids.flags.writeable = False
        self._all = np.ones(n, dtype=bool)
        self._prev_done = np.zeros(n, dtype=bool)
        self._last_obs: Any = None
        self._has_reset = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset (all, or the ``options["reset_mask"]`` sub-envs) and the plugin's episode state."""
        mask = None
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool).copy()
        obs, info = self.env.reset(seed=seed, options=options)
        if mask is None or not self._has_reset:
            mask = self._all.copy()
        self._has_reset = True
        self._last_obs = copy_obs(obs) if self._need_obs else None
        self._prev_done[mask] = False
        self.plugin.reset(mask)
        return obs, info

    def step(self, actions: Any):
        """Step all sub-envs and compute the plugin reward for the real transitions."""
        if not self._has_reset:
            raise gym.error.ResetNeeded("call reset() before the first step()")
        obs, env_r, terminated, truncated, infos = self.env.step(actions)
        env_r32 = np.asarray(env_r, dtype=np.float32)
        n = self.num_envs
        mode = self.autoreset_mode

        if mode == AutoresetMode.NEXT_STEP and self._prev_done.any():
            resetting = self._prev_done.copy()
            self.plugin.reset(resetting)
            rows = np.flatnonzero(~resetting)
        else:
            resetting = None
            rows = None

        next_obs = obs
        step_infos = None
        done = np.logical_or(terminated, truncated)
        if mode == AutoresetMode.SAME_STEP and done.any() and self._need_next:
            # the plugin's next_obs is the real last observation; the returned obs stays the reset one
            next_obs = copy_obs(obs)
            final_obs = infos["final_obs"]
            if (isinstance(final_obs, np.ndarray) and final_obs.dtype != object and isinstance(next_obs, np.ndarray)
                    and final_obs.shape == next_obs.shape):
                next_obs[done] = final_obs[done]  # a batched simulator's [n, ...] array: one copy
            else:
                for i in np.flatnonzero(done):
                    set_row(next_obs, int(i), final_obs[i])
        if self._need_info or (self._need_frames and mode == AutoresetMode.SAME_STEP):
            step_infos = unbatch_infos(infos, n)
            if mode == AutoresetMode.SAME_STEP and done.any():
                finals = unbatch_infos(infos.get("final_info", {}), n)
                for i in np.flatnonzero(done):
                    step_infos[i] = finals[i]

        frames = self._frames(done, step_infos) if self._need_frames else None
        batch = TransitionBatch(
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            env_reward=env_r32 if self._need_env_reward else None,
            env_ids=self._ids,
            obs=self._last_obs,
            action=np.asarray(actions) if self._need_action else None,
            next_obs=next_obs if self._need_next else None,
            infos=step_infos if self._need_info else None,
            frames=frames,
        )
        if rows is not None:
            batch = batch.select(rows)
        out = self.plugin(batch) if len(batch) else RewardOutput(np.zeros(0, np.float32))

        if rows is None:
            reward = self.mix.combine(out.reward, env_r32)
            terms = out.terms
            valid = self._all
        else:
            reward = np.zeros(n, dtype=np.float32)
            reward[rows] = self.mix.combine(out.reward, env_r32[rows])
            terms = {}
            for k, v in out.terms.items():
                full = np.zeros(n, dtype=np.float32)
                full[rows] = v
                terms[k] = full
            valid = ~resetting  # type: ignore[operator]

        infos["env_reward"] = env_r32
        infos["_env_reward"] = self._all
        infos["reward_terms"] = terms
        infos["_reward_terms"] = valid

        if mode == AutoresetMode.NEXT_STEP:
            self._prev_done = done
        elif mode == AutoresetMode.SAME_STEP and done.any():
            self.plugin.reset(done)
        if self._need_obs:
            self._last_obs = copy_obs(obs)
        return obs, reward, terminated, truncated, infos

    def _frames(self, done: np.ndarray, step_infos: list[dict[str, Any]] | None) -> np.ndarray:
        frames = list(self.env.render())
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            for i in np.flatnonzero(done):
                info = step_infos[i] if step_infos is not None else {}
                if FINAL_FRAME_KEY not in info:
                    raise ConfigError(
                        "with autoreset_mode=SAME_STEP the frame of a finished episode is gone before the reward "
                        "is computed: wrap each sub-env in robo_reward.wrappers.FinalFrameWrapper"
                    )
                frames[i] = info[FINAL_FRAME_KEY]
        return stack_frames(frames, self.num_envs)

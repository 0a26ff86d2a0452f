"""``FinalFrameWrapper``: keep the frame of the last step before a vector env auto-resets."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from ..core.errors import ConfigError

FINAL_FRAME_KEY = "final_frame"


class FinalFrameWrapper(gym.Wrapper):
    """Render the terminal state into ``info["final_frame"]`` when an episode ends.

    Vector envs that reset a finished sub-env inside the same ``step`` call
    (Stable-Baselines3 VecEnvs, Gymnasium's ``SAME_STEP`` autoreset) have already
    moved on when a reward wrapper renders, so the frame of the real last state is
    lost. Wrap each *sub-env* with this wrapper when the reward scores frames;
    :class:`~robo_reward.wrappers.VectorRewardWrapper` and
    :class:`~robo_reward.wrappers.SB3RewardWrapper` then use the saved frame.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ConfigError(f"FinalFrameWrapper needs render_mode='rgb_array', the env has {env.render_mode!r}")

    def step(self, action: Any):
        """Step, and on termination or truncation add ``info["final_frame"]``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info[FINAL_FRAME_KEY] = self.env.render()
        return obs, reward, terminated, truncated, info

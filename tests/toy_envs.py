"""Small deterministic envs and plugins whose rewards are easy to predict by hand."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from robo_reward.core.types import RewardOutput, RewardPlugin, TransitionBatch


class CountEnv(gym.Env):
    """obs = [episode, t]; the episode ends after ``length`` steps (terminated or truncated).

    The env reward is ``10 * t_next``; ``render()`` returns a 4x4 frame filled with ``t``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, length: int = 3, truncate: bool = False, render_mode: str | None = None):
        self.length = length
        self.truncate = truncate
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode = 0 if seed is not None else self.episode + 1
        self.t = 0
        return self._obs(), {"t": self.t}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        info = {"t": self.t, "is_success": self.t == self.length}
        return self._obs(), 10.0 * self.t, done and not self.truncate, done and self.truncate, info

    def render(self):
        return np.full((4, 4, 3), self.t, dtype=np.uint8)


def expected_reward(t_before: float, t_after: float, action: float) -> float:
    """What :class:`TransitionPlugin` returns for one transition."""
    return 1000.0 * t_before + t_after + action


class TransitionPlugin(RewardPlugin):
    """reward = 1000 * obs_t + next_obs_t + action; records every batch it sees."""

    requires = frozenset({"obs", "action", "next_obs", "info"})
    name = "transition-test"

    def __init__(self) -> None:
        self.batches: list[TransitionBatch] = []
        self.resets: list[np.ndarray] = []

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        self.batches.append(batch)
        r = 1000.0 * batch.obs[:, 1] + batch.next_obs[:, 1] + batch.action[:, 0]
        info_t = np.array([info["t"] for info in batch.infos], dtype=np.float32)
        return RewardOutput(r.astype(np.float32), {"next_t": batch.next_obs[:, 1], "info_t": info_t})

    def reset(self, mask: np.ndarray) -> None:
        self.resets.append(np.array(mask, copy=True))


class FramePlugin(RewardPlugin):
    """reward = the value of the rendered frame (the step count after the transition)."""

    requires = frozenset({"frames"})
    name = "frame-test"

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        return RewardOutput(batch.frames[:, 0, 0, 0].astype(np.float32))


class StepCounter(RewardPlugin):
    """Per-episode step counter (stateful, indexed by ``env_ids``): reward = steps so far."""

    requires = frozenset()
    name = "counter-test"

    def __init__(self) -> None:
        self.count = np.zeros(0)

    def reset(self, mask: np.ndarray) -> None:
        if self.count.shape[0] != mask.shape[0]:
            self.count = np.zeros(mask.shape[0])
        self.count[mask] = 0

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        self.count[batch.env_ids] += 1
        return RewardOutput(self.count[batch.env_ids].astype(np.float32))

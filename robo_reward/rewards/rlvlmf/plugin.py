"""The ``rl-vlm-f`` reward plugin: a trained RL-VLM-F image reward model scores rendered frames.

This module is imported by :mod:`robo_reward.rewards.rlvlmf` (and so registers the
plugin) without importing ``torch``; the model is loaded when the plugin is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.errors import ConfigError, RewardComputationError
from ...core.registry import register_reward
from ...core.types import RewardOutput, RewardPlugin, TransitionBatch

__all__ = ["RLVLMFReward"]


@register_reward("rl-vlm-f")
class RLVLMFReward(RewardPlugin):
    """RL-VLM-F (Wang et al. 2024): a reward on frames learned from a VLM's (or CLIP's) pairwise preferences.

    ``"rl-vlm-f:path=runs/drawer-rlvlmf.pt"`` — the env must be made with
    ``render_mode="rgb_array"`` (the wrappers render frames for it); an offline dataset
    must hold frames (``collect_dataset(..., frames=True)``).

    Args:
        path: a model file written by ``ImageRewardModel.save`` (``fit_rlvlmf`` /
            ``robo-reward reward fit rl-vlm-f`` make one).
        model: an in-memory :class:`~robo_reward.rewards.rlvlmf.model.ImageRewardModel` instead of ``path``.
        normalize: standardise the reward with the mean and standard deviation it had on
            the training frames (default); otherwise the raw Bradley–Terry score.
        scale: multiply the reward by this.
        device: where the model runs.
        batch_size: most frames per forward pass.
        task: the task card (unused; accepted so specs can be built with a task).

    Terms: ``rlvlmf_std`` (the ensemble members' spread, in the same units as the reward)
    when the ensemble has more than one member.
    """

    requires = frozenset({"frames"})

    def __init__(
        self,
        path: str | None = None,
        model: Any = None,
        normalize: bool = True,
        scale: float = 1.0,
        device: str = "cpu",
        batch_size: int = 256,
        task: Any = None,
    ):
        if (path is None) == (model is None):
            raise ConfigError("the rl-vlm-f reward needs exactly one of path= (a saved model file) or model=")
        if model is None:
            from .model import ImageRewardModel

            model = ImageRewardModel.load(str(path), device=device)
        if not hasattr(model, "predict_members") or not getattr(model, "trained", False):
            raise ConfigError(f"the rl-vlm-f reward needs a trained ImageRewardModel, got {model!r}")
        try:
            self.scale = float(scale)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"scale must be a number, got {scale!r}") from exc
        if not np.isfinite(self.scale):
            raise ConfigError(f"scale must be finite, got {scale!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.path = path
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)

    def score(self, frames: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(reward, member spread)``, each ``float32[n]``, for ``uint8[n, H, W, 3]`` frames."""
        members = self.model.predict_members(frames, self.batch_size).astype(np.float64)
        mean, std = members.mean(axis=0), members.std(axis=0)
        if self.normalize:
            mean = (mean - self.model.reward_mean) / self.model.reward_std
            std = std / self.model.reward_std
        return (self.scale * mean).astype(np.float32), (abs(self.scale) * std).astype(np.float32)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Score ``batch.frames`` with the model."""
        if batch.frames is None:
            raise RewardComputationError(
                "rl-vlm-f needs rendered frames: make the env with render_mode='rgb_array' "
                "(or collect the dataset with frames=True)"
            )
        reward, std = self.score(batch.frames)
        terms = {"rlvlmf_std": std} if self.model.ensemble_size > 1 else {}
        return RewardOutput(reward, terms)

    def __repr__(self) -> str:
        return f"RLVLMFReward(path={self.path!r}, model={self.model!r}, normalize={self.normalize})"

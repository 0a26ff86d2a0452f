"""Wrappers that inject a reward plugin into Gymnasium envs, vector envs and SB3 VecEnvs."""

from .frames import FINAL_FRAME_KEY, FinalFrameWrapper
from .mixing import MODES, RewardMix, resolve_mode
from .single import RewardWrapper
from .vector import VectorRewardWrapper

try:
    from .sb3 import SB3RewardWrapper
except ImportError:  # pragma: no cover
    SB3RewardWrapper = None  # type: ignore[assignment,misc]

__all__ = [
    "FINAL_FRAME_KEY",
    "FinalFrameWrapper",
    "MODES",
    "RewardMix",
    "RewardWrapper",
    "SB3RewardWrapper",
    "VectorRewardWrapper",
    "resolve_mode",
]

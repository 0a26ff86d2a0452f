"""Wrappers that inject a reward plugin into Gymnasium envs, vector envs and SB3 VecEnvs."""

from .frames import FINAL_FRAME_KEY, FinalFrameWrapper
from .mixing import MODES, RewardMix, resolve_mode
from .single import RewardWrapper
from .vector import VectorRewardWrapper



def __getattr__(name: str):
    # SB3 (and with it torch) is imported only when its wrapper is first used.
    if name == "SB3RewardWrapper":
        from .sb3 import SB3RewardWrapper

        return SB3RewardWrapper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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

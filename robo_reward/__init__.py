"""robo_reward: reinforcement learning on Gymnasium tasks with learned or generated rewards.

The one-line entry points::

    import robo_reward as rr
    env = rr.RewardWrapper(gym.make("Reacher-v5"), "python:fn=mypkg.rewards:reach")
    env = gym.make("robo_reward/metaworld-reach-v3", reward="sparse-success")
"""

from .core import (
    ConfigError,
    MissingDependencyError,
    RewardComputationError,
    RewardOutput,
    RewardPlugin,
    RoboRewardError,
    TaskCardError,
    TransitionBatch,
    UnknownRewardError,
    list_rewards,
    make_reward,
    register_reward,
)
from .wrappers import RewardWrapper, VectorRewardWrapper
from . import envs as envs  # sets MUJOCO_GL for headless rendering, registers robo_reward/<card> ids

_LAZY = {
    "SB3RewardWrapper": ("robo_reward.wrappers.sb3", "SB3RewardWrapper"),
    "make_env": ("robo_reward.envs.make", "make_env"),
    "make_vec_env": ("robo_reward.envs.make", "make_vec_env"),
    "load_card": ("robo_reward.envs.cards", "load_card"),
    "list_cards": ("robo_reward.envs.cards", "list_cards"),
    "TaskCard": ("robo_reward.envs.cards", "TaskCard"),
}


def __getattr__(name: str):
    """Import heavy names (SB3, simulators) only on first use."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'robo_reward' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "MissingDependencyError",
    "RewardComputationError",
    "RewardOutput",
    "RewardPlugin",
    "RewardWrapper",
    "RoboRewardError",
    "SB3RewardWrapper",
    "TaskCardError",
    "TransitionBatch",
    "UnknownRewardError",
    "TaskCard",
    "VectorRewardWrapper",
    "__version__",
    "list_cards",
    "list_rewards",
    "load_card",
    "make_env",
    "make_reward",
    "make_vec_env",
    "register_reward",
]

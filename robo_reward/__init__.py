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
from .wrappers import RewardWrapper, SB3RewardWrapper, VectorRewardWrapper

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
    "VectorRewardWrapper",
    "__version__",
    "list_rewards",
    "make_reward",
    "register_reward",
]

"""The plugin contract, the registry and the library's error types."""

from .errors import (
    ConfigError,
    MissingDependencyError,
    RewardComputationError,
    RoboRewardError,
    TaskCardError,
    UnknownRewardError,
)
from .registry import ENTRY_POINT_GROUP, list_rewards, make_reward, parse_spec, register_reward
from .types import REQUIREMENTS, RewardOutput, RewardPlugin, TransitionBatch

__all__ = [
    "ConfigError",
    "ENTRY_POINT_GROUP",
    "MissingDependencyError",
    "REQUIREMENTS",
    "RewardComputationError",
    "RewardOutput",
    "RewardPlugin",
    "RoboRewardError",
    "TaskCardError",
    "TransitionBatch",
    "UnknownRewardError",
    "list_rewards",
    "make_reward",
    "parse_spec",
    "register_reward",
]

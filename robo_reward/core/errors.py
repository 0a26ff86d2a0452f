"""Exception types raised by robo_reward.

Every error a user can cause (a bad reward spec, a malformed task card, a missing
optional dependency, reward code that returns NaN) is raised as a subclass of
:class:`RoboRewardError`, with a message that says what to do about it.
"""

from __future__ import annotations


class RoboRewardError(Exception):
    """Base class of every error raised on purpose by robo_reward."""


class ConfigError(RoboRewardError, ValueError):
    """A specification, argument or configuration file is invalid."""


class UnknownRewardError(ConfigError, KeyError):
    """A reward name is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0]) if self.args else ""


class TaskCardError(ConfigError):
    """A task card is missing, malformed or refers to something that does not exist."""


class RewardComputationError(RoboRewardError, RuntimeError):
    """A reward plugin raised, or returned values of the wrong shape, dtype or NaN/inf."""


class MissingDependencyError(RoboRewardError, ImportError):
    """An optional dependency needed for a feature is not installed."""

    def __init__(self, package: str, extra: str | None = None, feature: str | None = None):
        self.package = package
        self.extra = extra
        what = f" for {feature}" if feature else ""
        hint = f"pip install 'robo-reward[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"The package '{package}' is needed{what} but is not installed. Install it with: {hint}")


def require(module: str, extra: str | None = None, feature: str | None = None):
    """Import and return ``module``, or raise :class:`MissingDependencyError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, feature) from exc

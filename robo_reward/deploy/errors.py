"""Exceptions raised by :mod:`robo_reward.deploy`.

All of them derive from :class:`~robo_reward.core.errors.RoboRewardError`; the ones a
user causes with bad input (a malformed safety file, an unknown robot URI, a model that
cannot be exported) derive from :class:`~robo_reward.core.errors.ConfigError`.
"""

from __future__ import annotations

from ..core.errors import ConfigError, RoboRewardError


class ExportError(ConfigError):
    """A policy cannot be exported, or the exported policy disagrees with the original (parity check)."""


class RobotError(RoboRewardError, RuntimeError):
    """A robot (or the controller process behind a network robot) reported or caused an error."""


class RobotTimeout(RobotError, TimeoutError):
    """A robot did not answer a request in time (an observation or an action acknowledgement)."""


class RobotDisconnected(RobotError, ConnectionError):
    """The connection to a robot is lost (or was never made)."""


class ProtocolError(RobotError):
    """A message broke the deploy wire protocol (bad frame, bad msgpack, wrong version or fields).

    The stream cannot be trusted after one: the network client drops the connection and
    opens a new one on its next call.

    Args:
        message: what is wrong.
        code: the protocol error code a server answers with (``bad_request`` or
            ``unsupported_version``).
    """

    def __init__(self, message: str, code: str = "bad_request"):
        super().__init__(message)
        self.code = code


__all__ = ["ExportError", "ProtocolError", "RobotDisconnected", "RobotError", "RobotTimeout"]

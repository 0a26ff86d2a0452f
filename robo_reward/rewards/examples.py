"""Hand-written example reward functions for the ``python`` reward plugin.

Each is written from the observation fields of a Gymnasium MuJoCo v5 task, not from
the environment's own reward, and returns a mapping of named terms (the plugin sums
them into the reward and logs each term)::

    robo-reward train --task mujoco-inverted-pendulum-v5 \\
        --reward "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright"

Batched functions take a :class:`~robo_reward.core.types.TransitionBatch` and return
``float[n]`` arrays; :func:`inverted_pendulum_upright_row` shows the per-row form
(``batched=False``). Extra keyword arguments come from the spec's ``kwargs``, e.g.
``"python:fn=robo_reward.rewards.examples:reacher_distance,kwargs={scale: 0.05}"``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..core.errors import RewardComputationError
from ..core.types import TransitionBatch


def _obs(batch: TransitionBatch, dims: int, task: str) -> np.ndarray:
    x = batch.next_obs
    if x is None or isinstance(x, dict):
        raise RewardComputationError(f"{task} reward needs the flat next observation of the batch")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dims:
        raise RewardComputationError(
            f"{task} reward expects observations of shape [n, {dims}], got {x.shape}; is this the right task?"
        )
    return x


def inverted_pendulum_upright(
    batch: TransitionBatch, angle_scale: float = 0.1, center_weight: float = 0.05, velocity_weight: float = 0.01
) -> dict[str, np.ndarray]:
    """InvertedPendulum-v5: keep the pole upright and the cart near the middle.

    Observation fields (``[n, 4]``): cart position ``x``, pole angle ``theta`` (rad,
    0 = upright), cart velocity, pole angular velocity.

    Terms:
        ``upright``: ``exp(-(theta / angle_scale)^2)``, 1 when vertical, ~0.02 at 0.2 rad.
        ``centered``: ``-center_weight * x^2``.
        ``still``: ``-velocity_weight * theta_dot^2``, discourages swinging.
    """
    x = _obs(batch, 4, "inverted_pendulum_upright")
    cart, theta, theta_dot = x[:, 0], x[:, 1], x[:, 3]
    return {
        "upright": np.exp(-np.square(theta / angle_scale)),
        "centered": -center_weight * np.square(cart),
        "still": -velocity_weight * np.square(theta_dot),
    }


def inverted_pendulum_upright_row(
    obs: Any, action: Any, next_obs: Any, info: Mapping[str, Any], angle_scale: float = 0.1
) -> float:
    """Per-row (``batched=False``) form of the upright term of :func:`inverted_pendulum_upright`."""
    theta = float(np.asarray(next_obs, dtype=np.float64)[1])
    return float(np.exp(-((theta / angle_scale) ** 2)))


def reacher_distance(
    batch: TransitionBatch, scale: float = 0.1, control_weight: float = 0.2, bonus_radius: float = 0.02
) -> dict[str, np.ndarray]:
    """Reacher-v5: bring the fingertip to the target, smoothly and without flailing.

    Observation fields (``[n, 10]``): ``cos`` and ``sin`` of both joint angles (4),
    target ``x, y`` (2), joint velocities (2), fingertip minus target ``dx, dy`` (2).

    Terms:
        ``reach``: ``1 - tanh(d / scale)`` with ``d`` the fingertip–target distance
            (dense, bounded, steep near the target).
        ``bonus``: 1 when ``d < bonus_radius``.
        ``control``: ``-control_weight * |a|^2`` (needs the batch's actions).
    """
    x = _obs(batch, 10, "reacher_distance")
    d = np.linalg.norm(x[:, 8:10], axis=1)
    terms = {
        "reach": 1.0 - np.tanh(d / scale),
        "bonus": (d < bonus_radius).astype(np.float64),
    }
    if batch.action is not None:
        a = np.asarray(batch.action, dtype=np.float64).reshape(len(batch), -1)
        terms["control"] = -control_weight * np.square(a).sum(axis=1)
    return terms


def half_cheetah_forward(batch: TransitionBatch, control_weight: float = 0.1) -> dict[str, np.ndarray]:
    """HalfCheetah-v5: run forward, read from the observation's root x-velocity.

    Observation fields (``[n, 17]``): 8 positions (root z and angle, 6 joints; the root
    x is excluded), then 9 velocities starting with the root's x-velocity (index 8).

    Terms:
        ``forward``: the root x-velocity.
        ``control``: ``-control_weight * |a|^2``.
    """
    x = _obs(batch, 17, "half_cheetah_forward")
    terms = {"forward": x[:, 8].copy()}
    if batch.action is not None:
        a = np.asarray(batch.action, dtype=np.float64).reshape(len(batch), -1)
        terms["control"] = -control_weight * np.square(a).sum(axis=1)
    return terms


__all__ = [
    "half_cheetah_forward",
    "inverted_pendulum_upright",
    "inverted_pendulum_upright_row",
    "reacher_distance",
]

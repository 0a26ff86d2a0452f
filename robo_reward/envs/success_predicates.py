"""Success predicates referenced by the shipped task cards.

Each predicate has the signature of :class:`robo_reward.core.success.SuccessSignal`
predicates: ``fn(next_obs, infos) -> bool[n]``, where ``next_obs`` is a batch
``[n, obs_dim]`` (a single ``[obs_dim]`` observation is accepted too) and ``infos``
is a sequence of ``n`` info dicts. The observation indices used here are the ones
documented in the matching task card's ``observation`` fields (the tests check
that they agree).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: Reacher-v5: fingertip − target vector, ``obs[8:10]`` (metres).
REACHER_FINGERTIP_TO_TARGET = slice(8, 10)
#: Reacher success radius (metres).
REACHER_SUCCESS_RADIUS = 0.05

#: Pusher-v5: object position ``obs[17:20]`` and goal position ``obs[20:23]`` (metres).
PUSHER_OBJECT_POS = slice(17, 20)
PUSHER_GOAL_POS = slice(20, 23)
#: Pusher success radius on the table plane (metres); the goal disc has radius 0.08.
PUSHER_SUCCESS_RADIUS = 0.05

#: InvertedPendulum-v5: pole angle ``obs[1]`` (radians from upright).
PENDULUM_ANGLE = 1
#: InvertedPendulum success half-angle (radians, about 2.9 degrees); the env terminates at 0.2.
PENDULUM_UPRIGHT_ANGLE = 0.05


def _rows(next_obs: Any, infos: Sequence[Mapping[str, Any]] | None) -> np.ndarray:
    obs = np.asarray(next_obs, dtype=np.float64)
    if obs.ndim == 1:
        obs = obs[None]
    if infos is not None and len(infos) != obs.shape[0]:
        raise ValueError(f"got {obs.shape[0]} observations but {len(infos)} infos")
    return obs.reshape(obs.shape[0], -1)


def reacher_fingertip_near_target(next_obs: Any, infos: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
    """Reacher-v5: the fingertip is within 5 cm of the target (``||obs[8:10]|| < 0.05``)."""
    obs = _rows(next_obs, infos)
    dist = np.linalg.norm(obs[:, REACHER_FINGERTIP_TO_TARGET], axis=1)
    return dist < REACHER_SUCCESS_RADIUS


def pusher_object_at_goal(next_obs: Any, infos: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
    """Pusher-v5: the object's centre is within 5 cm of the goal's centre on the table plane (x, y)."""
    obs = _rows(next_obs, infos)
    delta = obs[:, PUSHER_OBJECT_POS][:, :2] - obs[:, PUSHER_GOAL_POS][:, :2]
    return np.linalg.norm(delta, axis=1) < PUSHER_SUCCESS_RADIUS


def inverted_pendulum_upright(next_obs: Any, infos: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
    """InvertedPendulum-v5: the pole is within 0.05 rad (~2.9°) of upright (``|obs[1]| < 0.05``)."""
    obs = _rows(next_obs, infos)
    return np.abs(obs[:, PENDULUM_ANGLE]) < PENDULUM_UPRIGHT_ANGLE

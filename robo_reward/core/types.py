"""The reward-plugin contract: :class:`TransitionBatch`, :class:`RewardOutput`, :class:`RewardPlugin`.

Everything is batched: every array has a leading dimension of ``n`` rows, one per
transition, and a single environment is simply ``n == 1``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from .errors import ConfigError, RewardComputationError

#: Everything a plugin may ask the wrappers for (see :attr:`RewardPlugin.requires`).
REQUIREMENTS: frozenset[str] = frozenset({"obs", "action", "next_obs", "info", "frames", "env_reward"})


@dataclass(slots=True)
class TransitionBatch:
    """One step of ``n`` transitions, as handed to :meth:`RewardPlugin.compute`.

    The wrappers fill only what the plugin lists in :attr:`RewardPlugin.requires`;
    a field that was not asked for is ``None``. ``terminated``, ``truncated`` and
    ``env_ids`` are always present.

    Attributes:
        obs: observations the actions were taken in, ``[n, ...]`` (or a dict of such
            arrays for ``Dict`` observation spaces).
        action: the actions, ``[n, ...]``.
        next_obs: the observations that followed. For a transition that ended an
            episode this is the real last observation, never the observation of the
            automatic reset that a vector env may already have done.
        terminated: ``bool[n]``, the episode reached a terminal state.
        truncated: ``bool[n]``, the episode was cut off (time limit).
        env_reward: ``float32[n]``, the environment's own reward for the transition, only
            when ``"env_reward"`` is required (``None`` otherwise).
        infos: one ``info`` dict per row (the info of the step that produced ``next_obs``).
        frames: ``uint8[n, H, W, 3]`` frames rendered after the step (the state of
            ``next_obs``), only when ``"frames"`` is required.
        env_ids: ``int64[n]``, which sub-environment each row comes from. Rows of a
            vector env that are auto-resetting on this step are left out, so ``n`` may be
            smaller than the number of sub-envs; stateful plugins index their state with it.
    """

    terminated: np.ndarray
    truncated: np.ndarray
    env_reward: np.ndarray | None
    env_ids: np.ndarray
    obs: Any = None
    action: Any = None
    next_obs: Any = None
    infos: Sequence[Mapping[str, Any]] | None = None
    frames: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.env_ids.shape[0])

    @property
    def n(self) -> int:
        """Number of transitions in the batch."""
        return len(self)

    @property
    def done(self) -> np.ndarray:
        """``terminated | truncated``."""
        return np.logical_or(self.terminated, self.truncated)

    def select(self, index: np.ndarray) -> "TransitionBatch":
        """Return the rows ``index`` (an integer array or a boolean mask) as a new batch."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)

        def take(x: Any) -> Any:
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: take(v) for k, v in x.items()}
            if isinstance(x, np.ndarray):
                return x[index]
            return [x[i] for i in index]

        return TransitionBatch(
            terminated=self.terminated[index],
            truncated=self.truncated[index],
            env_reward=take(self.env_reward),
            env_ids=self.env_ids[index],
            obs=take(self.obs),
            action=take(self.action),
            next_obs=take(self.next_obs),
            infos=take(self.infos),
            frames=take(self.frames),
        )


@dataclass(slots=True)
class RewardOutput:
    """What a plugin returns: the reward and its named terms, each ``float32[n]``."""

    reward: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)

    def validate(self, n: int, source: str = "reward plugin") -> "RewardOutput":
        """Coerce to ``float32[n]`` and raise :class:`RewardComputationError` on bad shapes or NaN/inf.

        Nothing is clipped or replaced: a non-finite reward is an error, with the rows named.
        """
        self.reward = _as_float32_vector(self.reward, n, f"{source}: reward")
        self.terms = {str(k): _as_float32_vector(v, n, f"{source}: term {k!r}") for k, v in self.terms.items()}
        return self


def _as_float32_vector(x: Any, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise RewardComputationError(f"{what} could not be converted to float32: {exc}") from exc
    if arr.ndim == 0 and n == 1:
        arr = arr.reshape(1)
    if arr.shape != (n,):
        raise RewardComputationError(f"{what} has shape {arr.shape}, expected ({n},): one value per transition")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite).tolist()
        raise RewardComputationError(
            f"{what} is not finite in rows {bad[:10]} (values {arr[~finite][:10].tolist()}); "
            "fix the reward so it returns finite numbers"
        )
    return arr


class RewardPlugin(abc.ABC):
    """Base class of every reward.

    Subclasses set :attr:`requires` (a subset of :data:`REQUIREMENTS`) and implement
    :meth:`compute`. Plugins with per-episode state override :meth:`reset`.

    Class attributes:
        requires: what the wrappers must put in the :class:`TransitionBatch`.
        name: the registry name (set by :func:`robo_reward.core.registry.register_reward`).
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        req = frozenset(cls.__dict__.get("requires", cls.requires))
        unknown = req - REQUIREMENTS
        if unknown:
            raise ConfigError(
                f"{cls.__name__}.requires names {sorted(unknown)}; allowed: {sorted(REQUIREMENTS)}"
            )
        cls.requires = req

    @abc.abstractmethod
    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return the reward (and optional named terms) for every row of ``batch``."""

    def reset(self, mask: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Forget per-episode state for the sub-envs where ``mask`` (``bool[num_envs]``) is true.

        Called by the wrappers when the env is reset (all true) and whenever a
        sub-env starts a new episode. The default does nothing.
        """

    def __call__(self, batch: TransitionBatch) -> RewardOutput:
        """Compute and validate (shape, dtype, finiteness)."""
        out = self.compute(batch)
        if not isinstance(out, RewardOutput):
            out = RewardOutput(np.asarray(out))
        return out.validate(len(batch), source=self.name or type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, requires={sorted(self.requires)})"

"""HERON: preferences from a ranking of reward factors, compared factor by factor.

Bukharin, Li, He, Zhao, "Deep Reinforcement Learning from Hierarchical Preference
Design" (arXiv:2309.02632; earlier "Deep RL from Hierarchical Weak Preference
Feedback"). Instead of writing ``r = Σ_k w_k z_k`` by hand, a designer only *ranks*
the reward factors ``z_1 ≻ z_2 ≻ … ≻ z_K`` by importance. Two trajectories are compared
with the decision tree that ranking induces:

* go through the factors in order of importance;
* factor ``k`` decides when ``|z_k(σ₁) − z_k(σ₂)| > δ_k``, with the margin
  ``δ_k = σ_mult · std(z_k)`` (the standard deviation of the factor over the collected
  trajectories, so the comparison does not depend on the factor's scale); the
  trajectory with the better ``z_k`` is preferred;
* otherwise the comparison falls through to factor ``k+1``;
* a pair that ties at every level gives no preference and is dropped.

The labels then train a reward model with Bradley–Terry
(:func:`~robo_reward.rewards.preference.bt.train_bradley_terry`), which is used for
policy learning like any learned reward. Here a factor's value for a segment is the
sum (or mean, or last value) of its per-step values.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...core.errors import ConfigError
from . import SegmentBatch
from .teachers import Teacher

__all__ = ["heron_margins", "heron_labels", "heron_decisions", "HERONTeacher", "AGGREGATES"]

#: How per-step factor values become one value per segment.
AGGREGATES = ("sum", "mean", "last")


def heron_margins(z: Any, sigma_mult: float = 1.0) -> np.ndarray:
    """``δ_k = σ_mult · std(z_k)`` over the rows of ``z`` (``float[m, K]`` factor values of ``m`` trajectories)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ConfigError(f"factor values must be float[m, K] with m >= 1, got shape {z.shape}")
    if not (np.isfinite(sigma_mult) and sigma_mult >= 0):
        raise ConfigError(f"sigma_mult must be finite and >= 0, got {sigma_mult}")
    if not np.all(np.isfinite(z)):
        raise ConfigError("factor values must be finite")
    return float(sigma_mult) * z.std(axis=0)


def _signs(higher_is_better: Sequence[bool] | None, K: int) -> np.ndarray:
    if higher_is_better is None:
        return np.ones(K)
    hib = list(higher_is_better)
    if len(hib) != K:
        raise ConfigError(f"higher_is_better needs one entry per factor ({K}), got {len(hib)}")
    return np.where(np.asarray(hib, dtype=bool), 1.0, -1.0)


def heron_decisions(
    z1: Any, z2: Any, margins: Any, *, higher_is_better: Sequence[bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Walk HERON's decision tree for each pair.

    Args:
        z1, z2: ``float[n, K]`` factor values of the first and second trajectories,
            columns in order of importance (most important first).
        margins: ``float[K]``, ``δ_k`` (e.g. from :func:`heron_margins`).
        higher_is_better: per factor, whether a larger value is better (default all true).

    Returns:
        ``(labels, level)``: ``labels`` ``float[n]`` is 1 (first preferred), 0 (second)
        or NaN (tied at every level); ``level`` ``int[n]`` is the deciding factor's
        index, −1 for ties.
    """
    z1 = np.asarray(z1, dtype=np.float64)
    z2 = np.asarray(z2, dtype=np.float64)
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ConfigError(f"z1 and z2 must both be float[n, K], got shapes {z1.shape} and {z2.shape}")
    K = z1.shape[1]
    d = np.asarray(margins, dtype=np.float64).reshape(-1)
    if d.shape != (K,) or np.any(d < 0) or not np.all(np.isfinite(d)):
        raise ConfigError(f"margins must be float[{K}], finite and >= 0, got {np.asarray(margins).shape}")
    diff = (z1 - z2) * _signs(higher_is_better, K)[None, :]
    decides = np.abs(diff) > d[None, :]
    any_decides = decides.any(axis=1)
    level = np.where(any_decides, decides.argmax(axis=1), -1)
    rows = np.arange(z1.shape[0])
    deciding_diff = diff[rows, np.maximum(level, 0)]
    labels = np.where(any_decides, (deciding_diff > 0).astype(np.float64), np.nan)
    return labels, level


def heron_labels(
    z1: Any, z2: Any, margins: Any, *, higher_is_better: Sequence[bool] | None = None
) -> np.ndarray:
    """HERON labels (1 / 0 / NaN for pairs tied at every level); see :func:`heron_decisions`."""
    return heron_decisions(z1, z2, margins, higher_is_better=higher_is_better)[0]


class HERONTeacher(Teacher):
    """A teacher that labels segment pairs with HERON's hierarchical comparison.

    Args:
        factors: either a mapping ``{name: fn}`` with each ``fn(obs, action, next_obs) ->
            float[N]`` giving one factor per step, or one function returning ``float[N, K]``.
            The functions get all steps of all segments at once, flattened to ``N = n·L`` rows.
        ranking: the factors in order of importance, most important first: names (with a
            mapping) or column indices (with one function); default the given order.
        sigma_mult: ``σ_mult`` of the margins ``δ_k = σ_mult · std(z_k)``.
        higher_is_better: per *ranked* factor, whether larger is better (default all true).
        aggregate: how per-step values become a segment's ``z_k``: ``sum``, ``mean`` or ``last``.

    The margins come from :meth:`fit_margins` (call it on all collected segments, as
    HERON uses the spread over the data); until then each :meth:`label` call uses the
    spread over the segments it is given.
    """

    def __init__(
        self,
        factors: Mapping[str, Callable[..., Any]] | Callable[..., Any],
        ranking: Sequence[Any] | None = None,
        *,
        sigma_mult: float = 1.0,
        higher_is_better: Sequence[bool] | None = None,
        aggregate: str = "sum",
    ):
        if isinstance(factors, Mapping):
            if not factors or not all(callable(f) for f in factors.values()):
                raise ConfigError("factors must map names to functions fn(obs, action, next_obs) -> float[N]")
            order = list(factors) if ranking is None else list(ranking)
            unknown = [k for k in order if k not in factors]
            if unknown or len(set(order)) != len(order):
                raise ConfigError(f"ranking must list distinct factor names from {list(factors)}, got {order}")
            self.names = [str(k) for k in order]
            self._fns = [factors[k] for k in order]
            self._columns: list[int] | None = None
        elif callable(factors):
            self.names = None  # type: ignore[assignment]
            self._fns = [factors]
            self._columns = None if ranking is None else [int(i) for i in ranking]
            if self._columns is not None and len(set(self._columns)) != len(self._columns):
                raise ConfigError(f"ranking must list distinct column indices, got {list(ranking)}")  # type: ignore[arg-type]
        else:
            raise ConfigError("factors must be a mapping of per-step factor functions or one function returning [N, K]")
        if aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not (np.isfinite(sigma_mult) and sigma_mult >= 0):
            raise ConfigError(f"sigma_mult must be finite and >= 0, got {sigma_mult}")
        self.sigma_mult = float(sigma_mult)
        self.higher_is_better = None if higher_is_better is None else list(higher_is_better)
        self.aggregate = aggregate
        self.margins: np.ndarray | None = None

    def factor_values(self, seg: SegmentBatch) -> np.ndarray:
        """``z``: ``float[n, K]``, each segment's factor values in order of importance."""
        n, length = len(seg), seg.length

        def flat(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x.reshape(n * length, *x.shape[2:])

        args = (flat(seg.obs), flat(seg.action), flat(seg.next_obs))
        if self._columns is None and self.names is not None:
            cols = [np.asarray(f(*args), dtype=np.float64).reshape(-1) for f in self._fns]
            if any(c.size != n * length for c in cols):
                raise ConfigError(f"each factor function must return one value per step ({n * length})")
            steps = np.stack(cols, axis=-1)
        else:
            steps = np.asarray(self._fns[0](*args), dtype=np.float64)
            if steps.ndim != 2 or steps.shape[0] != n * length:
                raise ConfigError(f"the factor function must return float[{n * length}, K], got shape {steps.shape}")
            if self._columns is not None:
                if max(self._columns) >= steps.shape[1] or min(self._columns) < 0:
                    raise ConfigError(f"ranking indices {self._columns} out of range for {steps.shape[1]} factors")
                steps = steps[:, self._columns]
        if not np.all(np.isfinite(steps)):
            raise ConfigError("factor functions returned non-finite values")
        steps = steps.reshape(n, length, -1)
        if self.aggregate == "sum":
            return steps.sum(axis=1)
        if self.aggregate == "mean":
            return steps.mean(axis=1)
        return steps[:, -1]

    def fit_margins(self, segments: SegmentBatch) -> np.ndarray:
        """Set ``δ_k = σ_mult · std(z_k)`` from the factor values of ``segments``; returns the margins."""
        self.margins = heron_margins(self.factor_values(segments), self.sigma_mult)
        return self.margins

    def label(self, seg1: SegmentBatch, seg2: SegmentBatch) -> np.ndarray:
        """HERON labels: 1, 0, or NaN for pairs tied at every level (dropped by :meth:`query`)."""
        if len(seg1) != len(seg2):
            raise ConfigError(f"seg1 and seg2 must hold the same number of segments ({len(seg1)} != {len(seg2)})")
        z1, z2 = self.factor_values(seg1), self.factor_values(seg2)
        margins = self.margins if self.margins is not None else heron_margins(np.concatenate([z1, z2]), self.sigma_mult)
        return heron_labels(z1, z2, margins, higher_is_better=self.higher_is_better)

"""Statistics for benchmark results, after Agarwal et al. 2021 (NeurIPS), "Deep Reinforcement
Learning at the Edge of the Statistical Precipice" (arXiv:2108.13264).

A few seeds per task is all RL experiments can usually afford, so point estimates are
reported with interval estimates that account for that:

* :func:`iqm` — the **interquartile mean**: the mean of the middle 50 % of all runs (of
  all tasks pooled), robust to outlier runs yet using more of the data than the median.
  Computed as ``scipy.stats.trim_mean(x, 0.25)``, like ``rliable.metrics.aggregate_iqm``
  (for ``n`` runs, ``floor(n / 4)`` are cut from each end).
* :func:`stratified_bootstrap` — **stratified bootstrap** confidence intervals: each
  bootstrap sample redraws, *within each task*, as many runs as that task has, with
  replacement, and the statistic is recomputed on the redrawn set; the interval is the
  percentile interval of the bootstrap distribution (``rliable``'s default). With one
  task it is the ordinary percentile bootstrap over seeds.
* :func:`probability_of_improvement` — ``P(X > Y)``: the probability that a run of
  algorithm ``X`` scores higher than a run of ``Y`` on the same task (ties count ½;
  the Mann–Whitney ``U / (m·n)``), averaged over tasks, with a stratified-bootstrap
  interval (runs of ``X`` and of ``Y`` redrawn independently within each task).
* :func:`curve_band` — mean and bootstrap interval across seeds at every point of a
  learning curve.
* :func:`correlations` — Pearson and Spearman correlation of a learned reward with the
  ground truth, and the Pearson distance ``sqrt((1 - r) / 2)``
  (:func:`pearson_distance_from_r`).

``rliable`` (the authors' library) implements the same estimators, but its 1.2 release
needs ``arch < 8``, which does not import with pandas 3; this module uses numpy and
scipy only, and ``tests/test_bench.py`` checks it against hand-computed values.

Scores are passed *per task*: a sequence with one 1-D array of run scores per task
(tasks may have different numbers of runs), or a 2-D array ``[runs, tasks]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

from ..core.errors import ConfigError

PerTask = Union[np.ndarray, Sequence[Sequence[float]]]
"""Run scores grouped by task: a list of 1-D arrays, or a ``[runs, tasks]`` array."""

Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps a ``[reps, n]`` array of pooled run scores to ``[reps]`` values (row-wise)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval.

    Attributes:
        value: the statistic on the data.
        lo, hi: the percentile-bootstrap interval (equal to ``value`` with a single run).
        n: number of runs the estimate pools (over all tasks).
        confidence: the interval's level.
    """

    value: float
    lo: float
    hi: float
    n: int
    confidence: float = 0.95

    def format(self, digits: int = 2) -> str:
        """``"0.53 [0.41, 0.66]"``."""
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


# ----------------------------------------------------------------------------- helpers


def as_per_task(scores: PerTask, what: str = "scores") -> list[np.ndarray]:
    """Normalise ``scores`` to a list of finite 1-D float arrays, one per task (none empty).

    A 2-D array is read as ``[runs, tasks]`` (``rliable``'s layout); a 1-D array, or a flat
    list of numbers, as the runs of one task.

    Raises:
        ConfigError: no tasks, a task without runs, or a NaN/infinite score.
    """
    if isinstance(scores, np.ndarray):
        if scores.ndim == 1:
            groups = [scores]
        elif scores.ndim == 2:
            groups = [scores[:, j] for j in range(scores.shape[1])]
        else:
            raise ConfigError(f"{what}: expected a [runs, tasks] array, got shape {scores.shape}")
    else:
        groups = list(scores)
        if groups and all(np.ndim(g) == 0 for g in groups):  # a flat list: one task
            groups = [np.asarray(groups, dtype=np.float64)]
    out = []
    for t, g in enumerate(groups):
        a = np.asarray(g, dtype=np.float64).reshape(-1)
        if a.size == 0:
            raise ConfigError(f"{what}: task {t} has no runs")
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{what}: task {t} has NaN or infinite scores {a.tolist()}")
        out.append(a)
    if not out:
        raise ConfigError(f"{what}: no tasks")
    return out


def _check(confidence: float, reps: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    from scipy import stats

    return np.asarray(stats.trim_mean(x, 0.25, axis=-1), dtype=np.float64)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def _median_rows(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=-1)


STATISTICS: dict[str, Statistic] = {"iqm": _iqm_rows, "mean": _mean_rows, "median": _median_rows}
"""Statistics that :func:`stratified_bootstrap` accepts by name."""


def _statistic(stat: str | Statistic) -> Statistic:
    if callable(stat):
        return stat
    try:
        return STATISTICS[stat]
    except KeyError:
        raise ConfigError(f"unknown statistic {stat!r}; choose one of {sorted(STATISTICS)} or pass a function") from None


# ----------------------------------------------------------------------------- point estimates


def iqm(scores: PerTask | Sequence[float]) -> float:
    """Interquartile mean of all runs pooled over tasks (``scipy.stats.trim_mean(x, 0.25)``).

    >>> iqm([1, 2, 3, 4, 5, 6, 7, 8])   # mean of 3, 4, 5, 6
    4.5
    """
    x = np.concatenate(as_per_task(scores))
    return float(_iqm_rows(x[None, :])[0])


# ----------------------------------------------------------------------------- bootstrap


def bootstrap_samples(per_task: Sequence[np.ndarray], reps: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, N]`` stratified resamples: each task's ``n_t`` runs redrawn with replacement, tasks side by side."""
    cols = [x[rng.integers(0, x.size, size=(reps, x.size))] for x in per_task]
    return np.concatenate(cols, axis=1)


def stratified_bootstrap(
    scores: PerTask,
    statistic: str | Statistic = "iqm",
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """A statistic of pooled runs with a stratified-bootstrap percentile interval.

    Args:
        scores: run scores per task (see :data:`PerTask`).
        statistic: ``"iqm"`` (default), ``"mean"``, ``"median"`` or a function mapping a
            ``[reps, n]`` array to ``[reps]`` row-wise values.
        reps: bootstrap resamples.
        confidence: interval level.
        seed: seed of the resampling (the same seed gives the same interval).
    """
    _check(confidence, reps)
    per_task = as_per_task(scores)
    fn = _statistic(statistic)
    pooled = np.concatenate(per_task)
    value = float(np.asarray(fn(pooled[None, :])).reshape(-1)[0])
    rng = np.random.default_rng(seed)
    boot = np.asarray(fn(bootstrap_samples(per_task, reps, rng)), dtype=np.float64).reshape(-1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return Estimate(value, float(lo), float(hi), int(pooled.size), confidence)


# ----------------------------------------------------------------------------- probability of improvement


def _poi_rows(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
    """``P(X > Y)`` (ties ½) averaged over tasks; ``xs[t]``, ``ys[t]`` are ``[reps, n_t]``."""
    per_task = []
    for x, y in zip(xs, ys):
        gt = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
        eq = (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
        per_task.append(gt + 0.5 * eq)
    return np.mean(per_task, axis=0)


def probability_of_improvement(
    scores_x: PerTask,
    scores_y: PerTask,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """``P(X > Y)`` averaged over tasks, with a stratified-bootstrap interval.

    For each task ``t``: ``P_t = (1 / (m n)) Σ_i Σ_j S(x_i, y_j)`` with ``S = 1`` if
    ``x_i > y_j``, ``½`` if equal, ``0`` otherwise (the Mann–Whitney ``U`` of ``x``
    divided by ``m n``). The result is ``mean_t P_t``. ``0.5`` means neither is better;
    Agarwal et al. call an improvement meaningful when the interval's lower end is
    above 0.5.

    Raises:
        ConfigError: ``scores_x`` and ``scores_y`` cover different numbers of tasks.
    """
    _check(confidence, reps)
    xs, ys = as_per_task(scores_x, "scores_x"), as_per_task(scores_y, "scores_y")
    if len(xs) != len(ys):
        raise ConfigError(f"probability_of_improvement: X has {len(xs)} tasks, Y has {len(ys)}")
    value = float(_poi_rows([x[None, :] for x in xs], [y[None, :] for y in ys])[0])
    rng = np.random.default_rng(seed)
    bx = [x[rng.integers(0, x.size, size=(reps, x.size))] for x in xs]
    by = [y[rng.integers(0, y.size, size=(reps, y.size))] for y in ys]
    boot = _poi_rows(bx, by)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return Estimate(value, float(lo), float(hi), int(sum(x.size for x in xs) + sum(y.size for y in ys)), confidence)


# ----------------------------------------------------------------------------- learning curves


def curve_band(
    values: np.ndarray, *, reps: int = 1000, confidence: float = 0.95, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across seeds at each curve point, with a percentile-bootstrap interval over seeds.

    Args:
        values: ``[seeds, points]``; NaN where a seed has no value (e.g. a shorter run).
            Each point uses the seeds that have a value there.

    Returns:
        ``(mean, lo, hi)``, each ``[points]``; NaN where no seed has a value, and
        ``lo == hi == mean`` where only one does.
    """
    _check(confidence, reps)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ConfigError(f"curve_band expects [seeds, points], got shape {v.shape}")
    s, p = v.shape
    mean = np.full(p, np.nan)
    lo = np.full(p, np.nan)
    hi = np.full(p, np.nan)
    if s == 0:
        return mean, lo, hi
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, s, size=(reps, s))
    alpha = (1.0 - confidence) / 2.0
    valid = np.isfinite(v)
    for count in np.unique(valid.sum(axis=0)):
        cols = np.flatnonzero(valid.sum(axis=0) == count)
        if count == 0:
            continue
        sub = v[:, cols]
        m = np.nanmean(sub, axis=0)
        mean[cols] = m
        if count == 1:
            lo[cols] = hi[cols] = m
            continue
        boot = np.nanmean(sub[idx], axis=1) if count == s else _nan_boot(sub, rng, reps)
        q = np.nanquantile(boot, [alpha, 1.0 - alpha], axis=0)
        lo[cols], hi[cols] = q[0], q[1]
    return mean, lo, hi


def _nan_boot(sub: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """Bootstrap means per column, resampling only the seeds that have a value in that column."""
    out = np.empty((reps, sub.shape[1]))
    for j in range(sub.shape[1]):
        col = sub[np.isfinite(sub[:, j]), j]
        out[:, j] = col[rng.integers(0, col.size, size=(reps, col.size))].mean(axis=1)
    return out


def interpolate_curve(steps: Sequence[float], values: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """``values`` at ``grid`` points by linear interpolation; NaN outside the run's step range or where values are missing."""
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    keep = np.isfinite(s) & np.isfinite(y)
    s, y = s[keep], y[keep]
    out = np.full(grid.shape, np.nan)
    if s.size == 0:
        return out
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    inside = (grid >= s[0]) & (grid <= s[-1])
    out[inside] = np.interp(grid[inside], s, y)
    return out


# ----------------------------------------------------------------------------- correlation


def pearson_distance_from_r(r: float | None) -> float | None:
    """The Pearson distance ``sqrt((1 - r) / 2)`` of a Pearson correlation ``r`` (``None`` stays ``None``).

    0 when the two samples are perfectly positively correlated, ``1/sqrt(2)`` (0.71) when
    they are uncorrelated, 1 when perfectly anti-correlated. EPIC (Gleave et al. 2021)
    applies it to rewards *after* canonicalising them; on raw rewards it is only a
    rescaled correlation (see :mod:`robo_reward.bench.alignment`). For samples, it equals
    :func:`robo_reward.metrics.pearson_distance` of the same samples.
    """
    if r is None:
        return None
    r = float(r)
    if not np.isfinite(r):
        return None
    return float(np.sqrt(max(0.0, (1.0 - min(max(r, -1.0), 1.0)) / 2.0)))


def correlations(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """Pearson and Spearman correlation of paired samples, and the Pearson distance ``sqrt((1 - r) / 2)``.

    Returns ``{"pearson", "spearman", "pearson_distance", "n"}``; the first three are
    ``None`` when undefined (fewer than 3 pairs, or a constant side).
    """
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ConfigError(f"correlations: {a.size} values against {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": None, "spearman": None, "pearson_distance": None, "n": int(a.size)}
    from scipy import stats

    r = float(stats.pearsonr(a, b).statistic)
    return {
        "pearson": r,
        "spearman": float(stats.spearmanr(a, b).statistic),
        "pearson_distance": pearson_distance_from_r(r),
        "n": int(a.size),
    }


__all__ = [
    "Estimate",
    "STATISTICS",
    "as_per_task",
    "bootstrap_samples",
    "correlations",
    "curve_band",
    "interpolate_curve",
    "iqm",
    "pearson_distance_from_r",
    "probability_of_improvement",
    "stratified_bootstrap",
]

"""How well a VLM reward tracks the ground truth: EPIC-style distance and a plot over an episode.

Rocamonde et al. (2023) evaluate CLIP reward models against ground-truth labels with
the EPIC distance of Gleave et al. (2021) in the form ``D = √((1 − ρ)/2)``, where ``ρ``
is the Pearson correlation between the reward and the labels over a set of states
(0: perfectly correlated, ``1/√2`` ≈ 0.71: uncorrelated, 1: anti-correlated). The
distance ignores positive affine changes of either reward (shift and scale), which
is why it suits CLIP scores, whose offset and spread are arbitrary.

This is the state-only, Pearson form. The canonicalised EPIC distance between reward
functions of transitions lives with the other reward distances (STARC/EPIC).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...core.errors import ConfigError, MissingDependencyError


def pearson_distance(reward: Any, ground_truth: Any) -> float:
    """EPIC-style distance ``√((1 − ρ)/2)`` between a reward and ground truth over the same frames.

    Args:
        reward: ``[n]`` rewards.
        ground_truth: ``[n]`` labels (0/1 success) or ground-truth rewards.

    Raises:
        ConfigError: different lengths, fewer than 2 values, non-finite values, or a
            constant input (the correlation is undefined).
    """
    rho = pearson_correlation(reward, ground_truth)
    return float(np.sqrt(max(0.0, (1.0 - rho) / 2.0)))


def pearson_correlation(a: Any, b: Any) -> float:
    """Pearson correlation of two equal-length vectors (computed in float64)."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ConfigError(f"reward and ground truth differ in length: {x.size} vs {y.size}")
    if x.size < 2:
        raise ConfigError("at least two frames are needed to correlate a reward with the ground truth")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError("reward and ground truth must be finite")
    xc, yc = x - x.mean(), y - y.mean()
    sx, sy = np.sqrt((xc * xc).sum()), np.sqrt((yc * yc).sum())
    if sx == 0.0 or sy == 0.0:
        which = "the reward" if sx == 0.0 else "the ground truth"
        raise ConfigError(f"{which} is constant over these frames, so its correlation is undefined")
    return float(np.clip((xc * yc).sum() / (sx * sy), -1.0, 1.0))


@dataclass(frozen=True)
class RewardEvaluation:
    """A reward compared with ground truth over ``n`` frames.

    Attributes:
        n: number of frames.
        pearson: Pearson correlation ``ρ``.
        epic_distance: ``√((1 − ρ)/2)``.
        reward_mean, reward_std: of the reward.
        mean_reward_success, mean_reward_failure: mean reward where the label is true /
            false (binary labels only, else ``None``).
    """

    n: int
    pearson: float
    epic_distance: float
    reward_mean: float
    reward_std: float
    mean_reward_success: float | None = None
    mean_reward_failure: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """As a plain dict (for JSON)."""
        return asdict(self)


def evaluate_reward(reward: Any, ground_truth: Any) -> RewardEvaluation:
    """Compare ``reward`` with ground-truth labels or rewards (see :func:`pearson_distance`)."""
    r = np.asarray(reward, dtype=np.float64).reshape(-1)
    g = np.asarray(ground_truth, dtype=np.float64).reshape(-1)
    rho = pearson_correlation(r, g)
    binary = bool(np.isin(g, (0.0, 1.0)).all())
    succ = fail = None
    if binary:
        succ = float(r[g == 1.0].mean()) if (g == 1.0).any() else None
        fail = float(r[g == 0.0].mean()) if (g == 0.0).any() else None
    return RewardEvaluation(
        n=int(r.size),
        pearson=rho,
        epic_distance=float(np.sqrt(max(0.0, (1.0 - rho) / 2.0))),
        reward_mean=float(r.mean()),
        reward_std=float(r.std()),
        mean_reward_success=succ,
        mean_reward_failure=fail,
    )


def plot_reward_vs_ground_truth(
    reward: Any,
    ground_truth: Any | None = None,
    path: str | Path | None = None,
    *,
    title: str = "VLM reward over the episode",
    reward_label: str = "VLM reward",
    ground_truth_label: str = "ground truth",
    extra: dict[str, Sequence[float]] | None = None,
) -> Any:
    """Plot the reward per frame, with the ground truth on a second axis; save it to ``path`` if given.

    Binary ground truth (success labels) is drawn as shaded spans, anything else as a
    second line. ``extra`` adds more named per-frame series on the reward axis (e.g.
    the ``cosine_goal`` term). The EPIC-style distance goes in the title when it is
    defined. Returns the matplotlib ``Figure``.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "bench", "reward plots") from exc

    r = np.asarray(reward, dtype=np.float64).reshape(-1)
    t = np.arange(r.size)
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    ax.plot(t, r, color="tab:blue", lw=1.5, label=reward_label)
    for name, series in (extra or {}).items():
        ax.plot(t, np.asarray(series, dtype=np.float64).reshape(-1), lw=1.0, alpha=0.7, label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel(reward_label)
    full_title = title
    if ground_truth is not None:
        g = np.asarray(ground_truth, dtype=np.float64).reshape(-1)
        if g.size != r.size:
            plt.close(fig)
            raise ConfigError(f"reward and ground truth differ in length: {r.size} vs {g.size}")
        if np.isin(g, (0.0, 1.0)).all():
            ax.fill_between(
                t, 0, 1, where=g > 0.5, step="mid", color="tab:green", alpha=0.2,
                transform=ax.get_xaxis_transform(), label=f"{ground_truth_label} (true)",
            )
        else:
            ax2 = ax.twinx()
            ax2.plot(t, g, color="tab:orange", lw=1.2, label=ground_truth_label)
            ax2.set_ylabel(ground_truth_label)
            ax2.legend(loc="upper right", fontsize=8)
        try:
            full_title += f"  (EPIC distance {pearson_distance(r, g):.3f})"
        except ConfigError:
            pass
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(full_title, fontsize=10)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig

"""Matplotlib figures of benchmark results (PNG, headless).

* :func:`plot_curves` — learning curves of one task: ground-truth return and success
  rate against env steps, mean and 95 % band across seeds, one colour per reward,
  one line style per agent.
* :func:`plot_intervals` — final scores per task: IQM with its stratified-bootstrap
  interval for every reward × agent (the interval-estimate plot of Agarwal et al.).
* :func:`plot_aggregate` — the same over all tasks.
* :func:`plot_improvement` — probability of improvement between rewards, with intervals.
* :func:`plot_reward_vs_gt` — learned reward against ground-truth reward, per step of
  the evaluation rollouts, one panel per reward × task, with the correlation ``r`` and
  the Pearson distance ``D = sqrt((1 - r) / 2)`` (without EPIC's canonicalisation).

Each function writes a PNG and returns its path, or returns ``None`` when there is
nothing to plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .results import Curve

_LINESTYLES = ["-", "--", ":", "-."]
_METRIC_LABEL = {
    "gt_return": "ground-truth return",
    "success_rate": "success rate",
    "learned_return": "learned-reward return",
    "gt_norm": "normalised GT return",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "grid.alpha": 0.3, "figure.dpi": 110})
    return plt


def reward_colors(rewards: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per reward label (the same in every figure of a report)."""
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {r: cmap(i % 10) for i, r in enumerate(rewards)}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _suptitle(fig: Any, text: str, size: int = 12) -> None:
    """A figure title wrapped to the figure's width (so narrow figures do not cut it off)."""
    import textwrap

    chars = max(30, int(fig.get_figwidth() * 72 / (size * 0.52)))
    fig.suptitle("\n".join(textwrap.wrap(text, chars)), fontsize=size)


def _steps_fmt(ax: Any) -> None:
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def plot_curves(curves: Sequence[Curve], task: str, path: Path, colors: dict[str, Any],
                agents: Sequence[str], confidence: float = 0.95) -> Path | None:
    """Learning curves of ``task``: GT return (left) and success rate (right) against env steps."""
    mine = [c for c in curves if c.task == task]
    if not mine:
        return None
    plt = _plt()
    metrics = [m for m in ("gt_return", "success_rate") if any(c.metric == m for c in mine)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sources = set()
        for c in (c for c in mine if c.metric == metric):
            sources.add(c.source)
            ls = _LINESTYLES[list(agents).index(c.agent) % len(_LINESTYLES)] if c.agent in agents else "-"
            label = c.reward if len(agents) == 1 else f"{c.reward} · {c.agent}"
            ax.plot(c.steps, c.mean, ls, color=colors.get(c.reward), lw=2, label=f"{label} (n={c.seeds})")
            if c.seeds > 1:
                ax.fill_between(c.steps, c.lo, c.hi, color=colors.get(c.reward), alpha=0.2, lw=0)
        src = "deterministic evaluations" if sources == {"eval"} else "training episodes"
        ax.set_title(f"{_METRIC_LABEL[metric]} ({src})")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(_METRIC_LABEL[metric])
        if metric == "success_rate":
            ax.set_ylim(-0.03, 1.03)
        _steps_fmt(ax)
    axes[0][0].legend(loc="best", frameon=False)
    _suptitle(fig, f"{task}: mean and {int(confidence * 100)}% bootstrap interval across seeds")
    fig.tight_layout()
    return _save(fig, path)


def _interval_panel(ax: Any, rows: Any, prefix: str, colors: dict[str, Any], multi_agent: bool,
                    xlim: tuple[float, float] | None) -> None:
    labels = []
    for i, (_, r) in enumerate(rows.iterrows()):
        y = len(rows) - 1 - i
        v, lo, hi = r[f"{prefix}_iqm"], r[f"{prefix}_lo"], r[f"{prefix}_hi"]
        col = colors.get(r["reward"])
        if np.isfinite(lo) and np.isfinite(hi):
            ax.barh(y, max(hi - lo, 1e-9), left=lo, height=0.6, color=col, alpha=0.35)
        ax.plot([v], [y], "o", color=col, ms=6)
        labels.append((y, f"{r['reward']} · {r['agent']}" if multi_agent else str(r["reward"])))
    ax.set_yticks([y for y, _ in labels])
    ax.set_yticklabels([t for _, t in labels])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(axis="y", visible=False)
    ax.use_sticky_edges = False  # leave a margin beyond the widest interval
    ax.set_xmargin(0.06)
    ax.autoscale_view()
    if xlim is not None:
        ax.set_xlim(*xlim)


def plot_intervals(cells: Any, metric: str, path: Path, colors: dict[str, Any], confidence: float = 0.95,
                   ncols: int = 3) -> Path | None:
    """Final ``success`` or ``gt`` IQM with intervals, one panel per task (``cells`` from :func:`cell_table`)."""
    prefix = {"success_rate": "success", "gt_return": "gt"}[metric]
    if cells.empty or not np.isfinite(cells[f"{prefix}_iqm"]).any():
        return None
    plt = _plt()
    tasks = list(dict.fromkeys(cells["task"]))
    multi_agent = cells["agent"].nunique() > 1
    ncols = min(ncols, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    per_task_rows = max(len(cells[cells["task"] == t]) for t in tasks)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.5, 4.6 * ncols), 1.2 + (0.42 * per_task_rows + 0.6) * nrows),
                             squeeze=False)
    for k, task in enumerate(tasks):
        ax = axes[k // ncols][k % ncols]
        _interval_panel(ax, cells[cells["task"] == task], prefix, colors, multi_agent,
                        (-0.03, 1.03) if metric == "success_rate" else None)
        ax.set_title(task)
        ax.set_xlabel(f"{_METRIC_LABEL[metric]} (IQM)")
    for k in range(len(tasks), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    seeds = f"{int(cells['seeds'].min())}–{int(cells['seeds'].max())}" if cells["seeds"].nunique() > 1 \
        else str(int(cells["seeds"].iloc[0]))
    _suptitle(fig, f"final {_METRIC_LABEL[metric]}: IQM over {seeds} seeds, "
                   f"{int(confidence * 100)}% stratified-bootstrap interval")
    fig.tight_layout()
    return _save(fig, path)


def plot_aggregate(agg: Any, path: Path, colors: dict[str, Any], confidence: float = 0.95) -> Path | None:
    """IQM over all tasks of success rate and normalised GT return (``agg`` from :func:`aggregate_table`)."""
    if agg.empty:
        return None
    plt = _plt()
    multi_agent = agg["agent"].nunique() > 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.2 + 0.45 * len(agg)), squeeze=False)
    for ax, prefix, label in ((axes[0][0], "success", "success rate"), (axes[0][1], "gt_norm", "normalised GT return")):
        _interval_panel(ax, agg, prefix, colors, multi_agent, (-0.03, 1.03))
        ax.set_xlabel(f"{label} (IQM)")
    n_tasks = int(agg["tasks"].max())
    _suptitle(fig, f"all tasks ({n_tasks}): IQM, {int(confidence * 100)}% stratified-bootstrap interval; "
                   "GT return min–max normalised per task")
    fig.tight_layout()
    return _save(fig, path)


def plot_improvement(poi: Any, path: Path, confidence: float = 0.95) -> Path | None:
    """``P(X > Y)`` with intervals for each reward pair; over all tasks when there are several, else per task."""
    if poi.empty:
        return None
    scope = "all tasks" if (poi["scope"] == "all tasks").any() else None
    rows = poi[poi["scope"] == scope] if scope else poi
    plt = _plt()
    metrics = list(dict.fromkeys(rows["metric"]))
    multi_agent = rows["agent"].nunique() > 1
    pairs = rows[rows["metric"] == metrics[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 1.6 + 0.45 * len(pairs)), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sub = rows[rows["metric"] == metric].reset_index(drop=True)
        labels = []
        for i, r in sub.iterrows():
            y = len(sub) - 1 - i
            col = "tab:green" if r["poi_lo"] > 0.5 else ("tab:red" if r["poi_hi"] < 0.5 else "tab:gray")
            ax.barh(y, max(r["poi_hi"] - r["poi_lo"], 1e-9), left=r["poi_lo"], height=0.6, color=col, alpha=0.35)
            ax.plot([r["poi"]], [y], "o", color=col, ms=6)
            where = "" if scope or rows["scope"].nunique() == 1 else f" ({r['scope']})"
            agent = f" [{r['agent']}]" if multi_agent else ""
            labels.append((y, f"{r['x']} > {r['y']}{agent}{where}"))
        ax.axvline(0.5, color="k", lw=1, ls="--", alpha=0.6)
        ax.set_yticks([y for y, _ in labels])
        ax.set_yticklabels([t for _, t in labels])
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.6, len(sub) - 0.4)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"P(X > Y), {_METRIC_LABEL[metric]}")
        if not scope and rows["scope"].nunique() == 1:
            ax.set_title(str(rows["scope"].iloc[0]))
    _suptitle(fig, f"probability of improvement{' over all tasks' if scope else ''}, "
                   f"{int(confidence * 100)}% stratified-bootstrap interval (green/red: the interval excludes 0.5)",
                   11)
    fig.tight_layout()
    return _save(fig, path)


def plot_reward_vs_gt(points: dict[tuple[str, str], list[tuple[int, np.ndarray, np.ndarray]]], path: Path,
                      colors: dict[str, Any], correlations: dict[tuple[str, str], float],
                      max_points: int = 3000, seed: int = 0) -> Path | None:
    """Learned vs ground-truth reward per step of evaluation rollouts.

    Args:
        points: ``{(reward, task): [(seed, learned[T], gt[T]), ...]}``.
        correlations: ``{(reward, task): Pearson r of the pooled steps}`` (shown in each panel,
            with its Pearson distance ``sqrt((1 - r) / 2)``).
    """
    if not points:
        return None
    plt = _plt()
    rewards = list(dict.fromkeys(r for r, _ in points))
    tasks = list(dict.fromkeys(t for _, t in points))
    fig, axes = plt.subplots(len(rewards), len(tasks), figsize=(max(7.0, 3.8 * len(tasks) + 0.4), 3.3 * len(rewards)),
                             squeeze=False)
    rng = np.random.default_rng(seed)
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for i, reward in enumerate(rewards):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            runs = points.get((reward, task))
            if not runs:
                ax.set_visible(False)
                continue
            per_run = max(1, max_points // len(runs))
            for k, (s, learned, gt) in enumerate(runs):
                idx = np.arange(learned.size)
                if idx.size > per_run:
                    idx = np.sort(rng.choice(idx, per_run, replace=False))
                ax.scatter(gt[idx], learned[idx], s=6, alpha=0.35, color=colors.get(reward.split(" · ")[0]),
                           marker=markers[k % len(markers)], label=f"seed {s}", rasterized=True)
            r = correlations.get((reward, task))
            if r is None or not np.isfinite(r):
                rtxt = "r = n/a"
            else:
                rtxt = f"r = {r:+.2f}, D = {math.sqrt(max(0.0, (1.0 - r) / 2.0)):.2f}"
                rtxt += " (seeds pooled)" if len(runs) > 1 else ""
            ax.set_title(f"{reward} · {task}\n{rtxt}", fontsize=10)
            ax.set_xlabel("ground-truth reward (per step)")
            if j == 0:
                ax.set_ylabel("learned reward (per step)")
            if len(runs) > 1:
                leg = ax.legend(loc="best", frameon=False, markerscale=2, fontsize=8)
                for h in leg.legend_handles:
                    h.set_alpha(1)
    _suptitle(fig, "learned reward vs ground truth on evaluation rollouts (Pearson r over steps; "
                   "D = sqrt((1 - r)/2), not canonicalised)")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["plot_aggregate", "plot_curves", "plot_improvement", "plot_intervals", "plot_reward_vs_gt", "reward_colors"]

"""Read run folders into tables: every evaluation, one row per run, and the statistics per cell.

Works on any folder tree of run folders (anything with a ``config.yaml`` written by
``robo-reward train``): those made by ``robo-reward bench run`` carry their suite, reward
label and seed in ``bench_cell.json``; for others the reward label is derived from the
spec (:func:`~robo_reward.bench.suite.reward_label`) and the suite is empty.

Tables (pandas DataFrames):

* :func:`evaluations_table` — tidy, one row per evaluation: ``source`` is ``train``
  (a ``metrics.jsonl`` line: means over the last training episodes), ``eval``
  (a periodic deterministic evaluation, ``evals.jsonl``) or ``final`` (the final
  deterministic evaluation, ``eval.json``).
* :func:`runs_table` — one row per run: final success rate and ground-truth (GT)
  return, learned-reward return, reward alignment (Pearson and Spearman correlation of
  the learned reward with the GT reward per step of evaluation rollouts, and the Pearson
  distance ``sqrt((1 - r) / 2)``, without EPIC's canonicalisation), wall time, env steps/s.
* :func:`cell_table` — per task × reward × agent: IQM with 95 % stratified-bootstrap
  intervals over seeds of the final success rate and GT return; reward alignment
  averaged over seeds.
* :func:`aggregate_table` — per reward × agent over all tasks: IQM of success rate and
  of per-task min–max-normalised GT return, with stratified-bootstrap intervals.
* :func:`improvement_table` — probability of improvement between every two rewards,
  per task and over all tasks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..core.errors import ConfigError
from . import stats
from .suite import reward_label
from .worker import CELL_JSON

ENV_LABEL = "env"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill
    return out


@dataclass
class RunRecord:
    """Everything the tables need from one run folder."""

    run_dir: Path
    suite: str
    task: str
    reward: str
    reward_spec: Any
    agent: str
    seed: int
    steps_target: int
    config: dict[str, Any]
    summary: dict[str, Any] | None = None
    final_eval: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    alignment: dict[str, Any] | None = None
    rel: str = ""

    @property
    def finished(self) -> bool:
        """Training reached its target and ``summary.json`` was written."""
        return self.summary is not None

    @property
    def key(self) -> tuple[str, str, str]:
        """The run's cell without the seed: ``(task, reward, agent)``."""
        return (self.task, self.reward, self.agent)

    @property
    def video(self) -> Path | None:
        """The run's evaluation video, when it has one."""
        rel = (self.summary or {}).get("video")
        p = self.run_dir / rel if rel else self.run_dir / "videos" / "eval.mp4"
        return p if p.is_file() else None


def find_run_dirs(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (``root`` itself if it is one), sorted."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if (root / "config.yaml").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("config.yaml") if ".tmp" not in p.name)


def load_run(run_dir: str | Path) -> RunRecord:
    """Read one run folder (finished or not)."""
    import yaml

    run_dir = Path(run_dir)
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {run_dir / 'config.yaml'}: {exc}") from exc
    cell = _read_json(run_dir / CELL_JSON) or {}
    summary = _read_json(run_dir / "summary.json")
    final = _read_json(run_dir / "eval.json") or (summary or {}).get("final_eval")
    spec = config.get("reward")
    return RunRecord(
        run_dir=run_dir,
        suite=str(cell.get("suite") or ""),
        task=str(cell.get("task") or config.get("task")),
        reward=str(cell.get("reward") or reward_label(spec)),
        reward_spec=spec if spec is not None else ENV_LABEL,
        agent=str(cell.get("agent") or config.get("agent")),
        seed=int(cell.get("seed", config.get("seed", 0))),
        steps_target=int(config.get("steps") or 0),
        config=config,
        summary=summary,
        final_eval=final,
        metrics=_read_jsonl(run_dir / "metrics.jsonl"),
        evals=_read_jsonl(run_dir / "evals.jsonl"),
        alignment=_read_json(run_dir / "alignment.json"),
    )


def suite_files(roots: Iterable[str | Path]) -> list[Path]:
    """``suite.yaml`` copies written by ``bench run`` in (or one level below) each root."""
    out: list[Path] = []
    for root in map(Path, roots):
        for p in [root / "suite.yaml", *sorted(root.glob("*/suite.yaml"))]:
            if p.is_file() and p not in out:
                out.append(p)
    return out


def _suite_orders(roots: Iterable[str | Path]) -> dict[str, list[str]]:
    """Task, reward and agent order as listed in the suites' YAML (the order tables and plots follow)."""
    import yaml

    orders: dict[str, list[str]] = {"task": [], "reward": [], "agent": []}
    for p in suite_files(roots):
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        tasks = [t.get("name") if isinstance(t, dict) else t for t in data.get("tasks") or []]
        for key, values in (("task", tasks), ("reward", list(data.get("rewards") or [])),
                            ("agent", list(data.get("agents") or []))):
            orders[key] += [str(v) for v in values if v is not None and str(v) not in orders[key]]
    return orders


def sort_runs(runs: Sequence[RunRecord], orders: dict[str, list[str]] | None = None) -> list[RunRecord]:
    """Runs in suite order (tasks, rewards, agents as the suite lists them; the env reward first otherwise), then seed."""
    orders = orders or {}

    def idx(kind: str, value: str) -> tuple[int, int, str]:
        known = orders.get(kind) or []
        if value in known:
            return (0, known.index(value), "")
        return (1, 0 if (kind == "reward" and value == ENV_LABEL) else 1, value)

    return sorted(runs, key=lambda r: (idx("task", r.task), idx("reward", r.reward), idx("agent", r.agent), r.seed,
                                       str(r.run_dir)))


def load_runs(roots: str | Path | Iterable[str | Path]) -> list[RunRecord]:
    """All run folders under one or more roots, in suite order (see :func:`sort_runs`)."""
    if isinstance(roots, (str, Path)):
        roots = [roots]
    roots = [Path(r) for r in roots]
    runs = []
    for root in roots:
        for d in find_run_dirs(root):
            rec = load_run(d)
            rec.rel = str(d.relative_to(root)) if d != root else d.name
            runs.append(rec)
    if not runs:
        raise ConfigError(f"no run folders (folders with a config.yaml) under {', '.join(map(str, roots))}")
    return sort_runs(runs, _suite_orders(roots))


def _f(x: Any) -> float:
    """A float, NaN for None."""
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


# ----------------------------------------------------------------------------- ordering


def reward_order(runs: Sequence[RunRecord]) -> list[str]:
    """Reward labels with the env reward first, then in the order first seen."""
    seen: list[str] = []
    for r in runs:
        if r.reward not in seen:
            seen.append(r.reward)
    return sorted(seen, key=lambda x: (x != ENV_LABEL, seen.index(x)))


def _ordered(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


# ----------------------------------------------------------------------------- tables


def evaluations_table(runs: Sequence[RunRecord]) -> Any:
    """Tidy table of every evaluation of every run (see the module docstring for ``source``)."""
    import pandas as pd

    rows = []
    for r in runs:
        ident = {"suite": r.suite, "task": r.task, "reward": r.reward, "agent": r.agent, "seed": r.seed}
        for m in r.metrics:
            rows.append({**ident, "source": "train", "step": int(m.get("timesteps", 0)),
                         "success_rate": _f(m.get("success_rate")), "gt_return": _f(m.get("env_return")),
                         "learned_return": _f(m.get("learned_return")), "episodes": m.get("window_episodes"),
                         "time_s": _f(m.get("time_s")), "steps_per_s": _f(m.get("steps_per_s")),
                         "run_dir": str(r.run_dir)})
        for e in r.evals:
            rows.append({**ident, "source": "eval", "step": int(e.get("timesteps", 0)),
                         "success_rate": _f(e.get("success_rate")), "gt_return": _f(e.get("return_mean")),
                         "learned_return": math.nan, "episodes": e.get("episodes"),
                         "time_s": math.nan, "steps_per_s": math.nan, "run_dir": str(r.run_dir)})
        if r.finished and r.final_eval:
            s = r.summary or {}
            al = r.alignment or {}
            lr = al.get("learned_returns")
            rows.append({**ident, "source": "final", "step": int(s.get("timesteps") or r.steps_target),
                         "success_rate": _f(r.final_eval.get("success_rate")),
                         "gt_return": _f(r.final_eval.get("return_mean")),
                         "learned_return": float(np.mean(lr)) if lr else math.nan,
                         "episodes": r.final_eval.get("episodes"), "time_s": _f(s.get("train_time_s")),
                         "steps_per_s": _f(s.get("steps_per_s")), "run_dir": str(r.run_dir)})
    cols = ["suite", "task", "reward", "agent", "seed", "source", "step", "success_rate", "gt_return",
            "learned_return", "episodes", "time_s", "steps_per_s", "run_dir"]
    return pd.DataFrame(rows, columns=cols)


def _alignment_distance(al: dict[str, Any], prefix: str) -> float:
    """``<prefix>_pearson_distance`` of an ``alignment.json`` record, from its Pearson r when the file predates it."""
    if f"{prefix}_pearson_distance" in al:
        return _f(al.get(f"{prefix}_pearson_distance"))
    d = stats.pearson_distance_from_r(al.get(f"{prefix}_pearson"))
    return math.nan if d is None else d


def _train_correlation(r: RunRecord) -> float:
    """Pearson correlation of the learned-reward and GT returns across a run's training log lines."""
    pairs = [(m.get("learned_return"), m.get("env_return")) for m in r.metrics]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if len(pairs) < 3:
        return math.nan
    c = stats.correlations([a for a, _ in pairs], [b for _, b in pairs])["pearson"]
    return math.nan if c is None else c


def runs_table(runs: Sequence[RunRecord]) -> Any:
    """One row per run: final evaluation, learned-reward return, reward alignment, timing."""
    import pandas as pd

    rows = []
    for r in runs:
        s = r.summary or {}
        ev = r.final_eval or {}
        al = r.alignment or {}
        tr = s.get("train") or {}
        sci = ev.get("success_ci") or [math.nan, math.nan]
        video = r.video
        learned_eval = al.get("learned_returns")
        rows.append({
            "suite": r.suite, "task": r.task, "reward": r.reward, "agent": r.agent, "seed": r.seed,
            "finished": r.finished,
            "steps": int(s.get("timesteps") or (r.metrics[-1].get("timesteps") if r.metrics else 0)),
            "steps_target": r.steps_target,
            "success_rate": _f(ev.get("success_rate")) if r.finished else math.nan,
            "success_lo": _f(sci[0]) if r.finished else math.nan,
            "success_hi": _f(sci[1]) if r.finished else math.nan,
            "final_success_rate": _f(ev.get("final_success_rate")) if r.finished else math.nan,
            "gt_return": _f(ev.get("return_mean")) if r.finished else math.nan,
            "gt_return_std": _f(ev.get("return_std")) if r.finished else math.nan,
            "eval_episodes": ev.get("episodes") if r.finished else None,
            "learned_return_eval": float(np.mean(learned_eval)) if learned_eval else math.nan,
            "learned_return_train": _f(tr.get("learned_return")),
            "gt_return_train": _f(tr.get("env_return")),
            "step_pearson": _f(al.get("step_pearson")),
            "step_spearman": _f(al.get("step_spearman")),
            "step_pearson_distance": _alignment_distance(al, "step"),
            "return_pearson": _f(al.get("return_pearson")),
            "return_pearson_distance": _alignment_distance(al, "return"),
            "train_pearson": _train_correlation(r),
            "alignment_error": al.get("error"),
            "train_time_s": _f(s.get("train_time_s")),
            "wall_time_s": _f(s.get("wall_time_s")),
            "steps_per_s": _f(s.get("steps_per_s")),
            "video": str(video) if video else None,
            "reward_spec": r.reward_spec if isinstance(r.reward_spec, str) else json.dumps(r.reward_spec),
            "run_dir": str(r.run_dir),
            "run": r.rel or str(r.run_dir),
        })
    return pd.DataFrame(rows)


def _groups(df: Any, keys: Sequence[str]) -> list[tuple[tuple, Any]]:
    """Groups of ``df`` by ``keys`` in first-seen order (tasks, rewards and agents keep the suite's order)."""
    order = {k: _ordered(df[k]) for k in keys}
    out = []
    for key, g in df.groupby(list(keys), sort=False):
        out.append((key if isinstance(key, tuple) else (key,), g))
    out.sort(key=lambda kg: tuple(order[k].index(v) for k, v in zip(keys, kg[0])))
    return out


def cell_table(runs_df: Any, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Any:
    """Per task × reward × agent over the finished seeds: IQM and stratified-bootstrap intervals.

    Columns: ``task, reward, agent, seeds, success_iqm, success_lo, success_hi,
    success_mean, gt_iqm, gt_lo, gt_hi, gt_mean, learned_return, step_pearson,
    step_pearson_distance, train_time_s, steps_per_s``. ``step_pearson`` and
    ``step_pearson_distance`` are means over the seeds that have an alignment record.
    """
    import pandas as pd

    done = runs_df[runs_df["finished"]]
    rows = []
    for (task, reward, agent), g in _groups(done, ["task", "reward", "agent"]):
        row: dict[str, Any] = {"task": task, "reward": reward, "agent": agent, "seeds": int(len(g))}
        for metric, name in (("success_rate", "success"), ("gt_return", "gt")):
            x = g[metric].to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            if x.size:
                est = stats.stratified_bootstrap([x], "iqm", reps=reps, confidence=confidence, seed=seed)
                row.update({f"{name}_iqm": est.value, f"{name}_lo": est.lo, f"{name}_hi": est.hi,
                            f"{name}_mean": float(x.mean())})
            else:
                row.update({f"{name}_iqm": math.nan, f"{name}_lo": math.nan, f"{name}_hi": math.nan,
                            f"{name}_mean": math.nan})
        row["learned_return"] = float(np.nanmean(g["learned_return_eval"])) if g["learned_return_eval"].notna().any() \
            else math.nan
        for col in ("step_pearson", "step_pearson_distance", "train_time_s", "steps_per_s"):
            row[col] = float(np.nanmean(g[col])) if g[col].notna().any() else math.nan
        rows.append(row)
    cols = ["task", "reward", "agent", "seeds", "success_iqm", "success_lo", "success_hi", "success_mean",
            "gt_iqm", "gt_lo", "gt_hi", "gt_mean", "learned_return", "step_pearson", "step_pearson_distance",
            "train_time_s", "steps_per_s"]
    return pd.DataFrame(rows, columns=cols)


def normalized_gt(runs_df: Any) -> Any:
    """Per-task min–max normalised final GT return of finished runs (0 = the task's worst run, 1 = its best)."""
    done = runs_df[runs_df["finished"]].copy()
    lo = done.groupby("task")["gt_return"].transform("min")
    hi = done.groupby("task")["gt_return"].transform("max")
    span = (hi - lo).where(hi > lo)
    done["gt_norm"] = ((done["gt_return"] - lo) / span).fillna(0.5)
    return done


def aggregate_table(runs_df: Any, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Any:
    """Per reward × agent over all tasks: IQM of success rate and normalised GT return, stratified over tasks.

    The GT return is min–max normalised per task over every finished run of that task
    in the table (so it is relative to the rewards and agents compared, not absolute).
    """
    import pandas as pd

    done = normalized_gt(runs_df)
    rows = []
    for (reward, agent), g in _groups(done, ["reward", "agent"]):
        row: dict[str, Any] = {"reward": reward, "agent": agent, "tasks": int(g["task"].nunique()), "runs": int(len(g))}
        for metric, name in (("success_rate", "success"), ("gt_norm", "gt_norm")):
            per_task = [t[metric].to_numpy(dtype=float) for _, t in g.groupby("task", sort=False)]
            per_task = [x[np.isfinite(x)] for x in per_task]
            per_task = [x for x in per_task if x.size]
            if per_task:
                est = stats.stratified_bootstrap(per_task, "iqm", reps=reps, confidence=confidence, seed=seed)
                row.update({f"{name}_iqm": est.value, f"{name}_lo": est.lo, f"{name}_hi": est.hi})
            else:
                row.update({f"{name}_iqm": math.nan, f"{name}_lo": math.nan, f"{name}_hi": math.nan})
        rows.append(row)
    cols = ["reward", "agent", "tasks", "runs", "success_iqm", "success_lo", "success_hi", "gt_norm_iqm",
            "gt_norm_lo", "gt_norm_hi"]
    return pd.DataFrame(rows, columns=cols)


def improvement_table(runs_df: Any, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0,
                      metrics: Sequence[str] = ("gt_return", "success_rate")) -> Any:
    """``P(X > Y)`` for every two rewards ``X``, ``Y`` (same agent), per task and over all shared tasks.

    Columns: ``agent, metric, scope`` (a task name or ``"all tasks"``), ``x, y, tasks,
    poi, poi_lo, poi_hi``. Pairs follow :func:`reward_order` (``x`` before ``y``), so the
    env reward is always ``x`` when it takes part: ``poi < 0.5`` means ``y`` beat it.
    """
    import pandas as pd

    done = runs_df[runs_df["finished"]]
    rewards = [w for w in _ordered_env_first(done["reward"])]
    rows = []
    for agent in _ordered(done["agent"]):
        da = done[done["agent"] == agent]
        for i, x in enumerate(rewards):
            for y in rewards[i + 1:]:
                tasks = [t for t in _ordered(da["task"])
                         if ((da["task"] == t) & (da["reward"] == x)).any() and ((da["task"] == t) & (da["reward"] == y)).any()]
                if not tasks:
                    continue
                for metric in metrics:
                    sx = [da[(da["task"] == t) & (da["reward"] == x)][metric].to_numpy(dtype=float) for t in tasks]
                    sy = [da[(da["task"] == t) & (da["reward"] == y)][metric].to_numpy(dtype=float) for t in tasks]
                    ok = [(a[np.isfinite(a)], b[np.isfinite(b)]) for a, b in zip(sx, sy)]
                    ok = [(a, b, t) for (a, b), t in zip(ok, tasks) if a.size and b.size]
                    if not ok:
                        continue
                    scopes = [(t, [a], [b]) for a, b, t in ok]
                    if len(ok) > 1:
                        scopes.append(("all tasks", [a for a, _, _ in ok], [b for _, b, _ in ok]))
                    for scope, ax, by in scopes:
                        est = stats.probability_of_improvement(ax, by, reps=reps, confidence=confidence, seed=seed)
                        rows.append({"agent": agent, "metric": metric, "scope": scope, "x": x, "y": y,
                                     "tasks": len(ax), "poi": est.value, "poi_lo": est.lo, "poi_hi": est.hi})
    cols = ["agent", "metric", "scope", "x", "y", "tasks", "poi", "poi_lo", "poi_hi"]
    return pd.DataFrame(rows, columns=cols)


def _ordered_env_first(values: Iterable[str]) -> list[str]:
    seen = _ordered(values)
    return sorted(seen, key=lambda x: (x != ENV_LABEL, seen.index(x)))


# ----------------------------------------------------------------------------- learning curves


@dataclass
class Curve:
    """Mean and interval across seeds of one metric of one task × reward × agent, on a step grid."""

    task: str
    reward: str
    agent: str
    metric: str
    source: str
    steps: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    seeds: int


def _series(r: RunRecord, source: str, metric: str) -> tuple[list[float], list[float]]:
    if source == "eval":
        key = {"gt_return": "return_mean", "success_rate": "success_rate"}[metric]
        rows = r.evals
    else:
        key = {"gt_return": "env_return", "success_rate": "success_rate", "learned_return": "learned_return"}[metric]
        rows = r.metrics
    steps = [float(x.get("timesteps", math.nan)) for x in rows]
    vals = [_f(x.get(key)) for x in rows]
    if source == "eval" and r.finished and r.final_eval:  # the final evaluation is the curve's last point
        steps.append(float((r.summary or {}).get("timesteps") or r.steps_target))
        vals.append(_f(r.final_eval.get({"gt_return": "return_mean", "success_rate": "success_rate"}[metric])))
    return steps, vals


def learning_curves(runs: Sequence[RunRecord], metric: str, *, points: int = 60, reps: int = 1000,
                    confidence: float = 0.95, seed: int = 0) -> list[Curve]:
    """Learning curves per task × reward × agent: mean ± bootstrap interval across seeds.

    Uses the periodic deterministic evaluations (``evals.jsonl``) when every run of the
    group has them, else the training-episode means of ``metrics.jsonl``. Each seed's
    curve is linearly interpolated onto a common grid of ``points`` steps.
    """
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault(r.key, []).append(r)
    out = []
    for (task, reward, agent), rs in groups.items():
        source = "eval" if metric != "learned_return" and all(len(r.evals) >= 1 for r in rs) else "train"
        series = [_series(r, source, metric) for r in rs]
        max_step = max((max(s) for s, _ in series if s), default=0.0)
        if max_step <= 0:
            continue
        min_step = min((min(s) for s, _ in series if s), default=0.0)
        grid = np.linspace(min_step, max_step, points)
        vals = np.stack([stats.interpolate_curve(s, v, grid) for s, v in series])
        mean, lo, hi = stats.curve_band(vals, reps=reps, confidence=confidence, seed=seed)
        out.append(Curve(task, reward, agent, metric, source, grid, mean, lo, hi, len(rs)))
    return out


__all__ = [
    "Curve",
    "ENV_LABEL",
    "RunRecord",
    "aggregate_table",
    "cell_table",
    "evaluations_table",
    "find_run_dirs",
    "improvement_table",
    "learning_curves",
    "load_run",
    "load_runs",
    "normalized_gt",
    "reward_order",
    "runs_table",
    "sort_runs",
    "suite_files",
]

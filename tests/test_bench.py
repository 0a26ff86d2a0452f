"""Benchmark suites: statistics (IQM, stratified bootstrap, probability of improvement), suite files,
aggregation of run folders into tables, reports, and the local / Ray runners."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")

pd = pytest.importorskip("pandas")
scipy_stats = pytest.importorskip("scipy.stats")
pytest.importorskip("matplotlib")
typer = pytest.importorskip("typer")
from typer.testing import CliRunner  # noqa: E402

from robo_reward.bench import stats  # noqa: E402
from robo_reward.bench.results import (  # noqa: E402
    aggregate_table,
    cell_table,
    evaluations_table,
    improvement_table,
    learning_curves,
    load_runs,
    runs_table,
)
from robo_reward.bench.suite import Cell, load_suite, reward_label, suite_from_dict  # noqa: E402
from robo_reward.core.errors import ConfigError  # noqa: E402

DIST = "python:fn=robo_reward.rewards.examples:reacher_distance"
REPO = Path(__file__).resolve().parent.parent


# ============================================================================ statistics


def test_iqm_hand_values():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm([10, 1, 2, 3, 100]) == pytest.approx(5.0)  # floor(5/4)=1 cut each end: mean(2, 3, 10)
    assert stats.iqm([7.0]) == 7.0
    # a [runs, tasks] matrix pools all runs of all tasks
    m = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, 8.0]])
    assert stats.iqm(m) == pytest.approx(4.5)
    # ragged tasks pool the same way
    assert stats.iqm([[1, 2, 3], [4, 5, 6, 7, 8]]) == pytest.approx(4.5)
    # the reference definition: scipy's trimmed mean with 25 % cut from each end
    x = np.random.default_rng(3).normal(size=37)
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_stats_reject_bad_input():
    with pytest.raises(ConfigError, match="NaN"):
        stats.iqm([1.0, float("nan")])
    with pytest.raises(ConfigError, match="no runs"):
        stats.stratified_bootstrap([[1.0], []])
    with pytest.raises(ConfigError, match="tasks"):
        stats.probability_of_improvement([[1.0], [2.0]], [[1.0]])
    with pytest.raises(ConfigError, match="confidence"):
        stats.stratified_bootstrap([[1.0, 2.0]], confidence=1.5)
    with pytest.raises(ConfigError, match="unknown statistic"):
        stats.stratified_bootstrap([[1.0, 2.0]], "mode")


def test_stratified_bootstrap_resamples_within_tasks():
    # Task A scores 0 in every run, task B 1: a *stratified* resample always holds three 0s and
    # three 1s, so the IQM (and mean) is exactly 0.5 in every resample; an unstratified bootstrap
    # of the six pooled runs would not be.
    per_task = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    for stat in ("iqm", "mean"):
        est = stats.stratified_bootstrap(per_task, stat, reps=500)
        assert (est.value, est.lo, est.hi) == (0.5, 0.5, 0.5)
    pooled = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    unstratified = pooled[rng.integers(0, 6, size=(500, 6))].mean(axis=1)
    assert np.quantile(unstratified, 0.025) < 0.5 < np.quantile(unstratified, 0.975)


def test_stratified_bootstrap_hand_distribution():
    # One task, runs [0, 1]: a resample's mean is 0 (p=1/4), 0.5 (p=1/2) or 1 (p=1/4).
    wide = stats.stratified_bootstrap([[0.0, 1.0]], "mean", reps=4000, seed=1)
    assert (wide.value, wide.lo, wide.hi) == (0.5, 0.0, 1.0)
    assert stats.stratified_bootstrap([0.0, 1.0], "mean", reps=4000, seed=1) == wide  # a flat list is one task
    # a 40 % interval spans the 30th..70th percentiles, both inside the mass at 0.5
    narrow = stats.stratified_bootstrap([[0.0, 1.0]], "mean", reps=4000, confidence=0.4, seed=1)
    assert (narrow.lo, narrow.hi) == (0.5, 0.5)


def test_stratified_bootstrap_matches_reference_loop():
    rng = np.random.default_rng(7)
    per_task = [rng.normal(size=5), rng.normal(2.0, size=3), rng.normal(-1.0, size=6)]
    reps, seed = 300, 11
    est = stats.stratified_bootstrap(per_task, "iqm", reps=reps, seed=seed)
    # reference: the same resampling written as an explicit loop (same random draws, task by task)
    ref_rng = np.random.default_rng(seed)
    idx = [ref_rng.integers(0, len(x), size=(reps, len(x))) for x in per_task]
    boot = []
    for b in range(reps):
        sample = np.concatenate([x[i[b]] for x, i in zip(per_task, idx)])
        boot.append(scipy_stats.trim_mean(sample, 0.25))
    lo, hi = np.quantile(boot, [0.025, 0.975])
    assert est.value == pytest.approx(scipy_stats.trim_mean(np.concatenate(per_task), 0.25))
    assert (est.lo, est.hi) == pytest.approx((lo, hi))
    assert est.n == 14
    # and the same seed gives the same interval
    assert stats.stratified_bootstrap(per_task, "iqm", reps=reps, seed=seed) == est


def test_bootstrap_of_mean_agrees_with_normal_theory():
    # For one task the percentile bootstrap of the mean approaches mean ± z·σ̂/√n (σ̂ with ddof=0).
    x = np.random.default_rng(0).normal(10.0, 2.0, size=200)
    est = stats.stratified_bootstrap([x], "mean", reps=20000, seed=0)
    half = 1.959964 * x.std(ddof=0) / math.sqrt(x.size)
    assert est.lo == pytest.approx(x.mean() - half, abs=0.06)
    assert est.hi == pytest.approx(x.mean() + half, abs=0.06)


def test_probability_of_improvement_hand_values():
    # pairs (x > y): 1>0; 2>0, 2=2 (½); 3>0, 3>2  -> 4.5 of 9
    assert stats.probability_of_improvement([[1, 2, 3]], [[0, 2, 4]]).value == pytest.approx(0.5)
    assert stats.probability_of_improvement([[3, 4]], [[1, 2]]).value == 1.0
    assert stats.probability_of_improvement([[1, 2]], [[3, 4]]).value == 0.0
    assert stats.probability_of_improvement([[1, 1]], [[1, 1]]).value == 0.5  # ties count ½
    # averaged over tasks: (1 + 0.5) / 2
    two = stats.probability_of_improvement([[3, 4], [1, 2, 3]], [[1, 2], [0, 2, 4]])
    assert two.value == pytest.approx(0.75)
    # a task where X always wins has an interval of exactly [1, 1]
    sure = stats.probability_of_improvement([[5, 6, 7]], [[1, 2]], reps=300)
    assert (sure.lo, sure.hi) == (1.0, 1.0)
    # the reference: Mann-Whitney U of x divided by m·n
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 5, size=7).astype(float), rng.integers(0, 5, size=9).astype(float)
    u = scipy_stats.mannwhitneyu(x, y).statistic
    est = stats.probability_of_improvement([x], [y], reps=200)
    assert est.value == pytest.approx(u / (7 * 9))
    assert est.lo <= est.value <= est.hi


def test_curve_band_handles_missing_points_and_one_seed():
    v = np.array([[1.0, 2.0, 3.0, np.nan], [3.0, 4.0, np.nan, np.nan]])
    mean, lo, hi = stats.curve_band(v, reps=500)
    assert mean[:3] == pytest.approx([2.0, 3.0, 3.0])
    assert np.isnan(mean[3]) and np.isnan(lo[3])
    assert (lo[2], hi[2]) == (3.0, 3.0)  # one seed: no band
    assert lo[0] == pytest.approx(1.0) and hi[0] == pytest.approx(3.0)  # two seeds: min..max of resample means
    grid = np.array([0.0, 50.0, 100.0, 250.0])
    assert stats.interpolate_curve([0, 100, 200], [0.0, 1.0, None], grid)[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert np.isnan(stats.interpolate_curve([0, 100, 200], [0.0, 1.0, None], grid)[3])


def test_correlations():
    c = stats.correlations([1, 2, 3, 4], [2, 4, 6, 9])
    assert c["spearman"] == pytest.approx(1.0) and 0.98 < c["pearson"] < 1.0
    assert c["pearson_distance"] == pytest.approx(math.sqrt((1 - c["pearson"]) / 2))
    flat = stats.correlations([1, 1, 1], [1, 2, 3])
    assert flat["pearson"] is None and flat["pearson_distance"] is None


def test_pearson_distance_hand_values_and_the_metrics_module():
    from robo_reward.metrics import pearson_distance

    assert stats.pearson_distance_from_r(1.0) == 0.0
    assert stats.pearson_distance_from_r(0.0) == pytest.approx(math.sqrt(0.5))
    assert stats.pearson_distance_from_r(-1.0) == 1.0
    assert stats.pearson_distance_from_r(0.5) == pytest.approx(0.5)
    assert stats.pearson_distance_from_r(1.0 + 1e-12) == 0.0  # rounding past 1 is not an error
    assert stats.pearson_distance_from_r(None) is None and stats.pearson_distance_from_r(float("nan")) is None
    # the same number as the reward-distance module's pearson_distance (EPIC's last step) on the same samples
    rng = np.random.default_rng(5)
    x = rng.normal(size=200)
    y = 0.3 * x + rng.normal(size=200)
    assert stats.correlations(x, y)["pearson_distance"] == pytest.approx(pearson_distance(x, y), abs=1e-12)


# ============================================================================ suites


def _micro(name: str = "micro", **extra) -> dict:
    suite = {
        "name": name,
        "tasks": ["mujoco-reacher-v5"],
        "rewards": {"env": "env", "distance": DIST},
        "agents": {"ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}},
        "seeds": [0],
        "steps": 128,
        "eval_episodes": 2,
        "alignment_episodes": 1,
        "run": {"n_envs": 1, "log_freq": 64, "checkpoint_freq": 0, "video": False, "device": "cpu"},
    }
    suite.update(extra)
    return suite


def test_suite_grid_and_per_task_rewards(tmp_path):
    suite = suite_from_dict({
        "name": "grid",
        "tasks": ["mujoco-reacher-v5", {"name": "mujoco-half-cheetah-v5", "steps": 999, "run": {"n_envs": 2}}],
        "rewards": {"env": "env", "fwd": {"by_task": {
            "mujoco-half-cheetah-v5": "python:fn=robo_reward.rewards.examples:half_cheetah_forward"}}},
        "agents": ["ppo", "sac"],
        "seeds": 3,
        "steps": 100,
        "run": {"n_envs": 4},
    })
    cells = suite.cells(tmp_path)
    # reacher: env only; cheetah: env + fwd; x 2 agents x 3 seeds
    assert len(cells) == (1 + 2) * 2 * 3
    cheetah_fwd = [c for c in cells if c.task == "mujoco-half-cheetah-v5" and c.reward == "fwd"]
    assert len(cheetah_fwd) == 6
    c = cheetah_fwd[0]
    assert c.steps == 999 and c.config["n_envs"] == 2 and c.alignment_episodes == 3
    assert c.run_dir == tmp_path / "grid" / "mujoco-half-cheetah-v5" / "fwd" / "ppo" / "seed0"
    env_cell = next(c for c in cells if c.reward == "env")
    assert env_cell.config["reward"] is None and env_cell.alignment_episodes == 0
    assert env_cell.config["n_envs"] == 4
    assert Cell.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_suite_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="set by the suite itself"):
        suite_from_dict(_micro(run={"seed": 3}))
    with pytest.raises(ConfigError, match="unknown reward 'nope'"):
        suite_from_dict(_micro(rewards={"x": "nope"})).cells(tmp_path)
    with pytest.raises(ConfigError, match="agent"):
        suite_from_dict(_micro(agents=["dqn"])).cells(tmp_path)
    with pytest.raises(ConfigError, match="unknown task card"):
        suite_from_dict(_micro(tasks=["no-such-task"])).cells(tmp_path)
    with pytest.raises(ConfigError, match="reward label"):
        suite_from_dict(_micro(rewards={"a/b": "env"}))
    with pytest.raises(ConfigError, match="seeds listed twice"):
        suite_from_dict(_micro(seeds=[1, 1]))
    with pytest.raises(ConfigError, match="no suite file"):
        load_suite("no-such-suite")


def test_reward_labels():
    assert reward_label("env") == "env" and reward_label(None) == "env"
    assert reward_label(DIST) == "reacher_distance"
    assert reward_label("vlm-rm:alpha=0.5") == "vlm-rm-alpha-0.5"
    assert reward_label({"name": "sparse-success"}) == "sparse-success"


def test_shipped_suites_load_and_expand(tmp_path):
    for name, expected in (("smoke", 8), ("mujoco-locomotion", 45), ("metaworld-t2r", 110)):
        suite = load_suite(name)
        assert suite.name == name
        assert len(suite.cells(tmp_path)) == expected
    assert load_suite(REPO / "benchmarks" / "suites" / "smoke.yaml").name == "smoke"


# ============================================================================ synthetic run folders

# task -> reward -> per-seed (success, GT return); seed order 0..3
SYNTH = {
    "task-a": {"env": ([0.1, 0.5, 0.6, 0.9], [-10.0, -8.0, -6.0, -4.0]),
               "dist": ([0.2, 0.2, 0.3, 1.0], [-12.0, -11.0, -10.0, -9.0])},
    "task-b": {"env": ([0.0, 0.0, 0.0, 0.0], [100.0, 200.0, 300.0, 400.0]),
               "dist": ([1.0, 1.0, 1.0, 1.0], [500.0, 600.0, 700.0, 800.0])},
}
PEARSON = [0.5, 0.6, 0.7, 0.8]


def _write_run(root: Path, task: str, reward: str, seed: int, success: float, gt: float, *,
               finished: bool = True, video: bool = False) -> Path:
    d = root / task / reward / "ppo" / f"seed{seed}"
    d.mkdir(parents=True)
    spec = None if reward == "env" else DIST
    config = {"task": task, "reward": spec, "mode": "replace", "agent": "ppo", "seed": seed, "steps": 1000}
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    (d / "bench_cell.json").write_text(json.dumps({"suite": "synth", "task": task, "reward": reward, "agent": "ppo",
                                                   "seed": seed}))
    with open(d / "metrics.jsonl", "w") as fh:
        for k in range(1, 5):
            fh.write(json.dumps({"timesteps": 250 * k, "env_return": gt * k / 4, "learned_return": 2.0 * k + seed,
                                 "success_rate": success * k / 4, "time_s": k, "steps_per_s": 250.0,
                                 "window_episodes": 5}) + "\n")
    with open(d / "evals.jsonl", "w") as fh:
        fh.write(json.dumps({"timesteps": 500, "success_rate": success / 2, "return_mean": gt / 2,
                             "episodes": 10}) + "\n")
    if not finished:
        return d
    ev = {"episodes": 10, "success_rate": success, "success_ci": [max(0.0, success - 0.1), min(1.0, success + 0.1)],
          "return_mean": gt, "return_std": 1.0, "final_success_rate": success}
    summary = {"task": task, "agent": "ppo", "seed": seed, "timesteps": 1000, "train_time_s": 10.0 + seed,
               "wall_time_s": 12.0 + seed, "steps_per_s": 100.0, "train": {"learned_return": 8.0, "env_return": gt},
               "final_eval": ev, "video": "videos/eval.mp4" if video else None}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "eval.json").write_text(json.dumps(ev))
    if video:
        (d / "videos").mkdir()
        (d / "videos" / "eval.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    if reward != "env":
        rng = np.random.default_rng(seed)
        g = rng.normal(size=60)
        (d / "alignment.json").write_text(json.dumps({
            "episodes": 2, "steps": 60, "step_pearson": PEARSON[seed], "step_spearman": PEARSON[seed],
            "learned_returns": [1.0, 3.0], "gt_returns": [gt, gt]}))
        np.savez(d / "alignment.npz", learned=(g + rng.normal(size=60)).astype(np.float32), gt=g.astype(np.float32),
                 episode=np.repeat([0, 1], 30))
    return d


@pytest.fixture
def synth_root(tmp_path):
    root = tmp_path / "runs" / "synth"
    for task, rewards in SYNTH.items():
        for reward, (succ, gt) in rewards.items():
            for seed in range(4):
                _write_run(root, task, reward, seed, succ[seed], gt[seed], video=(seed == 0))
    _write_run(root, "task-a", "dist", 4, 0.0, -50.0, finished=False)  # a run that was killed
    (root / "suite.yaml").write_text(yaml.safe_dump({
        "name": "synth", "tasks": ["task-a", "task-b"], "rewards": {"env": "env", "dist": DIST},
        "agents": ["ppo"], "seeds": [0, 1, 2, 3], "steps": 1000, "eval_episodes": 10}, sort_keys=False))
    return root


def test_aggregation_of_synthetic_runs(synth_root):
    runs = load_runs(synth_root)
    assert len(runs) == 17 and sum(r.finished for r in runs) == 16
    rdf = runs_table(runs)
    assert list(rdf["reward"][:4]) == ["env"] * 4  # suite order: env first
    cells = cell_table(rdf, reps=500)
    assert list(zip(cells["task"], cells["reward"])) == [
        ("task-a", "env"), ("task-a", "dist"), ("task-b", "env"), ("task-b", "dist")]
    a_env = cells.iloc[0]
    assert a_env["seeds"] == 4  # the unfinished fifth dist run is left out; env has 4
    assert a_env["success_iqm"] == pytest.approx(0.55)  # mean(0.5, 0.6)
    assert a_env["success_mean"] == pytest.approx(0.525)
    assert a_env["gt_iqm"] == pytest.approx(-7.0)  # mean(-8, -6)
    a_dist = cells.iloc[1]
    assert a_dist["seeds"] == 4
    assert a_dist["success_iqm"] == pytest.approx(0.25) and a_dist["gt_iqm"] == pytest.approx(-10.5)
    assert a_dist["step_pearson"] == pytest.approx(np.mean(PEARSON))
    # alignment.json files without the distance (older runs) get it from their Pearson r
    assert a_dist["step_pearson_distance"] == pytest.approx(np.mean([math.sqrt((1 - r) / 2) for r in PEARSON]))
    assert np.isnan(a_env["step_pearson_distance"])  # the env reward is not compared with itself
    assert a_dist["learned_return"] == pytest.approx(2.0)
    b_env, b_dist = cells.iloc[2], cells.iloc[3]
    assert (b_env["success_iqm"], b_env["success_lo"], b_env["success_hi"]) == (0.0, 0.0, 0.0)
    assert b_dist["gt_iqm"] == pytest.approx(650.0)
    for _, c in cells.iterrows():  # intervals hold the estimate and stay within the data
        assert c["gt_lo"] <= c["gt_iqm"] <= c["gt_hi"]
        assert 0.0 <= c["success_lo"] <= c["success_iqm"] <= c["success_hi"] <= 1.0

    poi = improvement_table(rdf, reps=500)
    gt = poi[(poi["metric"] == "gt_return")].set_index("scope")
    assert (gt["x"] == "env").all() and (gt["y"] == "dist").all()
    assert gt.loc["task-a", "poi"] == pytest.approx(14.5 / 16)
    assert gt.loc["task-b", "poi"] == 0.0
    assert gt.loc["all tasks", "poi"] == pytest.approx((14.5 / 16 + 0.0) / 2)
    assert gt.loc["all tasks", "tasks"] == 2
    succ_b = poi[(poi["metric"] == "success_rate") & (poi["scope"] == "task-b")].iloc[0]
    assert (succ_b["poi"], succ_b["poi_lo"], succ_b["poi_hi"]) == (0.0, 0.0, 0.0)

    agg = aggregate_table(rdf, reps=500).set_index("reward")
    env_norm = [0.25, 0.5, 0.75, 1.0] + [0.0, 1 / 7, 2 / 7, 3 / 7]  # min-max per task over all its runs
    assert agg.loc["env", "gt_norm_iqm"] == pytest.approx(scipy_stats.trim_mean(env_norm, 0.25))
    assert agg.loc["env", "success_iqm"] == pytest.approx(scipy_stats.trim_mean(SYNTH["task-a"]["env"][0] + [0.0] * 4,
                                                                                0.25))
    assert agg.loc["dist", "tasks"] == 2 and agg.loc["dist", "runs"] == 8


def test_evaluations_table_and_curves(synth_root):
    runs = load_runs(synth_root)
    ev = evaluations_table(runs)
    # 17 runs x 4 training lines + 17 periodic evaluations + 16 final evaluations
    assert len(ev) == 17 * 4 + 17 + 16
    assert set(ev["source"]) == {"train", "eval", "final"}
    for col in ("suite", "task", "reward", "agent", "seed", "step", "success_rate", "gt_return", "learned_return",
                "time_s", "steps_per_s"):
        assert col in ev.columns
    final = ev[(ev["source"] == "final") & (ev["task"] == "task-b") & (ev["reward"] == "env")]
    assert sorted(final["gt_return"]) == [100.0, 200.0, 300.0, 400.0]
    curves = learning_curves(runs, "gt_return", points=5, reps=200)
    b_env = next(c for c in curves if (c.task, c.reward) == ("task-b", "env"))
    assert b_env.source == "eval" and b_env.seeds == 4
    assert b_env.steps[0] == 500 and b_env.steps[-1] == 1000
    assert b_env.mean[0] == pytest.approx(125.0) and b_env.mean[-1] == pytest.approx(250.0)
    learned = learning_curves(runs, "learned_return", points=4, reps=200)
    assert all(c.source == "train" for c in learned)


def _unbalanced_tags(text: str) -> list[str]:
    """Tags of an HTML page that are closed out of order or never closed (void elements aside)."""
    from html.parser import HTMLParser

    class Check(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.bad: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in ("img", "meta", "br", "source", "link"):
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if self.stack and self.stack[-1] == tag:
                self.stack.pop()
            else:
                self.bad.append(tag)

    check = Check()
    check.feed(text)
    return check.bad + check.stack


def test_report_writes_plots_markdown_and_html(synth_root, tmp_path):
    from robo_reward.bench.report import write_report

    out = tmp_path / "report"
    info = write_report(synth_root, out, reps=300)
    figures = info["figures"]
    for key in ("curves:task-a", "curves:task-b", "final_success", "final_gt_return", "aggregate", "improvement",
                "reward_vs_gt"):
        assert key in figures, key
        png = out / figures[key]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = (out / "report.md").read_text()
    for rel in figures.values():
        assert f"]({rel})" in md
    assert "| task-a | env | 4 | 0.55 [" in md  # the table row of the cell with its IQM
    assert "D(learned, GT)" in md and "without EPIC's canonicalisation" in md
    d_a = np.mean([math.sqrt((1 - r) / 2) for r in PEARSON])
    assert f"| {np.mean(PEARSON):.2f} | {d_a:.2f} |" in md  # task-a · dist: mean r, then mean D over seeds
    assert f"| 0 | {PEARSON[0]:.2f} | {PEARSON[0]:.2f} | {math.sqrt((1 - PEARSON[0]) / 2):.2f} |" in md
    assert "1 run(s) did not finish" in md
    assert md.count("](videos/") == 4 and len(list((out / "videos").glob("*.mp4"))) == 4
    html = (out / "index.html").read_text()
    assert html.count("<table>") >= 4 and html.count("data:image/png;base64,") == len(figures)
    assert '<video controls' in html
    assert _unbalanced_tags(html) == []
    for name in ("results.csv", "runs.csv", "cells.csv", "aggregate.csv", "improvement.csv", "report.json"):
        assert (out / name).is_file()
    cells = pd.read_csv(out / "cells.csv")
    assert cells.loc[0, "success_iqm"] == pytest.approx(0.55)


def test_bench_cli_report_and_errors(synth_root, tmp_path):
    from robo_reward.bench.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "report", str(synth_root), "--out", str(tmp_path / "rep"), "--reps", "200"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "index.html").is_file() and "17 runs (16 finished)" in res.output
    res = runner.invoke(app, ["bench", "run", "no-such-suite"])
    assert res.exit_code == 2 and "no suite file" in res.output
    res = runner.invoke(app, ["bench", "report", str(tmp_path / "empty-dir-that-does-not-exist")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_main_cli_has_bench_group():
    from robo_reward.cli import app

    res = CliRunner().invoke(app, ["bench", "--help"])
    assert res.exit_code == 0
    for cmd in ("run", "report", "list", "show"):
        assert cmd in res.output


# ============================================================================ runners (real training)

def _need_training() -> None:
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("mujoco")


def _statuses(outcomes) -> dict[str, str]:
    return {o.cell.id: o.status for o in outcomes}


def test_local_runner_micro_suite_end_to_end_and_resumable(tmp_path):
    _need_training()
    from robo_reward.bench.report import write_report
    from robo_reward.bench.runner import run_suite

    suite = suite_from_dict(_micro())
    out = tmp_path / "bench"
    first = run_suite(suite, out, workers=2, progress=False, log=lambda m: None)
    assert _statuses(first) == {"mujoco-reacher-v5/env/ppo/seed0": "done",
                                "mujoco-reacher-v5/distance/ppo/seed0": "done"}, [o.log.read_text() for o in first]
    env_dir = out / "micro" / "mujoco-reacher-v5" / "env" / "ppo" / "seed0"
    dist_dir = out / "micro" / "mujoco-reacher-v5" / "distance" / "ppo" / "seed0"
    for d in (env_dir, dist_dir):
        summary = json.loads((d / "summary.json").read_text())
        assert summary["timesteps"] >= 128 and summary["final_eval"]["episodes"] == 2
        assert (d / "bench.log").is_file() and (d / "bench_cell.json").is_file()
    assert not (env_dir / "alignment.json").exists()  # the env reward is the ground truth itself
    al = json.loads((dist_dir / "alignment.json").read_text())
    assert al["steps"] == 50 and -1.0 <= al["step_pearson"] <= 1.0
    assert al["step_pearson_distance"] == pytest.approx(math.sqrt((1 - al["step_pearson"]) / 2))
    assert (out / "micro" / "suite.yaml").is_file()

    # a second call finds everything done and trains nothing
    stamp = (dist_dir / "summary.json").stat().st_mtime_ns
    second = run_suite(suite, out, workers=2, progress=False, log=lambda m: None)
    assert set(_statuses(second).values()) == {"skipped"}
    assert (dist_dir / "summary.json").stat().st_mtime_ns == stamp

    # a cell whose alignment is missing is completed without training again
    (dist_dir / "alignment.json").unlink()
    third = run_suite(suite, out, workers=1, progress=False, log=lambda m: None)
    assert _statuses(third) == {"mujoco-reacher-v5/env/ppo/seed0": "skipped",
                                "mujoco-reacher-v5/distance/ppo/seed0": "done"}
    assert len(json.loads((dist_dir / "segments.json").read_text())) == 1
    assert (dist_dir / "summary.json").stat().st_mtime_ns == stamp
    assert (dist_dir / "alignment.json").is_file()

    info = write_report(out / "micro", tmp_path / "report", reps=200)
    assert info["finished"] == 2 and "reward_vs_gt" in info["figures"]


def test_failed_cell_is_reported_and_others_finish(tmp_path):
    _need_training()
    from robo_reward.bench.runner import run_suite

    suite = suite_from_dict(_micro(rewards={"broken": "python:fn=robo_reward.no_such_module:reward"}))
    outcomes = run_suite(suite, tmp_path, workers=1, progress=False, log=lambda m: None)
    assert [o.status for o in outcomes] == ["failed"]
    assert outcomes[0].returncode != 0
    assert "no_such_module" in outcomes[0].log.read_text()


def test_run_folder_of_another_run_is_not_reused(tmp_path):
    from robo_reward.bench.runner import plan

    suite = suite_from_dict(_micro())
    cell = suite.cells(tmp_path)[0]
    cell.run_dir.mkdir(parents=True)
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump({**cell.config, "seed": 5, "mode": "replace"}))
    with pytest.raises(ConfigError, match="different run"):
        plan(suite, tmp_path)


def test_a_cell_runs_in_one_process_at_a_time(tmp_path):
    from robo_reward.bench.worker import cell_lock, run_cell

    cell = suite_from_dict(_micro()).cells(tmp_path)[0]
    with cell_lock(cell.run_dir):
        with pytest.raises(ConfigError, match="is being run by pid"):
            run_cell(cell)
    assert not (cell.run_dir / "config.yaml").exists()


@pytest.mark.slow
def test_resume_after_killed_cell(tmp_path):
    _need_training()
    from robo_reward.bench.runner import run_suite
    from robo_reward.bench.worker import write_cell

    suite = suite_from_dict(_micro(
        rewards={"env": "env"}, steps=6000,
        run={"n_envs": 1, "log_freq": 256, "checkpoint_freq": 256, "video": False, "device": "cpu"},
        agents={"ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 1}}))
    cell = suite.cells(tmp_path)[0]
    write_cell(cell)
    proc = subprocess.Popen([sys.executable, "-m", "robo_reward.bench.worker", str(cell.run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((cell.run_dir / "checkpoints").glob("step_*.json")):
        assert proc.poll() is None, "the cell finished or died before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cell.run_dir / "summary.json").exists()
    outcomes = run_suite(suite, tmp_path, workers=1, progress=False, log=lambda m: None)
    assert [o.status for o in outcomes] == ["done"]
    segments = json.loads((cell.run_dir / "segments.json").read_text())
    assert len(segments) == 2 and segments[1]["start_timesteps"] > 0  # resumed from the checkpoint
    assert json.loads((cell.run_dir / "summary.json").read_text())["timesteps"] >= 6000


@pytest.mark.slow
def test_ray_local_runs_two_cells(tmp_path):
    _need_training()
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("Ray is not installed (pip install ray); the Ray backend is optional")
    from robo_reward.bench.runner import run_suite

    suite = suite_from_dict(_micro(alignment_episodes=0))
    outcomes = run_suite(suite, tmp_path, ray="local", workers=2, progress=False, log=lambda m: None)
    assert [o.status for o in outcomes] == ["done", "done"], [o.log.read_text() for o in outcomes if o.log]
    for o in outcomes:
        assert (o.cell.run_dir / "summary.json").is_file()
    again = run_suite(suite, tmp_path, ray="local", workers=2, progress=False, log=lambda m: None)
    assert [o.status for o in again] == ["skipped", "skipped"]


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path):
    _need_training()
    from robo_reward.bench.report import write_report
    from robo_reward.bench.runner import run_suite

    suite = load_suite("smoke")
    outcomes = run_suite(suite, tmp_path / "bench", workers=2, progress=False, log=lambda m: None)
    assert all(o.status == "done" for o in outcomes), [str(o.log) for o in outcomes if o.status != "done"]
    info = write_report(tmp_path / "bench" / "smoke", tmp_path / "report")
    assert info["finished"] == 8 and len(info["videos"]) == 8
    cells = pd.read_csv(tmp_path / "report" / "cells.csv")
    assert list(cells["reward"]) == ["env", "distance"] and list(cells["seeds"]) == [4, 4]
    assert (tmp_path / "report" / "index.html").stat().st_size > 50_000


def test_write_result_files(tmp_path, capsys):
    """A benchmark's results: OUT.json and OUT.md side by side, the folder made, the table printed."""
    from robo_reward.bench.files import write_result_files

    path = write_result_files(tmp_path / "deep" / "bench.txt", {"ratio": 0.97, "rows": [1, 2]}, "| a |\n", indent=2)
    assert path == tmp_path / "deep" / "bench.json"
    assert json.loads(path.read_text()) == {"ratio": 0.97, "rows": [1, 2]}
    assert (tmp_path / "deep" / "bench.md").read_text() == "| a |\n"
    assert "| a |" in capsys.readouterr().out
    write_result_files(tmp_path / "quiet", {}, "x", echo=False)
    assert capsys.readouterr().out == "" and (tmp_path / "quiet.md").read_text() == "x"

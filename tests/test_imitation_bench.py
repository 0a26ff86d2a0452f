"""The robo_reward side of ``benchmarks/imitation_pref.py`` (the imitation environment is never built here)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "imitation_pref.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark script, imported as a module."""
    spec = importlib.util.spec_from_file_location("imitation_pref_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_queries_needed_hand_built(bench):
    budgets = [400, 50, 200, 100]  # any order
    dists = [0.35, 0.5, 0.29, 0.31]
    assert bench.queries_needed(budgets, dists, 0.3) == 200
    assert bench.queries_needed(budgets, dists, 0.31) == 100  # at the target counts
    assert bench.queries_needed(budgets, dists, 0.2) is None
    assert bench.queries_needed(budgets, dists, 1.0) == 50
    assert bench.queries_needed([50, 100], [math.nan, 0.1], 0.2) == 100
    with pytest.raises(ValueError):
        bench.queries_needed([50, 100], [0.1], 0.2)


def test_summarize_means_and_queries_needed(bench):
    rows = []
    curves = {0: {50: 0.40, 100: 0.28, 200: 0.18}, 1: {50: 0.44, 100: 0.34, 200: 0.22}}
    for seed, curve in curves.items():
        for b, d in curve.items():
            rows.append({"arm": "a", "library": "x", "method": "m", "seed": seed, "budget": b,
                         "epic": d, "pearson": d + 0.01, "seconds": 1.0 + seed})
    (row,) = bench.summarize(rows, [50, 100, 200], [0.3, 0.2])
    per = row["per_budget"]
    assert per["100"]["epic"]["mean"] == pytest.approx(0.31)
    assert per["100"]["epic"]["std"] == pytest.approx(np.std([0.28, 0.34], ddof=1))
    assert per["50"]["seconds"]["mean"] == pytest.approx(1.5)
    # mean curve 0.42, 0.31, 0.20: 0.3 first reached at 200; per seed at 100 and 200
    assert row["queries_needed"]["0.3"] == {"mean_curve": 200, "per_seed": [100, 200]}
    assert row["queries_needed"]["0.2"] == {"mean_curve": 200, "per_seed": [200, None]}


def test_query_schedule_is_imitations_hyperbolic_split(bench):
    # int(0.1 * 200) = 20 first; 180 split as 1, 1/1.25, 1/1.5, 1/1.75, 1/2 (normalised), largest remainders rounded up
    assert bench.query_schedule(200) == [20, 51, 41, 34, 29, 25]
    for total in (7, 50, 123, 800, 1601):
        sched = bench.query_schedule(total)
        assert sum(sched) == total and len(sched) == 6 and sched[0] == int(0.1 * total)
        assert sched[1:] == sorted(sched[1:], reverse=True)


def test_segments_carry_reacher_reward_and_learning_beats_random(bench):
    pytest.importorskip("mujoco")
    torch = pytest.importorskip("torch")
    from robo_reward.rewards.preference import BPrefTeacher

    torch.set_num_threads(1)
    pool = bench.rollout_episodes(60, seed=123)
    assert pool["ep_obs"].shape == (60, 51, 11) and pool["ep_act"].shape == (60, 50, 2)
    seg = bench.episode_segments(pool)
    assert len(seg) == 120 and seg.length == bench.SEGMENT_LENGTH
    # segments are consecutive windows: the second starts where the first ended
    np.testing.assert_array_equal(seg.next_obs[0, -1], seg.obs[1, 0])
    # the true reward the metric uses is the env's own reward
    r = bench.true_reward(seg.obs.reshape(-1, 11), seg.action.reshape(-1, 2)).reshape(seg.rewards.shape)
    np.testing.assert_allclose(r, seg.rewards, atol=1e-5)
    # the behaviour mix is diverse: the reacher's returns beat uniformly random actions by far
    returns = pool["ep_rew"].sum(1)
    by = {name: returns[pool["ep_policy"] == k].mean() for k, name in enumerate(bench.POLICIES)
          if (pool["ep_policy"] == k).any()}
    assert by["reach"] > by["random"] + 20

    held = bench.rollout_episodes(10, seed=999)
    trans = bench.eval_transitions(held, 400, seed=0)
    assert len(trans) == 400
    i, j = bench.draw_pairs(len(seg), 200, np.random.default_rng(0))
    assert np.all(i != j)
    labels = BPrefTeacher(beta=bench.TEACHER_BETA, seed=0).label(seg[i], seg[j])
    model, seconds, cpu_seconds = bench.run_ours_fixed(seg, i, j, labels, 0, epochs=30, batch_size=32, lr=1e-3)
    assert seconds > 0 and cpu_seconds > 0
    fn = bench.ours_reward_fn(model)
    np.testing.assert_allclose(fn(trans.obs, trans.action, trans.next_obs), model.predict(trans.obs, trans.action),
                               rtol=1e-4, atol=1e-5)
    learned = bench.reward_distances(fn, trans, n_mean=32)
    untrained = bench.reward_distances(bench.ours_reward_fn(bench.ours_model(11, 2, 0)), trans, n_mean=32)
    exact = bench.reward_distances(bench.true_reward, trans, n_mean=32)
    assert exact["epic"] == pytest.approx(0.0, abs=1e-6) and exact["pearson"] == pytest.approx(0.0, abs=1e-6)
    assert learned["epic"] < untrained["epic"] - 0.1
    assert learned["pearson"] < 0.4


def _write_mlp(path, rng, probe_out=None):
    """A hand-made exported net: norm -> linear(13->4) -> relu -> linear(4->1) -> squeeze."""
    import json

    mean, scale = rng.normal(size=13).astype(np.float32), rng.uniform(0.5, 2, 13).astype(np.float32)
    w1, b1 = rng.normal(size=(4, 13)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    w2, b2 = rng.normal(size=(1, 4)).astype(np.float32), rng.normal(size=1).astype(np.float32)
    obs, act = rng.normal(size=(6, 11)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)

    def by_hand(o, a):
        x = (np.concatenate([o, a], 1) - mean) / scale
        return (np.maximum(x @ w1.T + b1, 0) @ w2.T + b2)[:, 0]

    np.savez(path, ops=np.asarray(json.dumps(["norm", "linear", "relu", "linear", "squeeze"])),
             p0_mean=mean, p0_scale=scale, p1_W=w1, p1_b=b1, p3_W=w2, p3_b=b2, probe_obs=obs, probe_act=act,
             probe_out=by_hand(obs, act) if probe_out is None else probe_out)
    return by_hand


def test_exported_net_reader(bench, tmp_path):
    rng = np.random.default_rng(0)
    by_hand = _write_mlp(tmp_path / "net.npz", rng)
    fn = bench.mlp_reward_fn(tmp_path / "net.npz")
    obs, act = rng.normal(size=(9, 11)), rng.normal(size=(9, 2))
    got = fn(obs, act, obs)
    assert got.dtype == np.float64 and got.shape == (9,)
    np.testing.assert_allclose(got, by_hand(obs.astype(np.float32), act.astype(np.float32)), rtol=1e-5, atol=1e-5)
    # a file whose stored probe output disagrees with the evaluation is refused
    _write_mlp(tmp_path / "bad.npz", np.random.default_rng(0), probe_out=np.zeros(6, np.float32) + 100.0)
    with pytest.raises(RuntimeError, match="differs"):
        bench.mlp_reward_fn(tmp_path / "bad.npz")


def test_ensemble_reader_is_the_members_mean(bench, tmp_path):
    """imitation's RewardEnsemble is scored as the mean of its exported members."""
    a = _write_mlp(tmp_path / "m0.npz", np.random.default_rng(1))
    b = _write_mlp(tmp_path / "m1.npz", np.random.default_rng(2))
    fn = bench.ensemble_reward_fn([tmp_path / "m0.npz", tmp_path / "m1.npz"])
    obs, act = np.random.default_rng(3).normal(size=(7, 11)), np.random.default_rng(4).normal(size=(7, 2))
    o32, a32 = obs.astype(np.float32), act.astype(np.float32)
    np.testing.assert_allclose(fn(obs, act), (a(o32, a32) + b(o32, a32)) / 2, rtol=1e-5, atol=1e-5)
    assert fn.probe_error < 1e-4


def test_quick_flag_shrinks_the_run(bench):
    args = bench.parse_args(["--quick", "--no-imitation"])
    assert args.seeds == [0] and args.budgets == [50, 200] and args.no_imitation
    full = bench.parse_args([])
    assert full.seeds == [0, 1, 2] and full.budgets == [50, 100, 200, 400, 800]


def test_report_renders_missing_budgets_and_verdict(bench):
    rows = []
    for seed in (0, 1):
        for b, d in ((50, 0.4), (100, 0.28), (200, 0.19)):
            rows.append({"arm": "same pairs", "library": "robo_reward", "method": "same pairs · robo_reward",
                         "seed": seed, "budget": b, "epic": d, "pearson": d, "seconds": 1.0, "cpu_seconds": 0.5})
        for b, d in ((50, 0.45), (100, 0.35)):
            rows.append({"arm": "same pairs", "library": "imitation", "method": "same pairs · imitation",
                         "seed": seed, "budget": b, "epic": d, "pearson": d, "seconds": 2.0, "cpu_seconds": 1.9})
    summary = bench.summarize(rows, [50, 100, 200], [0.3, 0.2])
    settings = {"budgets": [50, 100, 200], "same_pairs_budgets": [50, 100, 200], "loop_budgets": [],
                "targets": [0.3, 0.2], "env_id": bench.ENV_ID, "pool_episodes": 10, "pool_segments": 20,
                "segment_length": 25, "eval_transitions": 100, "eval_episodes": 2, "teacher_beta": 1.0,
                "seeds": [0, 1], "fixed": {"epochs": 30, "batch_size": 32, "lr": 1e-3},
                "loop": {"num_iterations": 5, "initial_comparison_frac": 0.1, "epochs": 3,
                         "initial_epoch_multiplier": 200.0}, "ours_loop_epochs": 50, "epic_n_mean": 64}
    res = {"command": "python x", "wall_seconds": 60.0, "cpu_seconds": 30.0, "settings": settings,
           "machine": {"cpu": "cpu", "cores": 2}, "versions": {"robo_reward": {"torch": "t"}},
           "references": {"r": {"epic": 0.5, "pearson": 0.5}}, "summary": summary,
           "verdict": bench.verdict(summary, [0.3, 0.2]), "checks": {}, "notes": ["n"]}
    md = bench.markdown(res)
    assert "| same pairs · imitation | 0.450 ± 0.000 | 0.350 ± 0.000 | — |" in md
    assert "| same pairs · robo_reward | 100 [100, 100] | 200 [200, 200] |" in md
    assert "EPIC ≤ 0.3: robo_reward 100, imitation did not reach it (met)" in md
    assert "CPU time of reward learning" in md and "1.0 min wall, 0.5 min CPU" in md

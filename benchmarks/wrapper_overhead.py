"""Steps/s of a reward-wrapped env against the raw env, run side by side.

Single env (HalfCheetah-v5) and a Gymnasium vector env (8 x HalfCheetah-v5, sync),
each wrapped with a reward plugin that costs nothing itself (``constant``), so the
ratio measures the wrapper's own plumbing.

The wrapper costs about a microsecond on a ~40 microsecond step, so the measurement has
to beat machine noise that is larger than the effect: raw and wrapped envs run in short
blocks that alternate (ABBA order, so neither side always goes first), each block timed
in CPU time of this process (other processes on the machine then slow neither side),
and the ratio is the median over pairs of adjacent blocks, with a bootstrap 95%
interval. Slow drift in machine load hits both halves of a pair alike. The ratio of the
fastest block of each side (``timeit``'s convention: the least disturbed run) is
reported beside it.

Usage::

    python benchmarks/wrapper_overhead.py [--block 1000] [--pairs 200] [--out benchmarks/results/wrapper_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from scipy import stats

import robo_reward as rr


# Steps per CPU-second of this process (time.process_time): other processes sharing
# the cores then slow neither side. Wall-clock rates are not reported.
_clock = time.process_time


def _time_single(env: gym.Env, actions: np.ndarray) -> float:
    step = env.step
    t0 = _clock()
    for a in actions:
        _, _, term, trunc, _ = step(a)
        if term or trunc:
            env.reset()
    return len(actions) / (_clock() - t0)


def _time_vector(env: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    step = env.step
    t0 = _clock()
    for a in actions:
        step(a)
    return len(actions) * env.num_envs / (_clock() - t0)


def _paired(timer, raw, wrapped, actions: np.ndarray, pairs: int, seed: int) -> dict:
    """Alternate raw and wrapped blocks (ABBA...) and summarise the per-pair ratios."""
    raw_rates, wrapped_rates = [], []
    for i in range(pairs):
        if i % 2 == 0:
            r, w = timer(raw, actions), timer(wrapped, actions)
        else:
            w, r = timer(wrapped, actions), timer(raw, actions)
        raw_rates.append(r)
        wrapped_rates.append(w)
    ratios = np.asarray(wrapped_rates) / np.asarray(raw_rates)
    boot = stats.bootstrap((ratios,), np.median, confidence_level=0.95, n_resamples=2000,
                           random_state=np.random.default_rng(seed))
    return {
        "ratio_median": round(float(np.median(ratios)), 4),
        "ratio_ci95": [round(float(boot.confidence_interval.low), 4), round(float(boot.confidence_interval.high), 4)],
        # timeit's convention: the fastest block of each side is the one least disturbed by other work
        "ratio_best_blocks": round(float(np.max(wrapped_rates) / np.max(raw_rates)), 4),
        "ratio_of_total_time": round(float(np.sum(1 / np.asarray(raw_rates)) / np.sum(1 / np.asarray(wrapped_rates))), 4),
        "median_steps_per_s": {"raw": round(statistics.median(raw_rates), 1),
                               "wrapped": round(statistics.median(wrapped_rates), 1)},
        "overhead_us_per_step_median": round(float(np.median(1e6 / np.asarray(wrapped_rates) - 1e6 / np.asarray(raw_rates))), 3),
    }


def run(block: int, pairs: int, n_envs: int, task: str, plugin: str) -> dict:
    """Measure both settings and return the results as a dict."""
    rng = np.random.default_rng(0)
    raw = gym.make(task)
    wrapped = rr.RewardWrapper(gym.make(task), plugin)
    acts = rng.uniform(-1, 1, size=(block, *raw.action_space.shape)).astype(np.float32)
    vraw = gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync")
    vwrapped = rr.VectorRewardWrapper(gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync"), plugin)
    vblock = max(block // n_envs, 50)
    vacts = rng.uniform(-1, 1, size=(vblock, n_envs, *raw.action_space.shape)).astype(np.float32)
    for e in (raw, wrapped, vraw, vwrapped):
        e.reset(seed=0)
    # warm-up (first steps pay for imports, caches, env checker)
    for _ in range(3):
        _time_single(raw, acts), _time_single(wrapped, acts)
        _time_vector(vraw, vacts), _time_vector(vwrapped, vacts)

    single = _paired(_time_single, raw, wrapped, acts, pairs, 0)
    vector = _paired(_time_vector, vraw, vwrapped, vacts, pairs, 1)
    load = [round(x, 2) for x in os.getloadavg()]
    return {
        "task": task,
        "plugin": plugin,
        "n_envs": n_envs,
        "steps_per_block": {"single": block, "vector": vblock * n_envs},
        "pairs": pairs,
        "clock": "process CPU time (steps per CPU-second), ABBA-alternating blocks",
        "load_average_after": load,
        "single": single,
        "vector": vector,
        "ratio_single": single["ratio_median"],
        "ratio_vector": vector["ratio_median"],
        "targets": {"single": 0.97, "vector": 0.95},
    }


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--block", type=int, default=1000, help="env steps per timed block")
    p.add_argument("--pairs", type=int, default=200, help="raw/wrapped block pairs per setting")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--task", default="HalfCheetah-v5")
    p.add_argument("--plugin", default="constant:value=0")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "wrapper_overhead.json")
    args = p.parse_args()
    result = run(args.block, args.pairs, args.n_envs, args.task, args.plugin)
    result["command"] = "python " + " ".join(sys.argv)
    result["machine"] = {"python": platform.python_version(), "processor": platform.machine(), "device": "cpu"}
    result["date"] = time.strftime("%Y-%m-%d")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("single", "vector")}, indent=2))


if __name__ == "__main__":
    main()

"""Steps/s of a reward-wrapped env against the raw env, run side by side.

Single env (HalfCheetah-v5) and a Gymnasium vector env (8 x HalfCheetah-v5, sync),
each wrapped with a reward plugin that costs nothing itself (``constant``), so the
ratio measures the wrapper's own plumbing. Rates are steps per CPU-second of this
process, so other work on the machine does not favour either side. Raw and wrapped runs alternate
(ABAB...) over several rounds and the median of each is reported, which keeps
drift in machine load from favouring either side.

Usage::

    python benchmarks/wrapper_overhead.py [--steps 20000] [--rounds 7] [--out benchmarks/results/wrapper_overhead.json]
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

import robo_reward as rr


# Steps per CPU-second of this process (time.process_time): other processes sharing
# the cores then slow neither side. Wall-clock rates are not reported.
_clock = time.process_time


def _time_single(env: gym.Env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    step = env.step
    t0 = _clock()
    for a in actions:
        _, _, term, trunc, _ = step(a)
        if term or trunc:
            env.reset()
    return len(actions) / (_clock() - t0)


def _time_vector(env: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    env.reset(seed=0)
    step = env.step
    t0 = _clock()
    for a in actions:
        step(a)
    return len(actions) * env.num_envs / (_clock() - t0)


def run(steps: int, rounds: int, n_envs: int, task: str, plugin: str) -> dict:
    """Measure both settings and return the results as a dict."""
    rng = np.random.default_rng(0)
    raw = gym.make(task)
    wrapped = rr.RewardWrapper(gym.make(task), plugin)
    acts = rng.uniform(-1, 1, size=(steps, *raw.action_space.shape)).astype(np.float32)
    vraw = gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync")
    vwrapped = rr.VectorRewardWrapper(gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync"), plugin)
    vsteps = max(steps // n_envs, 100)
    vacts = rng.uniform(-1, 1, size=(vsteps, n_envs, *raw.action_space.shape)).astype(np.float32)

    # warm-up (first steps pay for imports, caches, env checker)
    _time_single(raw, acts[:500]), _time_single(wrapped, acts[:500])
    _time_vector(vraw, vacts[:50]), _time_vector(vwrapped, vacts[:50])

    res: dict[str, list[float]] = {"single_raw": [], "single_wrapped": [], "vector_raw": [], "vector_wrapped": []}
    for _ in range(rounds):
        res["single_raw"].append(_time_single(raw, acts))
        res["single_wrapped"].append(_time_single(wrapped, acts))
        res["vector_raw"].append(_time_vector(vraw, vacts))
        res["vector_wrapped"].append(_time_vector(vwrapped, vacts))
    med = {k: statistics.median(v) for k, v in res.items()}
    load = [round(x, 2) for x in os.getloadavg()]
    return {
        "task": task,
        "plugin": plugin,
        "n_envs": n_envs,
        "steps_per_round": {"single": steps, "vector": vsteps * n_envs},
        "rounds": rounds,
        "clock": "process CPU time (steps per CPU-second)",
        "load_average_after": load,
        "median_steps_per_s": {k: round(v, 1) for k, v in med.items()},
        "all_steps_per_s": {k: [round(x, 1) for x in v] for k, v in res.items()},
        "ratio_single": round(med["single_wrapped"] / med["single_raw"], 4),
        "ratio_vector": round(med["vector_wrapped"] / med["vector_raw"], 4),
        "targets": {"single": 0.97, "vector": 0.95},
    }


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--task", default="HalfCheetah-v5")
    p.add_argument("--plugin", default="constant:value=0")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "wrapper_overhead.json")
    args = p.parse_args()
    result = run(args.steps, args.rounds, args.n_envs, args.task, args.plugin)
    result["command"] = "python " + " ".join(sys.argv)
    result["machine"] = {"python": platform.python_version(), "processor": platform.machine(), "device": "cpu"}
    result["date"] = time.strftime("%Y-%m-%d")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_steps_per_s", "ratio_single", "ratio_vector")}, indent=2))


if __name__ == "__main__":
    main()

"""The committed ``mujoco-locomotion-cpu`` comparison: env reward vs code reward vs preference-learned reward.

Three steps, each resumable:

1. ``fit`` — learn one Bradley–Terry reward ensemble per task from synthetic preferences
   (B-Pref's ``oracle`` teacher on the env's own return) over 25-step segments of
   random-policy rollouts, with ensemble-disagreement queries; save them where the suite
   file expects them and record the queries used and the learned reward's Pearson
   correlation with the env reward on fresh random transitions.
2. ``run`` — ``robo-reward bench run benchmarks/suites/mujoco-locomotion-cpu.yaml``.
3. ``report`` — ``robo-reward bench report``.

Usage (from the repository root)::

    python benchmarks/locomotion_rewards.py [--steps fit,run,report] [--queries 500] [--workers 2]

Everything runs on the CPU; the figures it writes are CPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "suites" / "mujoco-locomotion-cpu.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "mujoco-locomotion-cpu"
MODELS = RESULTS / "models"
TASKS = ["mujoco-half-cheetah-v5", "mujoco-hopper-v5", "mujoco-walker2d-v5", "mujoco-ant-v5"]


def fit(queries: int, per_round: int, segments: int, seed: int) -> dict:
    """Fit and save one preference reward per task; return what was measured."""
    import gymnasium as gym
    import torch

    import robo_reward  # noqa: F401  (registers the robo_reward/<card> env ids)
    from robo_reward.envs.cards import load_card
    from robo_reward.rewards.preference import (BPrefTeacher, PreferenceTrainer, RewardEnsemble,
                                                RewardModelConfig, collect_segments)

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    MODELS.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for task in TASKS:
        path = MODELS / f"{task}.pt"
        card = load_card(task)
        env = gym.make(card.env_id, **card.env_kwargs)
        t0 = time.perf_counter()
        pool = collect_segments(env, policy=None, n=segments, length=25, seed=seed)
        model = RewardEnsemble(RewardModelConfig.for_spaces(env.observation_space, env.action_space, normalize=True))
        trainer = PreferenceTrainer(model, BPrefTeacher.preset("oracle"), sampler="disagreement",
                                    train_kwargs={"epochs": 50}, seed=seed)
        trainer.add_segments(pool)
        asked = 0
        while asked < queries:
            trainer.round(min(per_round, queries - asked))
            asked += min(per_round, queries - asked)
        model.save(path)
        # held-out check: fresh random transitions, learned reward vs the env's own
        test = collect_segments(env, policy=None, n=100, length=25, seed=seed + 1000)
        s = test.obs.reshape(-1, test.obs.shape[-1])
        a = test.action.reshape(-1, test.action.shape[-1])
        s2 = test.next_obs.reshape(-1, test.next_obs.shape[-1])
        learned = np.asarray(model.predict(s, a, s2)).reshape(-1)
        rho = float(np.corrcoef(learned, test.rewards.reshape(-1))[0, 1])
        out[task] = {"model": str(path.relative_to(ROOT)), "queries": asked, "segments": segments,
                     "pearson_vs_env_reward_random_transitions": round(rho, 3),
                     "fit_seconds": round(time.perf_counter() - t0, 1)}
        print(task, out[task], flush=True)
        env.close()
    return out


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="fit,run,report", help="comma-separated subset of fit,run,report")
    p.add_argument("--queries", type=int, default=500, help="preference queries per task")
    p.add_argument("--per-round", type=int, default=50, help="queries per active-learning round")
    p.add_argument("--segments", type=int, default=800, help="random-policy segments in the query pool")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    steps = set(args.steps.split(","))
    os.chdir(ROOT)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta_path = RESULTS / "fit.json"
    if "fit" in steps:
        meta = {"command": "python " + " ".join(sys.argv), "device": "cpu",
                "teacher": "BPrefTeacher.preset('oracle') on the env's own segment return",
                "date": time.strftime("%Y-%m-%d"), "tasks": fit(args.queries, args.per_round, args.segments, args.seed)}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    cli = [sys.executable, "-m", "robo_reward.cli"]
    if "run" in steps:
        subprocess.run([*cli, "bench", "run", str(SUITE), "--out", "runs/bench", "--workers", str(args.workers),
                        "--no-progress"], check=True)
    if "report" in steps:
        subprocess.run([*cli, "bench", "report", "runs/bench/mujoco-locomotion-cpu", "--out", str(RESULTS / "report")],
                       check=True)


if __name__ == "__main__":
    main()

"""How well does the reward an agent learned from track the ground truth, on the agent's own behaviour?

:func:`reward_alignment` rolls out a trained run's deterministic policy in the task
card's env wrapped with the run's reward (same spec and mixing mode as in training)
and records, every step, the reward the agent was trained on and the environment's own
reward (``info["env_reward"]``). It reports their Pearson and Spearman correlation
over steps, and over episode returns, with the Pearson distance
``D = sqrt((1 - r) / 2)`` of each Pearson ``r`` (0: perfectly correlated, 0.71:
uncorrelated, 1: anti-correlated), and writes ``alignment.json`` (statistics and
per-episode returns) and ``alignment.npz`` (the per-step values) into the run folder.

The Pearson distance is the one EPIC (Gleave et al. 2021, "Quantifying Differences in
Reward Functions") takes between two rewards, and the EPIC-style distance VLM-RM
(Rocamonde et al. 2023) reports between a CLIP reward and the ground truth. Here it is
taken on the raw per-step rewards of the policy's own rollouts, **without EPIC's
canonicalisation**: the env's reward is only known on simulated transitions, so EPIC's
off-trajectory expectations cannot be taken for it (see :mod:`robo_reward.metrics` for
EPIC proper). It is therefore not invariant to potential shaping and depends on the
states the trained policy visits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from .stats import correlations

ALIGNMENT_JSON = "alignment.json"
ALIGNMENT_NPZ = "alignment.npz"


def rollout_rewards(run_dir: str | Path, episodes: int, seed: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Per-step learned and ground-truth rewards of ``episodes`` deterministic episodes of a run's policy.

    Returns ``{"learned": float[T], "gt": float[T], "episode": int[T], "learned_returns",
    "gt_returns", "successes", "seed"}``.
    """
    from ..envs import make_env
    from ..train.evaluate import EVAL_SEED_OFFSET, load_run_model

    if episodes <= 0:
        raise ConfigError(f"episodes must be > 0, got {episodes}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    model, cfg, _ = load_run_model(run_dir, device=device)
    if seed is None:
        seed = int(cfg.get("seed") or 0) + EVAL_SEED_OFFSET
    reward = cfg.get("reward")
    if reward is None:
        raise ConfigError(f"{run_dir} trained on the env's own reward: there is no learned reward to compare")
    env = make_env(cfg["task"], reward=reward, mode=cfg.get("mode") or "replace", seed=seed,
                   alpha=cfg.get("alpha"), weights=cfg.get("weights"))
    learned: list[float] = []
    gt: list[float] = []
    ep_idx: list[int] = []
    learned_ret, gt_ret, succ = [], [], []
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            done, lr, gr, ok = False, 0.0, 0.0, bool(info.get("is_success", False))
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, r, terminated, truncated, info = env.step(action)
                learned.append(float(r))
                gt.append(float(info["env_reward"]))
                ep_idx.append(ep)
                lr += float(r)
                gr += float(info["env_reward"])
                ok = ok or bool(info.get("is_success", False))
                done = bool(terminated or truncated)
            learned_ret.append(lr)
            gt_ret.append(gr)
            succ.append(ok)
    finally:
        env.close()
    return {
        "learned": np.asarray(learned, dtype=np.float64),
        "gt": np.asarray(gt, dtype=np.float64),
        "episode": np.asarray(ep_idx, dtype=np.int64),
        "learned_returns": learned_ret,
        "gt_returns": gt_ret,
        "successes": succ,
        "seed": int(seed),
    }


def reward_alignment(run_dir: str | Path, episodes: int = 3, seed: int | None = None, device: str = "cpu",
                     write: bool = True) -> dict[str, Any]:
    """Correlate a run's learned reward with the ground truth over evaluation rollouts; write ``alignment.json``.

    Returns (and writes) ``{"episodes", "seed", "steps", "step_pearson", "step_spearman",
    "step_pearson_distance", "return_pearson", "return_spearman", "return_pearson_distance",
    "learned_returns", "gt_returns", "successes", "time_s"}``. Correlations and distances
    are ``None`` where undefined (a constant reward, or fewer than 3 values). The
    distances are ``sqrt((1 - r) / 2)`` of the Pearson ``r`` beside them, without EPIC's
    canonicalisation (see the module docstring).
    """
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    data = rollout_rewards(run_dir, episodes, seed=seed, device=device)
    step = correlations(data["learned"], data["gt"])
    ret = correlations(data["learned_returns"], data["gt_returns"])
    out = {
        "episodes": episodes,
        "seed": data["seed"],
        "steps": int(data["learned"].size),
        "step_pearson": step["pearson"],
        "step_spearman": step["spearman"],
        "step_pearson_distance": step["pearson_distance"],
        "return_pearson": ret["pearson"],
        "return_spearman": ret["spearman"],
        "return_pearson_distance": ret["pearson_distance"],
        "learned_returns": data["learned_returns"],
        "gt_returns": data["gt_returns"],
        "successes": data["successes"],
        "time_s": round(time.perf_counter() - t0, 3),
    }
    if write:
        np.savez_compressed(run_dir / ALIGNMENT_NPZ, learned=data["learned"].astype(np.float32),
                            gt=data["gt"].astype(np.float32), episode=data["episode"].astype(np.int32))
        write_alignment(run_dir, out)
    return out


def write_alignment(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write ``alignment.json`` atomically."""
    path = Path(run_dir) / ALIGNMENT_JSON
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False))
    tmp.replace(path)


__all__ = ["ALIGNMENT_JSON", "ALIGNMENT_NPZ", "reward_alignment", "rollout_rewards", "write_alignment"]

"""The d3rlpy side of ``benchmarks/iql_vs_d3rlpy.py``; runs inside the d3rlpy virtual environment.

It imports only numpy, torch and d3rlpy (not robo_reward, whose pins differ), reads a
robo_reward ``.npz`` dataset with numpy, builds a ``d3rlpy.dataset.MDPDataset`` from it
and times d3rlpy's IQL updates on command. Protocol: one JSON object per line on stdin,
one JSON answer per line on stdout:

* ``{"cmd": "setup", "dataset": PATH, "hidden": [256, 256], "batch_size": 256, "lr": 3e-4,
  "seed": 0, "threads": 1, "device": "cpu:0", "warmup": 50}`` → versions, dataset size,
  parameter count;
* ``{"cmd": "run", "steps": K, "mode": "full" | "update"}`` → ``{"wall_s", "cpu_s"}`` for
  ``K`` steps: ``full`` samples each batch from the replay buffer and updates (what
  ``fit`` does per step), ``update`` times ``algo.update`` on batches sampled beforehand;
* ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np


def _episode_ends(episode_ids: np.ndarray) -> np.ndarray:
    ends = np.zeros(len(episode_ids), bool)
    ends[:-1] = episode_ids[1:] != episode_ids[:-1]
    ends[-1] = True
    return ends


class D3rlpyIQL:
    """d3rlpy's IQL set up like robo_reward's: same layer sizes, batch size, learning rates, τ, β, weight clip."""

    def __init__(self, spec: dict[str, Any]):
        import d3rlpy
        import torch

        torch.set_num_threads(int(spec.get("threads", 1)))
        d3rlpy.seed(int(spec.get("seed", 0)))
        with np.load(spec["dataset"], allow_pickle=False) as z:
            obs = np.asarray(z["observations"], np.float32)
            act = np.asarray(z["actions"], np.float32)
            rew = np.asarray(z["rewards"], np.float32)
            term = np.asarray(z["terminations"], bool)
            ends = _episode_ends(np.asarray(z["episode_ids"]))
        timeouts = ends & ~term
        self.dataset = d3rlpy.dataset.MDPDataset(
            observations=obs, actions=np.clip(act, -1 + 1e-5, 1 - 1e-5), rewards=rew,
            terminals=term.astype(np.float32), timeouts=timeouts.astype(np.float32),
            action_space=d3rlpy.ActionSpace.CONTINUOUS,
        )
        hidden = [int(h) for h in spec.get("hidden", [256, 256])]
        enc = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=hidden, activation="relu")
        scaler = d3rlpy.preprocessing.StandardObservationScaler(
            mean=obs.mean(0), std=np.maximum(obs.std(0, ddof=1), 1e-3), eps=0.0,
        )
        lr = float(spec.get("lr", 3e-4))
        cfg = d3rlpy.algos.IQLConfig(
            batch_size=int(spec.get("batch_size", 256)), actor_learning_rate=lr, critic_learning_rate=lr,
            actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc,
            gamma=float(spec.get("gamma", 0.99)), tau=float(spec.get("polyak", 0.005)), n_critics=2,
            expectile=float(spec.get("expectile", 0.7)), weight_temp=float(spec.get("beta", 3.0)),
            max_weight=float(spec.get("max_weight", 100.0)), observation_scaler=scaler,
        )
        self.algo = cfg.create(device=spec.get("device", "cpu:0"))
        self.algo.build_with_dataset(self.dataset)
        self.batch_size = cfg.batch_size
        impl = self.algo.impl
        self.n_params = int(sum(p.numel() for m in (impl.policy, impl.q_function, impl._modules.value_func)
                                for p in m.parameters()))
        self.grad_step = 0
        self.warmup(int(spec.get("warmup", 50)))

    def _step(self, batch: Any) -> None:
        self.algo.update(batch)
        self.grad_step += 1

    def warmup(self, steps: int) -> None:
        """Untimed steps (allocator, kernels and optimiser state warm up)."""
        for _ in range(steps):
            self._step(self.dataset.sample_transition_batch(self.batch_size))

    def run(self, steps: int, mode: str) -> dict[str, float]:
        """Time ``steps`` gradient steps; ``mode`` says whether sampling is included."""
        if mode == "update":
            batches = [self.dataset.sample_transition_batch(self.batch_size) for _ in range(steps)]
            c0, t0 = time.process_time(), time.perf_counter()
            for b in batches:
                self._step(b)
        elif mode == "full":
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                self._step(self.dataset.sample_transition_batch(self.batch_size))
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("d3rlpy", "torch", "numpy", "gymnasium"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def main() -> None:
    """Serve the JSON-lines protocol on stdin/stdout (library output goes to stderr, never into the answers)."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    bench: D3rlpyIQL | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            if msg["cmd"] == "setup":
                bench = D3rlpyIQL(msg)
                out: dict[str, Any] = {"ok": True, "versions": _versions(), "n_params": bench.n_params,
                                       "transitions": int(bench.dataset.transition_count),
                                       "episodes": len(bench.dataset.episodes)}
            elif msg["cmd"] == "run":
                assert bench is not None, "setup first"
                out = {"ok": True, **bench.run(int(msg["steps"]), msg.get("mode", "full"))}
            elif msg["cmd"] == "quit":
                print(json.dumps({"ok": True}), file=answers, flush=True)
                return
            else:
                out = {"ok": False, "error": f"unknown command {msg['cmd']!r}"}
        except Exception as exc:  # report to the driver instead of dying silently
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), file=answers, flush=True)


if __name__ == "__main__":
    main()

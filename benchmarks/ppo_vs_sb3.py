"""robo_reward's built-in PPO against Stable-Baselines3's PPO, side by side in one run.

Both agents get the same hyperparameters, network (separate 64-64 tanh actor and
critic, orthogonal init), number of envs, learning-rate annealing, value clipping,
observation/reward normalisation (HalfCheetah) and torch thread count (1), on the CPU.
Runs alternate SB3/ours per seed (the order flips every seed) so drift in machine load
does not favour either side.

Reported per run: env steps per second of ``learn()`` by wall clock and by the process's
own CPU time (CPU time is what to compare on a machine shared with other jobs: wall
time then also measures how much of a core the process got), the mean undiscounted env
return of the last 100 training episodes, and the mean return of 5 deterministic
evaluation episodes. Also the raw stepping rate of each library's vector env with random
actions, which bounds how fast either agent can go.

Known differences that remain: SB3 steps a ``DummyVecEnv`` of ``Monitor``-wrapped envs,
ours a Gymnasium ``SyncVectorEnv`` (``SAME_STEP`` autoreset, like SB3's); SB3's value
clipping uses only the clipped prediction, ours the max of clipped and unclipped errors
(CleanRL); SB3 samples actions step by step, ours draws the rollout's noise at once.

Usage::

    python benchmarks/ppo_vs_sb3.py [--seeds 3] [--cartpole-steps 40000] [--cheetah-steps 40960]
        [--out benchmarks/results/ppo_vs_sb3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from robo_reward.bench.files import write_result_files
from robo_reward.agents.ppo import PPO

TASKS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8,
        "normalize": False,
        "hp": {"n_steps": 64, "batch_size": 128, "n_epochs": 8, "learning_rate": 1e-3, "gamma": 0.98,
               "gae_lambda": 0.9, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5},
    },
    "HalfCheetah-v5": {  # CleanRL's continuous-control defaults
        "n_envs": 1,
        "normalize": True,
        "hp": {"n_steps": 2048, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99,
               "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5},
    },
}
EVAL_EPISODES = 5
EVAL_SEED = 10_000


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _evaluate(task: str, act: Callable[[np.ndarray], np.ndarray]) -> float:
    env = gym.make(task)
    returns = []
    for ep in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + ep)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def run_sb3(task: str, spec: dict[str, Any], steps: int, seed: int) -> dict[str, Any]:
    """Train SB3's PPO; return timings and returns."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    hp = dict(spec["hp"])
    lr = hp.pop("learning_rate")
    venv = make_vec_env(task, n_envs=spec["n_envs"], seed=seed)
    if spec["normalize"]:
        venv = VecNormalize(venv, gamma=hp["gamma"], clip_obs=10.0, clip_reward=10.0, epsilon=1e-8)
    model = SB3PPO(
        "MlpPolicy", venv, seed=seed, device="cpu", verbose=0,
        learning_rate=lambda progress_remaining: progress_remaining * lr,
        clip_range_vf=hp["clip_range"], normalize_advantage=True,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh,
                       "ortho_init": True, "log_std_init": 0.0},
        **hp,
    )
    wall, cpu = _timed(lambda: model.learn(steps))
    train_return = float(np.mean([e["r"] for e in model.ep_info_buffer])) if model.ep_info_buffer else None

    def act(obs: np.ndarray) -> np.ndarray:
        o = venv.normalize_obs(obs[None]) if spec["normalize"] else obs[None]
        return model.predict(o, deterministic=True)[0][0]

    return {"steps": int(model.num_timesteps), "wall_s": wall, "cpu_s": cpu,
            "train_return": train_return, "eval_return": _evaluate(task, act)}


def run_ours(task: str, spec: dict[str, Any], steps: int, seed: int) -> dict[str, Any]:
    """Train robo_reward's PPO; return timings and returns."""
    env = gym.make_vec(task, num_envs=spec["n_envs"], vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    cfg = {**spec["hp"], "anneal_lr": True, "clip_range_vf": spec["hp"]["clip_range"], "normalize_advantage": True,
           "norm_obs": spec["normalize"], "norm_reward": spec["normalize"], "clip_obs": 10.0, "clip_reward": 10.0,
           "net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation": "tanh", "ortho_init": True,
           "log_std_init": 0.0, "adam_eps": 1e-5, "torch_threads": 1}
    agent = PPO(env, cfg, seed=seed, device="cpu")
    wall, cpu = _timed(lambda: agent.learn(steps, progress_bar=False))
    train_return = float(np.mean(agent._ep_returns)) if agent._ep_returns else None
    return {"steps": int(agent.num_timesteps), "wall_s": wall, "cpu_s": cpu, "train_return": train_return,
            "eval_return": _evaluate(task, lambda o: agent.predict(o, deterministic=True)[0])}


def env_only_rates(task: str, n_envs: int, vector_steps: int = 1000) -> dict[str, float]:
    """CPU-time steps/s of each library's vector env stepping random actions (the ceiling for either agent)."""
    from stable_baselines3.common.env_util import make_vec_env

    rng = np.random.default_rng(0)
    single = gym.make(task)
    acts = np.stack([np.stack([single.action_space.sample() for _ in range(n_envs)]) for _ in range(vector_steps)])
    del rng
    sb3_env = make_vec_env(task, n_envs=n_envs, seed=0)
    sb3_env.reset()
    gym_env = gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync",
                           vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    gym_env.reset(seed=0)

    def sb3() -> None:
        for a in acts:
            sb3_env.step(a)

    def gymn() -> None:
        for a in acts:
            gym_env.step(a)

    total = vector_steps * n_envs
    return {"sb3_dummyvecenv": total / _timed(sb3)[1], "gymnasium_syncvectorenv": total / _timed(gymn)[1]}


def _fmt(x: float | None, nd: int = 0) -> str:
    return "–" if x is None else f"{x:,.{nd}f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``<out>.json`` and ``<out>.md``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cartpole-steps", type=int, default=40_000)
    p.add_argument("--cheetah-steps", type=int, default=40_960)
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--out", default="benchmarks/results/ppo_vs_sb3")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = " ".join(["python benchmarks/ppo_vs_sb3.py", *(argv if argv is not None else sys.argv[1:])])
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    steps_for = {"CartPole-v1": args.cartpole_steps, "HalfCheetah-v5": args.cheetah_steps}
    results: dict[str, Any] = {}
    for task in args.tasks:
        spec = TASKS[task]
        steps = steps_for[task]
        runs: dict[str, list[dict[str, Any]]] = {"sb3": [], "ours": []}
        for seed in range(args.seeds):
            order = [("sb3", run_sb3), ("ours", run_ours)]
            if seed % 2:
                order.reverse()
            for name, fn in order:
                r = fn(task, spec, steps, seed)
                r["seed"] = seed
                r["wall_steps_per_s"] = r["steps"] / r["wall_s"]
                r["cpu_steps_per_s"] = r["steps"] / r["cpu_s"]
                runs[name].append(r)
                print(f"{task} seed {seed} {name:4s}: {r['cpu_steps_per_s']:8.0f} steps/s (CPU time), "
                      f"{r['wall_steps_per_s']:8.0f} steps/s (wall), train return {_fmt(r['train_return'], 1)}, "
                      f"eval return {_fmt(r['eval_return'], 1)}", flush=True)
        cpu_ratio = [o["cpu_steps_per_s"] / s["cpu_steps_per_s"] for o, s in zip(runs["ours"], runs["sb3"])]
        wall_ratio = [o["wall_steps_per_s"] / s["wall_steps_per_s"] for o, s in zip(runs["ours"], runs["sb3"])]

        def agg(name: str, key: str, runs: dict[str, list[dict[str, Any]]] = runs) -> dict[str, float | None]:
            vals = [r[key] for r in runs[name] if r[key] is not None]
            if not vals:
                return {"mean": None, "std": None}
            return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}

        results[task] = {
            "n_envs": spec["n_envs"],
            "steps_per_run": steps,
            "hyperparameters": spec["hp"],
            "normalize_obs_and_reward": spec["normalize"],
            "env_only_cpu_steps_per_s": env_only_rates(task, spec["n_envs"]),
            "runs": runs,
            "median_speedup_cpu_time": float(statistics.median(cpu_ratio)),
            "median_speedup_wall": float(statistics.median(wall_ratio)),
            "speedups_cpu_time": cpu_ratio,
            "speedups_wall": wall_ratio,
            "summary": {
                name: {"cpu_steps_per_s": agg(name, "cpu_steps_per_s"), "wall_steps_per_s": agg(name, "wall_steps_per_s"),
                       "train_return": agg(name, "train_return"), "eval_return": agg(name, "eval_return")}
                for name in ("sb3", "ours")
            },
        }
    import stable_baselines3

    report = {
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": 1,
                    "load_average_start": load_start, "load_average_end": os.getloadavg()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
                     "stable_baselines3": stable_baselines3.__version__, "numpy": np.__version__},
        "seeds": args.seeds,
        "total_wall_s": time.perf_counter() - t_start,
        "tasks": results,
    }
    write_result_files(args.out, report, render_markdown(report), indent=2)
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """The results as a markdown page."""
    m = report["machine"]
    lines = [
        "# Built-in PPO vs Stable-Baselines3 PPO (CPU)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {m['cpu_count']} CPU cores, torch threads {m['torch_threads']}; "
        f"load average at start {m['load_average_start'][0]:.1f}, at end {m['load_average_end'][0]:.1f}; "
        f"total {report['total_wall_s']:.0f} s.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
    ]
    if max(m["load_average_start"][0], m["load_average_end"][0]) > m["cpu_count"]:
        lines += [
            f"**The machine was shared**: the load average exceeded the {m['cpu_count']} cores (other jobs were "
            "running), so wall-clock rates are depressed and noisy; compare the CPU-time columns.",
            "",
        ]
    lines += [
        "Same hyperparameters, network (64-64 tanh actor and critic), number of envs, LR annealing, value "
        "clipping and normalisation on both sides; runs alternate per seed. **Steps/s by CPU time** is the "
        "process's own CPU seconds (the fair figure on a shared machine); wall-clock figures also depend on "
        "how much of a core each run got. Returns: mean undiscounted env return of the last 100 training "
        f"episodes, and of {EVAL_EPISODES} deterministic evaluation episodes; mean ± std over seeds. The step "
        "budgets keep the whole comparison to a few minutes: far too short for HalfCheetah to converge (its "
        "returns here only show that neither agent is broken), long enough for CartPole to get well along.",
        "",
        "| task | envs | steps/run | agent | steps/s (CPU time) | steps/s (wall) | train return | eval return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, r in report["tasks"].items():
        for name in ("sb3", "ours"):
            s = r["summary"][name]
            label = "SB3 PPO" if name == "sb3" else "robo_reward PPO"

            def ms(d: dict[str, Any], nd: int) -> str:
                return "–" if d["mean"] is None else f"{d['mean']:,.{nd}f} ± {d['std']:,.{nd}f}"

            lines.append(
                f"| {task} | {r['n_envs']} | {r['steps_per_run']:,} | {label} | {ms(s['cpu_steps_per_s'], 0)} | "
                f"{ms(s['wall_steps_per_s'], 0)} | {ms(s['train_return'], 1)} | {ms(s['eval_return'], 1)} |"
            )
    lines += ["", "| task | speed-up, CPU time (median of seeds) | speed-up, wall (median) | "
              "env alone, SB3 DummyVecEnv (steps/s CPU) | env alone, Gymnasium SyncVectorEnv |", "|---|---|---|---|---|"]
    for task, r in report["tasks"].items():
        e = r["env_only_cpu_steps_per_s"]
        lines.append(
            f"| {task} | **{r['median_speedup_cpu_time']:.2f}×** ({', '.join(f'{x:.2f}' for x in r['speedups_cpu_time'])}) | "
            f"{r['median_speedup_wall']:.2f}× | {e['sb3_dummyvecenv']:,.0f} | {e['gymnasium_syncvectorenv']:,.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

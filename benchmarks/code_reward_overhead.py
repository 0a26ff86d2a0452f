"""Per-step cost of LLM-style reward code in the sandbox against the same function called directly.

A vector env of 8 ``Reacher-v5`` (sync) is wrapped three ways with the same reward
function (a typical generated reward: distance, control cost, a success bonus with
``np.where``), and stepped with the same actions:

* ``direct``: the function executed natively (plain ``exec``, real numpy) inside the
  ``python`` plugin — the baseline;
* ``sandbox``: the ``code`` plugin, default ``isolation="process"`` (validated code in a
  limited worker process, one pipe round trip per step);
* ``inprocess``: the ``code`` plugin with ``isolation="none"`` (validation, restricted
  namespace and output checks, no process), to separate the checks' cost from the IPC's.

Runs alternate (ABC ABC ...) over several rounds and the median of each is reported, so
drift in machine load favours none. Reported per step: wall-clock microseconds (what a
trainer waits for) and CPU microseconds of the trainer *plus the worker* (robust to
other load on a shared machine, but blind to scheduling delays), and the ratios against
``direct``. A second, reward-only measurement times ``plugin(batch)`` on one fixed batch
of 8 rows, without the env.

Usage::

    python benchmarks/code_reward_overhead.py [--steps 2000] [--rounds 7] [--out benchmarks/results/code_reward_overhead.json]
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
from robo_reward.core.types import RewardOutput, TransitionBatch
from robo_reward.rewards.builtin import PythonReward
from robo_reward.rewards.code.plugin import CodeReward

REWARD = '''\
import numpy as np

def compute_reward(obs, action, next_obs, ctrl_weight=0.1, success_radius=0.05):
    """Reacher-v5: obs[8:10] is fingertip - target (m)."""
    dist = np.linalg.norm(next_obs[:, 8:10], axis=1)
    prev = np.linalg.norm(obs[:, 8:10], axis=1)
    control = np.square(action).sum(axis=1)
    return {
        "distance": -dist,
        "progress": 5.0 * (prev - dist),
        "control": -ctrl_weight * control,
        "success": np.where(dist < success_radius, 1.0, 0.0),
    }
'''


def _direct_plugin() -> PythonReward:
    g: dict = {"np": np}
    exec(compile(REWARD, "<direct>", "exec"), g)
    fn = g["compute_reward"]

    def reward(batch: TransitionBatch) -> RewardOutput:
        terms = fn(np.asarray(batch.obs, np.float64), np.asarray(batch.action, np.float64),
                   np.asarray(batch.next_obs, np.float64))
        total = None
        for v in terms.values():
            total = v if total is None else total + v
        return RewardOutput(total.astype(np.float32), {k: v.astype(np.float32) for k, v in terms.items()})

    return PythonReward(reward)


def _worker_cpu(plugin) -> float:
    """CPU seconds used so far by a sandbox worker (Linux /proc), 0 without one."""
    sb = getattr(plugin, "sandbox", None)
    proc = getattr(sb, "_proc", None)
    if proc is None:
        return 0.0
    try:
        with open(f"/proc/{proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _time_vector(env: gym.vector.VectorEnv, actions: np.ndarray) -> tuple[float, float]:
    """Wall and CPU (trainer + worker) seconds per step."""
    env.reset(seed=0)
    plugin = getattr(env, "plugin", None)
    step = env.step
    c0, w0, t0 = time.process_time(), _worker_cpu(plugin), time.perf_counter()
    for a in actions:
        step(a)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + _worker_cpu(plugin) - w0
    return wall / len(actions), cpu / len(actions)


def _time_reward(plugin, batch: TransitionBatch, calls: int) -> float:
    plugin(batch)
    t0 = time.perf_counter()
    for _ in range(calls):
        plugin(batch)
    return (time.perf_counter() - t0) / calls


def run(steps: int, rounds: int, n_envs: int, task: str, reward_calls: int) -> dict:
    """Measure everything and return the results as a dict."""
    plugins = {
        "direct": _direct_plugin(),
        "sandbox": CodeReward(code=REWARD),
        "inprocess": CodeReward(code=REWARD, isolation="none"),
    }
    envs = {k: rr.VectorRewardWrapper(gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync"), p)
            for k, p in plugins.items()}
    envs["raw"] = gym.make_vec(task, num_envs=n_envs, vectorization_mode="sync")
    rng = np.random.default_rng(0)
    act_shape = envs["raw"].single_action_space.shape
    actions = rng.uniform(-1, 1, size=(steps, n_envs, *act_shape)).astype(np.float32)

    # the three rewards agree (and warm up: first steps pay for caches)
    for e in envs.values():
        e.reset(seed=0)
    for a in actions[:60]:
        rs = {k: e.step(a)[1] for k, e in envs.items() if k != "raw"}
        assert np.array_equal(rs["direct"], rs["sandbox"]) and np.array_equal(rs["direct"], rs["inprocess"])

    wall: dict[str, list[float]] = {k: [] for k in envs}
    cpu: dict[str, list[float]] = {k: [] for k in envs}
    for _ in range(rounds):
        for k, e in envs.items():
            w, c = _time_vector(e, actions)
            wall[k].append(w * 1e6)
            cpu[k].append(c * 1e6)

    # reward only: one fixed batch of n_envs rows
    obs = rng.normal(size=(n_envs, 10))
    batch = TransitionBatch(terminated=np.zeros(n_envs, bool), truncated=np.zeros(n_envs, bool),
                            env_reward=np.zeros(n_envs, np.float32), env_ids=np.arange(n_envs),
                            obs=obs, action=rng.uniform(-1, 1, size=(n_envs, 2)), next_obs=obs + 0.01)
    reward_us: dict[str, list[float]] = {k: [] for k in plugins}
    for _ in range(rounds):
        for k, p in plugins.items():
            reward_us[k].append(_time_reward(p, batch, reward_calls) * 1e6)

    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med_reward = {k: statistics.median(v) for k, v in reward_us.items()}
    for p in plugins.values():
        if isinstance(p, CodeReward):
            p.close()
    return {
        "task": task,
        "n_envs": n_envs,
        "steps_per_round": steps,
        "rounds": rounds,
        "reward_calls_per_round": reward_calls,
        "median_us_per_vector_step": {
            "wall": {k: round(v, 1) for k, v in med_wall.items()},
            "cpu_trainer_plus_worker": {k: round(v, 1) for k, v in med_cpu.items()},
        },
        "ratio_to_direct_per_step": {
            "wall": {k: round(med_wall[k] / med_wall["direct"], 3) for k in ("sandbox", "inprocess")},
            "cpu": {k: round(med_cpu[k] / med_cpu["direct"], 3) for k in ("sandbox", "inprocess")},
        },
        "added_us_per_step_wall": {k: round(med_wall[k] - med_wall["direct"], 1) for k in ("sandbox", "inprocess")},
        "median_us_per_reward_call": {k: round(v, 1) for k, v in med_reward.items()},
        "ratio_to_direct_per_reward_call": {
            k: round(med_reward[k] / med_reward["direct"], 2) for k in ("sandbox", "inprocess")},
        "all_rounds_wall_us": {k: [round(x, 1) for x in v] for k, v in wall.items()},
        "target": "sandbox per-step wall time <= 1.5x direct",
    }


def _markdown(r: dict) -> str:
    w = r["median_us_per_vector_step"]["wall"]
    c = r["median_us_per_vector_step"]["cpu_trainer_plus_worker"]
    rc = r["median_us_per_reward_call"]
    rows = [
        f"| {name} | {w[k]:.0f} | {w[k] / w['direct']:.2f}x | {c[k]:.0f} | {c[k] / c['direct']:.2f}x | "
        f"{rc[k]:.0f} | {rc[k] / rc['direct']:.1f}x |"
        for k, name in (("direct", "direct call (python plugin)"), ("sandbox", "sandbox, worker process (default)"),
                        ("inprocess", "code plugin, isolation=none"))
    ]
    return "\n".join([
        f"# Reward code in the sandbox vs the same function called directly ({r['task']}, {r['n_envs']} envs)",
        "",
        f"Command: `{r['command']}` on {r['machine']['platform']} ({r['machine']['cpus']} CPUs, load average "
        f"{r['machine']['load_before']} before, {r['machine']['load_after']} after; shared machine), {r['date']}.",
        "",
        f"Medians of {r['rounds']} interleaved rounds of {r['steps_per_round']} vector steps; raw env (no wrapper): "
        f"{w['raw']:.0f} us wall per vector step.",
        "",
        "| reward | wall us/step | vs direct | CPU us/step (trainer + worker) | vs direct | reward call alone, us | vs direct |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Target: sandbox per-step wall time at most 1.5x direct.",
        "",
    ])


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--task", default="Reacher-v5")
    p.add_argument("--reward-calls", type=int, default=3000)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "code_reward_overhead.json")
    args = p.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.time()
    result = run(args.steps, args.rounds, args.n_envs, args.task, args.reward_calls)
    result["command"] = "python " + " ".join(sys.argv)
    result["machine"] = {
        "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
        "cpus": os.cpu_count(), "device": "cpu", "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    result["seconds"] = round(time.time() - t0, 1)
    result["date"] = time.strftime("%Y-%m-%d")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()

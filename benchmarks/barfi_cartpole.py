"""BARFI's central claim at CPU scale: CartPole with a helpful and with a harmful auxiliary reward.

Gupta et al. 2023 ("Behavior Alignment via Reward Function Optimization", NeurIPS) argue
that adding a designer's heuristic reward to the primary reward naively helps when the
heuristic is good and can wreck learning when it is not; that potential-based shaping
is no dependable fix; and that BARFI, which *learns* how to blend the heuristic with the
primary reward (bilevel: the policy learns from the blend, the blend is moved by the
implicit gradient of the primary return), stays robust to a harmful heuristic while
keeping most of the benefit of a helpful one.

Setup (one of the paper's domains, at a scale that runs in minutes on two CPU cores):

* ``CartPole-v1``, 8 sub-envs (Gymnasium ``SyncVectorEnv``, ``SAME_STEP`` autoreset).
  Primary reward: the env's own +1 per step (return = episode length, at most 500).
* Auxiliary reward: agreement with a PID controller on the pole angle,
  ``r_aux(s, a) = c · 1[a = a_PID(s)]``, with ``a_PID(s) = 1`` (push right) when
  ``Kp·θ + Ki·∫θ dt + Kd·θ̇ > 0`` (Kp=10, Ki=1, Kd=1; the controller alone balances the
  pole for all 500 steps). ``c = +1`` is the helpful heuristic, ``c = −1`` the harmful one
  (it pays for *disagreeing* with a controller that works). A reward plugin
  (:class:`PIDAgreement`, per-episode integral state) computes it through
  :class:`robo_reward.VectorRewardWrapper`, which keeps the primary reward in
  ``info["env_reward"]``.
* The same inner learner for every method: :class:`robo_reward.agents.barfi.BARFI`'s
  REINFORCE with a batch-mean baseline (64-64 tanh policy, Adam 1e-3, 64-step rollouts),
  learning from

  - ``primary only``: ``r_p`` (φ fixed at (0, 1, 0)) — the reference;
  - ``naive sum``: ``r_p + r_aux`` (φ fixed at (0, 1, 1));
  - ``PBRS``: ``r_p + F`` with potential-based shaping of the heuristic. The heuristic
    depends on the action, so this is Wiewiora et al.'s (2003) look-ahead form with
    ``Φ(s, a) = r_aux(s, a)``: ``F_t = γ·Φ(s_{t+1}, a_{t+1}) − Φ(s_t, a_t)`` (``Φ = 0``
    after the episode ends or past the rollout);
  - ``BARFI``: ``r_φ = φ₁(s) + φ₂(s)·r_p + φ₃(s)·r_aux`` and ``γ_φ``, starting from the
    naive sum, with one implicit-gradient outer step per rollout (Neumann series, 3
    terms; and the first-order variant, 0 terms).

Reported per (heuristic, method), over ``--seeds`` seeds: the primary return (episode
length) averaged over the last 100 training episodes ("final") and over all training
episodes ("mean over training", an area-under-the-curve measure of learning speed), and
for BARFI the learned heuristic weight φ₃ (averaged over the last rollout's states) and
the learned discount.

Usage::

    python benchmarks/barfi_cartpole.py [--steps 100000] [--seeds 4] [--out benchmarks/results/barfi_cartpole]

Writes ``<out>.json`` (every run, with learning curves) and ``<out>.md`` (the table and
the paper's claim).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

import robo_reward as rr
from robo_reward.bench.files import write_result_files
from robo_reward.agents.barfi import BARFI
from robo_reward.core.types import RewardOutput, RewardPlugin, TransitionBatch

PAPER = ("Gupta, Chandak, Jordan, Thomas, da Silva, \"Behavior Alignment via Reward Function Optimization\", "
         "NeurIPS 2023 (arXiv:2310.19007)")
PAPER_CLAIM = (
    "\"Naively modifying the reward structure to offer denser and more frequent feedback can lead to unintended "
    "outcomes [...] Although potential-based reward shaping is often suggested as a remedy, we systematically "
    "investigate settings where deploying it often significantly impairs performance. [...] Our approach "
    "automatically determines the most effective way to blend these types of feedback, thereby enhancing "
    "robustness against heuristic reward misspecification.\" (abstract)"
)
NEVER = 10**9  # outer_every for the fixed-blend baselines: no outer step ever

BASE_HP: dict[str, Any] = {
    "n_steps": 64, "policy_lr": 1e-3, "reward_lr": 2e-2, "inner_epochs": 1, "gamma": 0.99, "gamma_init": 0.99,
    "neumann_alpha": 0.1, "max_grad_norm": 1.0, "net_arch": [64, 64], "reward_arch": [32], "primary": "env_reward",
}
METHODS: dict[str, dict[str, Any]] = {
    "primary only": {"init_weights": [0.0, 1.0, 0.0], "outer_every": NEVER, "learn_gamma": False},
    "naive sum": {"init_weights": [0.0, 1.0, 1.0], "outer_every": NEVER, "learn_gamma": False},
    "PBRS": {"init_weights": [0.0, 1.0, 1.0], "outer_every": NEVER, "learn_gamma": False, "_shaping": True},
    "BARFI": {"init_weights": [0.0, 1.0, 1.0], "neumann_iterations": 3},
    "BARFI (first-order)": {"init_weights": [0.0, 1.0, 1.0], "neumann_iterations": 0},
}
HEURISTICS = {"helpful (+1)": 1.0, "harmful (−1)": -1.0}
EVAL_EPISODES = 10
EVAL_SEED = 10_000


class PIDAgreement(RewardPlugin):
    """``c · 1[a = a_PID(s)]`` on CartPole: agreement with a PID controller on the pole angle.

    ``a_PID(s) = 1`` (push right) when ``kp·θ + ki·∫θ dt + kd·θ̇ > 0``. The integral is
    per-episode state, indexed by ``batch.env_ids`` and cleared by :meth:`reset`.
    """

    requires = frozenset({"obs", "action"})
    name = "pid-agreement"

    def __init__(self, bonus: float = 1.0, kp: float = 10.0, ki: float = 1.0, kd: float = 1.0, dt: float = 0.02,
                 num_envs: int = 1):
        self.bonus, self.kp, self.ki, self.kd, self.dt = float(bonus), kp, ki, kd, dt
        self.integral = np.zeros(num_envs)

    def reset(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape[0] != self.integral.shape[0]:
            self.integral = np.zeros(mask.shape[0])
        self.integral[mask] = 0.0

    def pid_action(self, obs: np.ndarray, integral: np.ndarray) -> np.ndarray:
        """The controller's action (0 or 1) for observations ``[n, 4]`` and angle integrals ``[n]``."""
        u = self.kp * obs[:, 2] + self.ki * integral + self.kd * obs[:, 3]
        return (u > 0).astype(np.int64)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        ids = batch.env_ids
        self.integral[ids] += batch.obs[:, 2] * self.dt
        agree = (np.asarray(batch.action).reshape(-1) == self.pid_action(batch.obs, self.integral[ids]))
        r = (self.bonus * agree).astype(np.float32)
        return RewardOutput(r, {"pid": r})


class ShapedBARFI(BARFI):
    """The inner learner on ``r_p + F`` with look-ahead potential-based shaping of the auxiliary column.

    ``F_t = γ·Φ(s_{t+1}, a_{t+1})·(1 − done_t) − Φ(s_t, a_t)`` with ``Φ = r_aux`` (which is a
    function of ``(s_t, a_t)`` here); ``Φ = 0`` past the rollout's last step.
    """

    def _collect(self) -> dict[str, torch.Tensor]:
        batch = super()._collect()
        phi = batch["r_aux"]  # [T, N, K]
        nxt = torch.zeros_like(phi)
        nxt[:-1] = phi[1:]
        not_done = (~batch["dones"]).to(phi.dtype).unsqueeze(-1)
        batch["r_aux"] = self.config.gamma * nxt * not_done - phi
        return batch


def pid_controller_return(episodes: int = 10) -> float:
    """Mean return of the PID controller alone (a check that the heuristic is a good one)."""
    env = gym.make("CartPole-v1")
    plug = PIDAgreement()
    total = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=50_000 + ep)
        integral, n, done = 0.0, 0, False
        while not done:
            integral += obs[2] * plug.dt
            a = int(plug.pid_action(obs[None], np.array([integral]))[0])
            obs, _, term, trunc, _ = env.step(a)
            n += 1
            done = term or trunc
        total.append(n)
    env.close()
    return float(np.mean(total))


def evaluate(agent: BARFI, episodes: int = EVAL_EPISODES) -> float:
    """Mean primary return of ``episodes`` deterministic (greedy) episodes on plain CartPole-v1."""
    env = gym.make("CartPole-v1")
    total = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + ep)
        n, done = 0, False
        while not done:
            obs, _, term, trunc, _ = env.step(int(agent.predict(obs, deterministic=True)[0]))
            n += 1
            done = term or trunc
        total.append(n)
    env.close()
    return float(np.mean(total))


def make_env(bonus: float, n_envs: int) -> Any:
    env = gym.make_vec("CartPole-v1", num_envs=n_envs, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    return rr.VectorRewardWrapper(env, PIDAgreement(bonus, num_envs=n_envs))


def run_one(method: str, bonus: float, seed: int, steps: int, n_envs: int) -> dict[str, Any]:
    spec = dict(METHODS[method])
    shaping = spec.pop("_shaping", False)
    hp = {**BASE_HP, **spec}
    curve: list[tuple[int, float]] = []
    returns: list[float] = []
    phi_log: list[list[float]] = []

    def hook(m: dict[str, Any]) -> None:
        for ep in m["episodes"]:
            returns.append(ep["primary_return"])
        if m["primary_return_mean"] is not None:
            curve.append((m["timesteps"], round(m["primary_return_mean"], 2)))
        phi_log.append([round(v, 4) for v in m["phi_mean"]] + [round(m["gamma_phi"], 5)])

    cls = ShapedBARFI if shaping else BARFI
    env = make_env(bonus, n_envs)
    agent = cls(env, hp, seed=seed, device="cpu", metrics_hook=hook)
    w0, c0 = time.perf_counter(), time.process_time()
    agent.learn(steps, progress_bar=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    env.close()
    last = returns[-100:]
    return {
        "method": method, "bonus": bonus, "seed": seed, "steps": agent.num_timesteps, "episodes": len(returns),
        "final_return": float(np.mean(last)) if last else None,
        "mean_return": float(np.mean(returns)) if returns else None,
        "eval_return": evaluate(agent),
        "phi_final": phi_log[-1][:-1], "gamma_phi": phi_log[-1][-1],
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "curve": curve[:: max(1, len(curve) // 40)],
    }


def _ms(values: list[float], digits: int = 0) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def render(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [
        "# BARFI on CartPole with a helpful and a harmful heuristic (Gupta et al. 2023)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['machine']}; total {report['total_s']:.0f} s wall, "
        f"{sum(r['cpu_s'] for r in report['runs'] if not r.get('shared')):.0f} s CPU in training.  ",
        f"Versions: {report['versions']}",
        "",
        f"**Shared machine**: {report['cpus']} CPU cores shared with other engineers' jobs, torch threads 1; load "
        f"average {report['load_start']:.1f} at the start and {report['load_end']:.1f} at the end. The budget "
        f"(≈8 min on 2 cores) sets the scale: {a['steps']:,} env steps per run, {a['seeds']} seeds, so the numbers "
        "show the direction of each effect early in learning, not converged performance.",
        "",
        f"CartPole-v1, {a['n_envs']} envs; primary reward = the env's +1 per step (return = episode length, max 500). "
        "Heuristic: `c·1[a = a_PID(s)]`, agreement with a PID controller on the pole angle "
        f"(Kp=10, Ki=1, Kd=1; the controller alone scores {report['pid_return']:.0f}). "
        "Every method uses BARFI's inner learner (REINFORCE, batch-mean baseline, 64-64 tanh, Adam 1e-3, "
        "64-step rollouts); only the reward it learns from differs. PBRS: look-ahead shaping "
        "`γΦ(s',a') − Φ(s,a)` with `Φ = r_aux`. BARFI starts from the naive sum and takes one outer step per "
        "rollout (Neumann series with 3 terms, or first-order; outer Adam step 0.02). Primary return (= episode "
        "length): mean ± std over seeds of the last 100 training episodes (final), of all training episodes (mean "
        "over training: learning speed), and of 10 greedy episodes of the final policy. `primary only` ignores "
        "the heuristic, so one run per seed serves both heuristics.",
        "",
        "| heuristic | method | primary return, final | primary return, mean over training | greedy policy, 10 episodes | learned φ₃ (heuristic weight) | learned γ_φ | CPU s/run |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for heur in report["heuristics"]:
        for method in report["methods"]:
            rows = [r for r in report["runs"] if r["heuristic"] == heur and r["method"] == method]
            fin = [r["final_return"] for r in rows if r["final_return"] is not None]
            mean = [r["mean_return"] for r in rows if r["mean_return"] is not None]
            greedy = [r["eval_return"] for r in rows]
            learned = method.startswith("BARFI")
            phi3 = _ms([r["phi_final"][2] for r in rows], 2) if learned else "fixed " + (
                "0" if method == "primary only" else "1")
            gam = _ms([r["gamma_phi"] for r in rows], 3) if learned else "0.99 (fixed)"
            cpu = statistics.mean(r["cpu_s"] for r in rows)
            lines.append(f"| {heur} | {method} | {_ms(fin)} | {_ms(mean)} | {_ms(greedy)} | {phi3} | {gam} | {cpu:.0f} |")
    lines += ["", "## The paper's claim", "", f"{PAPER}: {PAPER_CLAIM}", "", report["verdict"], ""]
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> str:
    def final(heur: str, method: str) -> float:
        vals = [r["final_return"] for r in report["runs"]
                if r["heuristic"] == heur and r["method"] == method and r["final_return"] is not None]
        return float(np.mean(vals)) if vals else float("nan")

    def phi3(heur: str, method: str) -> float:
        return float(np.mean([r["phi_final"][2] for r in report["runs"]
                              if r["heuristic"] == heur and r["method"] == method]))

    h, b = list(report["heuristics"])
    out = [
        "What this run shows, on the primary return of the last 100 training episodes (means over seeds; "
        f"the table's ± are the spread over seeds, which is large at this scale: with {report['args']['seeds']} "
        "seeds, differences smaller than it are not resolved):",
        "",
        f"* helpful heuristic: naive sum {final(h, 'naive sum'):.0f}, PBRS {final(h, 'PBRS'):.0f}, "
        f"BARFI {final(h, 'BARFI'):.0f} (first-order {final(h, 'BARFI (first-order)'):.0f}), against "
        f"{final(h, 'primary only'):.0f} without the heuristic;",
        f"* harmful heuristic: naive sum {final(b, 'naive sum'):.0f}, PBRS {final(b, 'PBRS'):.0f}, "
        f"BARFI {final(b, 'BARFI'):.0f} (first-order {final(b, 'BARFI (first-order)'):.0f}), against "
        f"{final(b, 'primary only'):.0f} without the heuristic;",
        f"* BARFI's learned heuristic weight φ₃ ends at {phi3(h, 'BARFI'):+.1f} with the helpful heuristic and "
        f"{phi3(b, 'BARFI'):+.1f} with the harmful one"
        + (": it keeps the first and *flips the sign* of the second, turning a bonus for disagreeing with the "
           "controller into one for agreeing." if phi3(h, "BARFI") > 0 > phi3(b, "BARFI") else ".")
        + " Nothing bounds the weights' scale, and CartPole's primary reward is a constant +1, so φ₁ and φ₂ play "
        "the same role (an alive bonus) and move together.",
        "",
        "How PBRS acts here: for a policy-gradient learner the "
        "shaped discounted return-to-go telescopes to `G_t − Φ(s_t, a_t)`. With a state potential `−Φ(s_t)` "
        "would be a baseline and change nothing in expectation (the paper's point that shaping need not help); "
        "with an action-dependent potential it is an immediate reward of `−r_aux(s_t, a_t)`: look-ahead shaping "
        "(without Wiewiora's correction of the policy, which a policy-gradient learner has no place for) turns a "
        "helpful heuristic into a penalty and a harmful one into a bonus.",
        "",
        "The paper's own CartPole numbers are not quoted: the stored copy of the paper reachable when this was "
        "written held only its abstract, so the exact constants of its PID heuristic (here +1 / −1 per agreeing "
        "step, as issue 7 states them), its inner learner and its budgets could not be checked. This is an "
        "independent, much smaller re-implementation of the comparison, not the paper's code.",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--out", default="benchmarks/results/barfi_cartpole")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--from-json", default=None, help="re-render <out>.md from a saved report JSON; no training")
    args = p.parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report["verdict"] = verdict(report)
        Path(args.out).with_suffix(".md").write_text(render(report))
        return 0
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    runs = []
    for seed in range(args.seeds):
        for heur, bonus in HEURISTICS.items():
            for method in args.methods:
                if method == "primary only" and heur != next(iter(HEURISTICS)):
                    # the heuristic's weight is 0: the same run serves both rows
                    shared = next(r for r in runs if r["seed"] == seed and r["method"] == method)
                    runs.append({**shared, "heuristic": heur, "bonus": bonus, "shared": True})
                    continue
                r = run_one(method, bonus, seed, args.steps, args.n_envs)
                r["heuristic"] = heur
                runs.append(r)
                if not args.quiet:
                    print(f"[{time.perf_counter() - t0:6.0f}s] seed {seed} {heur:13s} {method:20s} final "
                          f"{r['final_return']:.0f} mean {r['mean_return']:.0f} eval {r['eval_return']:.0f} "
                          f"phi {r['phi_final']} ({r['cpu_s']:.0f} s CPU, {r['wall_s']:.0f} s wall)", flush=True)
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": platform.platform(), "cpus": os.cpu_count(),
        "load_start": load0, "load_end": os.getloadavg()[0],
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}, "
                    f"numpy {np.__version__}",
        "args": vars(args), "heuristics": list(HEURISTICS), "methods": args.methods,
        "pid_return": pid_controller_return(), "runs": runs, "paper": PAPER, "paper_claim": PAPER_CLAIM,
    }
    report["total_s"] = time.perf_counter() - t0
    report["verdict"] = verdict(report)
    write_result_files(args.out, report, render(report), echo=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())

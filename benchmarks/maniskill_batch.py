"""Steps/s of ManiSkill's batched env behind robo_reward's numpy facade, against the raw env.

Four ways of stepping PickCube-v1 (state observations, the ``maniskill-pick-cube-v1``
card's controller), run side by side in one process:

* ``raw`` — ManiSkill's own batched env (``gymnasium.make(..., num_envs=n)``), torch
  tensors in and out, resetting finished rows with ManiSkill's partial reset: the baseline;
* ``facade`` — :class:`~robo_reward.envs.maniskill_backend.ManiSkillBatchEnv`: numpy in
  and out, Gymnasium's vector ``info``, ``SAME_STEP`` autoreset, ``is_success``;
* ``wrapped`` — the facade under :class:`~robo_reward.VectorRewardWrapper` with the
  ``env`` plugin (``make_vec_env(card, n, reward="env", vectorization="simulator")``);
* ``cpu card`` (``n = 1`` only) — the card's CPU env from ``make_env`` (ManiSkill's
  ``CPUGymWrapper``), what ``make_vec_env`` uses per sub-env by default.

Sides alternate in short blocks (ABBA), each timed in CPU time of this process, and each
ratio is the median over pairs of adjacent blocks (as in ``wrapper_overhead.py``). On a
CPU ManiSkill batches one env only; on a CUDA GPU the script also runs ``--sizes``
(``physx_cuda``), where CPU time measures the host side only and wall time is reported too.

Usage::

    VK_ICD_FILENAMES=... python benchmarks/maniskill_batch.py [--block 50] [--pairs 20] [--sizes 64 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

from robo_reward.bench.files import write_result_files
from robo_reward.train.records import package_versions

CARD = "maniskill-pick-cube-v1"


def _raw_env(n: int, backend: str) -> Any:
    import gymnasium as gym

    import mani_skill.envs  # noqa: F401  (registers the envs)
    from robo_reward.envs import load_card

    card = load_card(CARD)
    return gym.make(card.env_id, num_envs=n, sim_backend=backend, max_episode_steps=card.max_episode_steps,
                    disable_env_checker=True, **{"obs_mode": "state", **dict(card.env_kwargs or {})})


def _raw_stepper(env: Any, actions: Any) -> Callable[[int], None]:
    import torch

    def run(k: int) -> None:
        for t in range(k):
            _, _, term, trunc, _ = env.step(actions[t % len(actions)])
            done = torch.as_tensor(term) | torch.as_tensor(trunc)
            if bool(done.any()):
                env.reset(options={"env_idx": torch.arange(done.numel(), device=done.device)[done.reshape(-1)]})
    return run


def _vec_stepper(env: Any, actions: np.ndarray) -> Callable[[int], None]:
    def run(k: int) -> None:
        for t in range(k):
            env.step(actions[t % len(actions)])
    return run


def _single_stepper(env: Any, actions: np.ndarray) -> Callable[[int], None]:
    def run(k: int) -> None:
        for t in range(k):
            _, _, term, trunc, _ = env.step(actions[t % len(actions)][0])
            if term or trunc:
                env.reset()
    return run


def _paired(base: Callable[[int], None], other: Callable[[int], None], block: int, pairs: int,
            n: int) -> dict[str, Any]:
    """ABBA blocks; steps per CPU-second (and per wall-second) of both sides, and the median ratio of pairs."""
    rates: dict[str, list[float]] = {"base_cpu": [], "other_cpu": [], "base_wall": [], "other_wall": []}

    def timed(fn: Callable[[int], None], side: str) -> None:
        c0, w0 = time.process_time(), time.perf_counter()
        fn(block)
        rates[f"{side}_cpu"].append(block * n / (time.process_time() - c0))
        rates[f"{side}_wall"].append(block * n / (time.perf_counter() - w0))

    base(block)
    other(block)  # warm-up
    for p in range(pairs):
        order = [(base, "base"), (other, "other")] if p % 2 == 0 else [(other, "other"), (base, "base")]
        for fn, side in order:
            timed(fn, side)
    ratio_cpu = statistics.median(o / b for o, b in zip(rates["other_cpu"], rates["base_cpu"]))
    ratio_wall = statistics.median(o / b for o, b in zip(rates["other_wall"], rates["base_wall"]))
    return {"base_steps_per_cpu_s": statistics.median(rates["base_cpu"]),
            "steps_per_cpu_s": statistics.median(rates["other_cpu"]),
            "base_steps_per_wall_s": statistics.median(rates["base_wall"]),
            "steps_per_wall_s": statistics.median(rates["other_wall"]),
            "ratio_cpu": ratio_cpu, "ratio_wall": ratio_wall,
            "overhead_us_per_step_cpu": 1e6 / n * (1 / statistics.median(rates["other_cpu"])
                                                   - 1 / statistics.median(rates["base_cpu"]))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every size this machine can run; return the results."""
    import torch

    from robo_reward.envs import make_env, make_vec_env
    from robo_reward.envs.maniskill_backend import ManiSkillBatchEnv

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    sizes = [(1, "physx_cpu")] + ([(n, "physx_cuda") for n in args.sizes] if cuda else [])
    rows = []
    rng = np.random.default_rng(0)
    for n, backend in sizes:
        print(f"n = {n} ({backend})", flush=True)
        acts_np = rng.uniform(-1, 1, size=(64, n, 4)).astype(np.float32)
        raw = _raw_env(n, backend)
        raw.reset(seed=0)
        acts_t = [torch.as_tensor(a, device=raw.unwrapped.device) for a in acts_np]
        base = _raw_stepper(raw, acts_t)
        facade = ManiSkillBatchEnv(CARD, n, sim_backend=backend, seed=0)
        facade.reset(seed=0)
        wrapped = make_vec_env(CARD, n, reward="env", vectorization="simulator", seed=0, sim_backend=backend)
        wrapped.reset(seed=0)
        sides = {"facade": _vec_stepper(facade, acts_np), "wrapped": _vec_stepper(wrapped, acts_np)}
        single = None
        if n == 1:
            single = make_env(CARD, seed=0)
            sides["cpu card"] = _single_stepper(single, acts_np)
        for name, fn in sides.items():
            res = _paired(base, fn, args.block, args.pairs, n)
            rows.append({"n": n, "backend": backend, "side": name, **res})
            print(f"  {name:<8s} {res['ratio_cpu']:.3f} of raw (CPU time), {res['overhead_us_per_step_cpu']:.0f} µs/step",
                  flush=True)
        for env in (raw, facade, wrapped, single):
            if env is not None:
                env.close()
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(0) if cuda else None},
        "versions": package_versions(("mani_skill", "sapien", "torch", "gymnasium", "numpy"), python=False),
        "settings": {"block": args.block, "pairs": args.pairs, "card": CARD},
        "rows": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    """The results as a markdown report."""
    m = res["machine"]
    lines = [
        "# ManiSkill's batched env behind robo_reward's facade, against the raw env",
        "",
        f"Command: `{res['command']}`. Machine: {m['platform']}, {m['cpus']} CPUs, GPU: {m['gpu'] or 'none'} "
        f"({'CPU figures' if not m['gpu'] else 'GPU run'}). Versions: "
        + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
        "",
        f"PickCube-v1 ({res['settings']['card']}), random actions; {res['settings']['pairs']} ABBA pairs of "
        f"{res['settings']['block']}-step blocks per row; rates are medians over blocks, ratios the median of "
        "per-pair ratios (other side ÷ raw), in CPU time of this process (on a GPU, wall time too).",
        "",
        "| sub-envs | backend | side | raw steps/CPU-s | side steps/CPU-s | ratio (CPU) | ratio (wall) | overhead µs/env-step (CPU) |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['n']} | {r['backend']} | {r['side']} | {r['base_steps_per_cpu_s']:.0f} | "
                     f"{r['steps_per_cpu_s']:.0f} | {r['ratio_cpu']:.3f} | {r['ratio_wall']:.3f} | "
                     f"{r['overhead_us_per_step_cpu']:.0f} |")
    lines += ["", "`facade`: ManiSkillBatchEnv; `wrapped`: the facade under VectorRewardWrapper with the `env` "
              "plugin; `cpu card`: `make_env` (ManiSkill's CPUGymWrapper), one env.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, write ``benchmarks/results/maniskill_batch.{json,md}``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--block", type=int, default=50, help="steps per timed block")
    ap.add_argument("--pairs", type=int, default=20, help="ABBA pairs of blocks per row")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 1024], help="sub-envs on a CUDA GPU")
    ap.add_argument("--out", default="benchmarks/results/maniskill_batch")
    args = ap.parse_args(argv)
    res = run(args)
    write_result_files(args.out, res, markdown(res), indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

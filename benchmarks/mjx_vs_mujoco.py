"""Steps/s of :class:`~robo_reward.envs.mjx_backend.MJXVectorEnv` against native MuJoCo, side by side.

For each number of sub-envs ``n``: Gymnasium's ``SyncVectorEnv`` of native
``HalfCheetah-v5`` envs (MuJoCo in C, one env after another on one CPU thread) against
``MJXVectorEnv("HalfCheetah-v5", n)`` (MuJoCo MJX, all sub-envs in one jitted XLA call
on jax's default device: the CPU here, a GPU where jax finds one). MJX is timed two
ways: ``step()``, which returns numpy host copies (what ``VectorRewardWrapper`` and
SB3 consume), and ``step_device()``, which keeps everything on the device (what a
device-resident reward path would use; steps are queued by jax's asynchronous dispatch
and each timed block ends with ``block_until_ready``).

Rates are env steps per second (``steps * n``), by wall clock and by this process's
CPU time (``time.process_time``, all threads; on a shared machine it is the fairer CPU
figure; on a GPU the wall clock is the one that counts). Native and MJX blocks
alternate, ``--repeats`` times each, and the median block rate is reported. The first
``reset()`` of each MJX size compiles the step (XLA); its time is reported apart and is
not in the rates.

Usage::

    python benchmarks/mjx_vs_mujoco.py [--num-envs 1 64 1024] [--seconds 4] [--repeats 3]
        [--native-max-envs 1024] [--out benchmarks/results/mjx_vs_mujoco.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from robo_reward.train.records import package_versions

TASK = "HalfCheetah-v5"


def _timed(step: Callable[[int], None], n_envs: int, seconds: float, min_steps: int, sync: Callable[[], None]) -> dict:
    """Call ``step(i)`` until ``seconds`` of wall time and ``min_steps`` calls have passed; return rates."""
    w0, c0 = time.perf_counter(), time.process_time()
    i = 0
    while True:
        step(i)
        i += 1
        if i >= min_steps and time.perf_counter() - w0 >= seconds:
            break
    sync()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"steps": i, "wall_steps_per_s": i * n_envs / wall, "cpu_steps_per_s": i * n_envs / max(cpu, 1e-9)}


def _median(blocks: list[dict], key: str) -> float:
    return round(statistics.median(b[key] for b in blocks), 1)


def run_size(n: int, seconds: float, repeats: int, native_max: int, seed: int = 0) -> dict:
    """Measure native and MJX at ``n`` sub-envs."""
    import jax

    from robo_reward.envs.mjx_backend import MJXVectorEnv

    rng = np.random.default_rng(seed)
    pool = rng.uniform(-1, 1, size=(8, n, 6)).astype(np.float32)

    w0 = time.perf_counter()
    mjx_env = MJXVectorEnv(TASK, n, seed=seed)
    build_s = time.perf_counter() - w0
    w1, c1 = time.perf_counter(), time.process_time()
    mjx_env.reset(seed=seed)  # compiles the step for this n (or reuses it)
    compile_wall, compile_cpu = time.perf_counter() - w1, time.process_time() - c1
    mjx_env.step(pool[0])
    jax_pool = [jax.device_put(a) for a in pool]

    native = None
    if n <= native_max:
        native = gym.make_vec(TASK, num_envs=n, vectorization_mode="sync")
        native.reset(seed=seed)
        native.step(pool[0])

    blocks: dict[str, list[dict]] = {"native": [], "mjx_host": [], "mjx_device": []}
    for r in range(repeats):
        order = ["native", "mjx_host", "mjx_device"]
        if r % 2:
            order.reverse()
        for what in order:
            if what == "native":
                if native is None:
                    continue
                blocks[what].append(_timed(lambda i: native.step(pool[i % 8]), n, seconds, 3, lambda: None))
            elif what == "mjx_host":
                blocks[what].append(_timed(lambda i: mjx_env.step(pool[i % 8]), n, seconds, 3, lambda: None))
            else:
                blocks[what].append(
                    _timed(
                        lambda i: mjx_env.step_device(jax_pool[i % 8]),
                        n,
                        seconds,
                        3,
                        lambda: jax.block_until_ready(mjx_env.device_state()),
                    )
                )
    out: dict = {
        "num_envs": n,
        "mjx_build_s": round(build_s, 2),
        "mjx_first_reset_compile_s": {"wall": round(compile_wall, 1), "cpu": round(compile_cpu, 1)},
        "blocks": blocks,
    }
    for what, bl in blocks.items():
        if bl:
            out[what] = {k: _median(bl, k) for k in ("wall_steps_per_s", "cpu_steps_per_s")}
    if native is not None:
        for clock in ("wall", "cpu"):
            k = f"{clock}_steps_per_s"
            out[f"native_over_mjx_host_{clock}"] = round(out["native"][k] / out["mjx_host"][k], 2)
            out[f"native_over_mjx_device_{clock}"] = round(out["native"][k] / out["mjx_device"][k], 2)
        native.close()
    mjx_env.close()
    return out


def _versions() -> dict[str, str]:
    return package_versions(("jax", "jaxlib", "mujoco", "mujoco-mjx", "gymnasium", "numpy"))


def _device() -> dict:
    import jax

    d = jax.devices()[0]
    label = "CPU" if d.platform == "cpu" else f"GPU ({d.device_kind})"
    return {"label": label, "platform": d.platform, "device_kind": d.device_kind, "cpu_cores": os.cpu_count()}


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def write_markdown(result: dict, path: Path) -> None:
    """Render the results as a Markdown table."""
    dev = result["device"]["label"]
    lines = [
        f"# MJX vs native MuJoCo: {TASK} steps/s ({dev})",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}; MJX device: {dev}; {result['device']['cpu_cores']} CPU cores; "
        f"load average at start {result['load_average_start']}, at end {result['load_average_end']}; "
        f"total {result['total_s']:.0f} s.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v) + ".",
        "",
        "Env steps per second (steps × sub-envs), median of "
        f"{result['repeats']} alternating blocks of ≥{result['seconds']} s each, by wall clock and by this "
        "process's CPU time (all threads). Native: Gymnasium `SyncVectorEnv` of `HalfCheetah-v5`. "
        "MJX `step()`: `MJXVectorEnv` returning numpy host copies; MJX `step_device()`: no host copies. "
        "`native ÷ MJX` is how many times faster native MuJoCo is than MJX `step()`. "
        "Compile: the first `reset()` of each size (XLA compilation of the batched step), not in the rates. "
        "A CPU-time rate below the wall rate means the process kept more than one core busy (XLA's thread "
        "pool); native MuJoCo here runs on one core, so the CPU-time ratio is the per-core comparison.",
        "",
    ]
    cores = result["device"]["cpu_cores"] or 1
    if min(result["load_average_start"][0], result["load_average_end"][0]) > cores:
        lines += [
            "**The machine was shared**: the load average exceeded the CPU cores, so wall-clock rates are "
            "depressed and noisy; the CPU-time columns are the fairer comparison.",
            "",
        ]
    lines += [
        "| sub-envs | native steps/s (wall / CPU) | MJX `step()` (wall / CPU) | MJX `step_device()` (wall / CPU) "
        "| native ÷ MJX (wall / CPU) | MJX compile (wall / CPU s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["sizes"]:
        nat = r.get("native")
        nat_s = f"{_fmt(nat['wall_steps_per_s'])} / {_fmt(nat['cpu_steps_per_s'])}" if nat else "not run"
        ratio = (
            f"{r['native_over_mjx_host_wall']}× / {r['native_over_mjx_host_cpu']}×" if nat else "—"
        )
        lines.append(
            f"| {r['num_envs']} | {nat_s} "
            f"| {_fmt(r['mjx_host']['wall_steps_per_s'])} / {_fmt(r['mjx_host']['cpu_steps_per_s'])} "
            f"| {_fmt(r['mjx_device']['wall_steps_per_s'])} / {_fmt(r['mjx_device']['cpu_steps_per_s'])} "
            f"| {ratio} "
            f"| {r['mjx_first_reset_compile_s']['wall']} / {r['mjx_first_reset_compile_s']['cpu']} |"
        )
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 64, 1024])
    p.add_argument("--seconds", type=float, default=4.0, help="minimum wall seconds per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks per side and size")
    p.add_argument("--native-max-envs", type=int, default=1024, help="skip native vector envs larger than this")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mjx_vs_mujoco.json")
    args = p.parse_args()

    t0 = time.perf_counter()
    load0 = [round(x, 2) for x in os.getloadavg()]
    sizes: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.num_envs:
        r = run_size(n, args.seconds, args.repeats, args.native_max_envs)
        sizes.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "blocks"}), flush=True)
        # written after every size, so a run stopped early keeps what it measured
        result = {
            "task": TASK,
            "command": "python " + " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "device": _device(),
            "versions": _versions(),
            "seconds": args.seconds,
            "repeats": args.repeats,
            "load_average_start": load0,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "total_s": round(time.perf_counter() - t0, 1),
            "sizes": sizes,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

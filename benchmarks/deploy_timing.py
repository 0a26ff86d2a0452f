"""Deploy timing: control-loop period at 100 Hz and 500 Hz over loopback, and ONNX vs PyTorch inference.

Two measurements, each with its baseline in the same run:

1. **Inference latency** of the same exported MLP policy (observation normalisation,
   actor, action rescaling) called on one observation at a time, as the control loop
   does: PyTorch eager (``torch.inference_mode``, one thread) against onnxruntime (one
   thread) and TorchScript, plus SB3's own ``model.predict`` for reference. Policies:
   SB3 PPO ``[64, 64]`` on the reacher (10 → 2), SB3 SAC ``[256, 256]`` on the half
   cheetah (17 → 6), SB3 PPO ``[256, 256]`` on the humanoid (348 → 17); random
   weights (latency does not depend on training). The runtimes take turns in rounds
   (ABCD ABCD ...) so that drift in machine load favours none; per-call p50/p99 over
   all rounds.

2. **Loop timing**: the simulated reacher served by ``robo-reward deploy serve-sim`` in
   its own process on 127.0.0.1, driven by :class:`~robo_reward.deploy.runtime.ControlLoop`
   in this process with the ONNX reacher policy, at 100 Hz and 500 Hz, each with the
   precise sleep (``time.sleep`` then a 200 µs busy-wait), with a plain ``time.sleep``
   (``spin_s=0``), and with the precise sleep while the loop and the server run under
   ``SCHED_FIFO`` (``--rt-priority 50``; needs root or ``CAP_SYS_NICE``, otherwise that
   row says "normal scheduling"), side by side. Reported: loop period p50/p99, period
   error p99 (% of the period), start lateness, policy inference, observation and
   action round trips, deadline misses. Goal: p99 period error under 5 % at 100 Hz.

Usage::

    python benchmarks/deploy_timing.py [--seconds 10] [--calls 5000] [--out benchmarks/results/deploy_timing.json]

Wall-clock timings: other work on the machine shows up in them (the load average at
the start is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from robo_reward.train.records import package_versions

os.environ.setdefault("MUJOCO_GL", "egl")

ROOT = Path(__file__).resolve().parents[1]

POLICIES = [
    ("ppo-64x64 reacher", "PPO", "mujoco-reacher-v5", [64, 64]),
    ("sac-256x256 half-cheetah", "SAC", "mujoco-half-cheetah-v5", [256, 256]),
    ("ppo-256x256 humanoid", "PPO", "mujoco-humanoid-v5", [256, 256]),
]


def _export(tmp: Path, name: str, algo: str, task: str, arch: list[int]) -> tuple[Path, Path, object, object]:
    import stable_baselines3 as sb3

    from robo_reward.deploy.export import build_export_module, export_policy, load_policy_source
    from robo_reward.envs import make_env

    env = make_env(task)
    kwargs = {"net_arch": arch}
    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, device="cpu", policy_kwargs=kwargs)
    env.close()
    zip_path = tmp / f"{name.split()[0]}.zip"
    model.save(str(zip_path))
    results = export_policy(zip_path, tmp / name.split()[0], ["onnx", "torchscript"], task=task, parity_samples=200)
    src = load_policy_source(zip_path, task=task)
    module = build_export_module(src)
    return results[0].path, results[1].path, module, src.model


def _pct(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)), "mean_us": float(a.mean())}


def bench_inference(calls: int, rounds: int, tmp: Path, log) -> list[dict]:
    """Per-call latency of each runtime on the same policies."""
    import torch

    from robo_reward.deploy.policy import OnnxPolicy, TorchScriptPolicy

    torch.set_num_threads(1)
    out = []
    for name, algo, task, arch in POLICIES:
        onnx_path, ts_path, module, model = _export(tmp, name, algo, task, arch)
        onnx_pol = OnnxPolicy(onnx_path, threads=1)
        ts_pol = TorchScriptPolicy(ts_path, threads=1)
        d = onnx_pol.obs_dim
        rng = np.random.default_rng(0)
        obs_all = rng.normal(size=(calls, d)).astype(np.float32)

        def eager(o: np.ndarray, _m=module) -> np.ndarray:
            with torch.inference_mode():
                return _m(torch.from_numpy(o).unsqueeze(0)).numpy()[0]

        def sb3_predict(o: np.ndarray, _m=model) -> np.ndarray:
            return _m.predict(o, deterministic=True)[0]

        runners = {"pytorch eager": eager, "onnxruntime": onnx_pol, "torchscript": ts_pol,
                   "sb3 predict": sb3_predict}
        for fn in runners.values():  # warm-up
            for o in obs_all[:200]:
                fn(o)
        # all runtimes give the same actions
        ref = np.stack([eager(o) for o in obs_all[:100]])
        agree = {k: float(np.max(np.abs(np.stack([fn(o) for o in obs_all[:100]]) - ref))) for k, fn in runners.items()}
        samples: dict[str, list[float]] = {k: [] for k in runners}
        per_round = max(calls // rounds, 1)
        perf = time.perf_counter
        for r in range(rounds):
            chunk = obs_all[r * per_round:(r + 1) * per_round]
            for k, fn in runners.items():
                s = samples[k]
                for o in chunk:
                    t0 = perf()
                    fn(o)
                    s.append(perf() - t0)
        row = {"policy": name, "obs_dim": d, "action_dim": onnx_pol.action_dim, "hidden": arch,
               "calls": len(samples["onnxruntime"]), "max_abs_diff_vs_eager": agree,
               **{k: _pct(v) for k, v in samples.items()}}
        row["onnx_speedup_p50"] = row["pytorch eager"]["p50_us"] / row["onnxruntime"]["p50_us"]
        out.append(row)
        log(f"{name}: eager p50 {row['pytorch eager']['p50_us']:.1f} us, onnx p50 {row['onnxruntime']['p50_us']:.1f} us")
    return out


def _start_server(max_steps: int, rt_priority: int | None = None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "robo_reward.cli", "deploy", "serve-sim", "mujoco-reacher-v5", "--port", "0",
           "--seed", "0", "--max-episode-steps", str(max_steps)]
    if rt_priority is not None:
        cmd += ["--rt-priority", str(rt_priority)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the sim server did not start: {line!r}")
    return proc, line.split()[-1]


def _stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


#: (label, spin_s, SCHED_FIFO priority of the loop and the server)
LOOP_SETTINGS = [
    ("precise sleep (200 us spin)", 2e-4, None),
    ("plain time.sleep", 0.0, None),
    ("precise sleep + SCHED_FIFO", 2e-4, 50),
]


def bench_loop(policy_path: Path, seconds: float, log) -> list[dict]:
    """Loop timing at 100 and 500 Hz: precise vs plain sleep, normal vs SCHED_FIFO, against a server process."""
    from robo_reward.deploy.policy import load_policy
    from robo_reward.deploy.robot import open_robot
    from robo_reward.deploy.runtime import ControlLoop
    from robo_reward.deploy.safety import SafetyConfig

    policy = load_policy(policy_path)
    rows = []
    servers = {None: _start_server(10_000_000), 50: _start_server(10_000_000, 50)}
    try:
        for rate in (100.0, 500.0):
            for label, spin, prio in LOOP_SETTINGS:
                robot = open_robot(servers[prio][1])
                loop = ControlLoop(policy, robot, rate_hz=rate, duration_s=seconds, spin_s=spin,
                                   realtime_priority=prio, settings=SafetyConfig(watchdog_periods=50),
                                   handle_signals=False)
                report = loop.run()
                t = report.timing
                row = {"rate_hz": rate, "sleep": label, "spin_s": spin, "scheduling": report.scheduling,
                       "stop_reason": report.stop_reason,
                       "cycles": t["cycles"], "interventions": report.interventions,
                       "period_ms": t["period_ms"], "period_error_pct": t["period_error_pct"],
                       "start_lateness_ms": t["start_lateness_ms"], "inference_ms": t["inference_ms"],
                       "observation_ms": t["observation_ms"], "action_ms": t["action_ms"],
                       "cycle_work_ms": t["cycle_work_ms"], "deadline_misses": t["deadline_misses"],
                       "deadline_miss_pct": t["deadline_miss_pct"]}
                rows.append(row)
                log(f"{rate:.0f} Hz, {label} ({report.scheduling}): period p50 {t['period_ms']['p50']:.4f} ms "
                    f"p99 {t['period_ms']['p99']:.4f} ms, error p99 {t['period_error_pct']['p99']:.2f} %, "
                    f"misses {t['deadline_misses']}")
    finally:
        for proc, _ in servers.values():
            _stop_server(proc)
    return rows


def _versions() -> dict[str, str]:
    return package_versions(("torch", "onnxruntime", "onnx", "stable-baselines3", "mujoco", "numpy", "msgpack"))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_markdown(res: dict, path: Path) -> None:
    """The human-readable report."""
    m = res["machine"]
    lines = [
        "# Deploy timing: control loop over loopback, ONNX vs PyTorch inference",
        "",
        f"Command: `{res['command']}` ({res['wall_s']:.0f} s). Machine: {m['cpu']}, {m['cpu_count']} CPUs, "
        f"{m['platform']}; load average at the start {m['loadavg'][0]:.2f} / {m['loadavg'][1]:.2f} / {m['loadavg'][2]:.2f} "
        f"(1/5/15 min). {res['note']}",
        "",
        "## Control loop (simulated reacher served by `robo-reward deploy serve-sim` in another process, 127.0.0.1)",
        "",
        "Each cycle: read an observation (one round trip), ONNX policy, safety layer, send the action "
        "(one round trip, the server steps MuJoCo). Times in ms; period error = |period − target| / target.",
        "",
        "| rate | sleep | scheduling | cycles | period p50 | period p99 | period error p99 | lateness p99 | inference p50 / p99 | "
        "observation p50 / p99 | action p50 / p99 | deadline misses |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["loop"]:
        lines.append(
            f"| {r['rate_hz']:.0f} Hz | {r['sleep']} | {r['scheduling']} | {r['cycles']} | {r['period_ms']['p50']:.4f} | "
            f"{r['period_ms']['p99']:.4f} | {r['period_error_pct']['p99']:.2f} % | {r['start_lateness_ms']['p99']:.4f} | "
            f"{r['inference_ms']['p50']:.4f} / {r['inference_ms']['p99']:.4f} | "
            f"{r['observation_ms']['p50']:.4f} / {r['observation_ms']['p99']:.4f} | "
            f"{r['action_ms']['p50']:.4f} / {r['action_ms']['p99']:.4f} | "
            f"{r['deadline_misses']} ({r['deadline_miss_pct']:.2f} %) |"
        )
    lines += [
        "",
        "## Inference latency, one observation per call (µs; one thread each)",
        "",
        "The same exported module (normalisation, actor, action rescaling) in each runtime; "
        "`sb3 predict` is Stable-Baselines3's own `model.predict` on the original model, for reference.",
        "",
        "| policy | obs → act | PyTorch eager p50 / p99 | onnxruntime p50 / p99 | TorchScript p50 / p99 | "
        "SB3 predict p50 / p99 | eager / ONNX (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["inference"]:
        def c(k: str) -> str:
            return f"{r[k]['p50_us']:.1f} / {r[k]['p99_us']:.1f}"

        lines.append(f"| {r['policy']} | {r['obs_dim']} → {r['action_dim']} | {c('pytorch eager')} | {c('onnxruntime')} | "
                     f"{c('torchscript')} | {c('sb3 predict')} | {r['onnx_speedup_p50']:.2f}× |")
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    """Run both measurements and write the JSON and Markdown results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per loop-timing run")
    ap.add_argument("--calls", type=int, default=5000, help="inference calls per runtime and policy")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--note", default="The machine was shared with other jobs while this ran.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deploy_timing.json")
    args = ap.parse_args()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    res: dict = {
        "command": "python benchmarks/deploy_timing.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg": list(os.getloadavg())},
        "note": args.note,
        "versions": _versions(),
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res["inference"] = bench_inference(args.calls, args.rounds, tmp, log)
        res["loop"] = bench_loop(tmp / "ppo-64x64" / "policy.onnx", args.seconds, log)
    res["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    write_markdown(res, args.out.with_suffix(".md"))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

"""robo_reward's IQL against d3rlpy 2.8.1's IQL: gradient steps per second, side by side in one run.

Both sides train on the same dataset file (a robo_reward ``.npz``; by default a mixed
MetaWorld reach dataset collected here: scripted expert, noisy expert and random
episodes) with the same networks (twin Q, V and a Gaussian policy with a tanh mean and
a state-independent log std, each an MLP with two hidden layers of 256 ReLU units),
batch size 256, Adam at 3e-4, γ 0.99, τ 0.7, β 3, weights clipped at 100, Polyak 0.005,
standardised observations and one torch thread. The parameter counts are printed and
must agree.

d3rlpy pins gymnasium 1.0.0, so it runs in its own virtual environment
(``benchmarks/_venvs/d3rlpy``, created on first use: ``torch==2.14.1`` first, then
``d3rlpy==2.8.1``) in a worker process (``iql_vs_d3rlpy_worker.py``) that this script
drives over a pipe; robo_reward's IQL runs in this process. Only one side computes at
a time. After untimed warm-up steps, rounds alternate the two sides (the order flips
every round, so drift in machine load favours neither) and each round times ``--steps``
gradient steps of each side in two modes:

* ``full`` — what a training loop does per step: draw a batch and update. Ours draws
  indices on the device from the dataset held there (``IQL.train_steps``); d3rlpy's
  ``ReplayBuffer.sample_transition_batch`` then ``algo.update`` (as in its ``fit``);
* ``update`` — the update alone, on batches drawn before the clock starts (ours
  ``IQL.update``, d3rlpy ``algo.update``; both return the losses as Python floats).

Each timing is taken by wall clock and by the process's CPU time; on a machine shared
with other jobs the CPU-time rate is the fairer figure. Reported: per side and mode the
median steps/s over rounds with min–max, and the median of the per-round ratios.

Usage::

    python benchmarks/iql_vs_d3rlpy.py [--dataset PATH.npz] [--rounds 7] [--steps 200] [--warmup 50]
        [--device cpu] [--out benchmarks/results/iql_vs_d3rlpy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from robo_reward.bench.files import load_average, write_result_files
from robo_reward.train.records import package_versions

HERE = Path(__file__).resolve().parent
VENV = HERE / "_venvs" / "d3rlpy"
WORKER = HERE / "iql_vs_d3rlpy_worker.py"
D3RLPY_VERSION = "2.8.1"
TORCH_VERSION = "2.14.1"
HIDDEN = [256, 256]
BATCH = 256


# ----------------------------------------------------------------------------- the d3rlpy environment


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_d3rlpy_venv(venv: Path = VENV) -> Path:
    """Create (once) a virtual environment with ``torch==2.14.1`` and then ``d3rlpy==2.8.1``; return its python."""
    py = _venv_python(venv)
    check = [str(py), "-c", "import d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)"]
    if py.is_file():
        res = subprocess.run(check, capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.split()[:1] == [D3RLPY_VERSION]:
            return py
    print(f"creating {venv} (torch {TORCH_VERSION}, then d3rlpy {D3RLPY_VERSION}) ...", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for pkg in (f"torch=={TORCH_VERSION}", f"d3rlpy=={D3RLPY_VERSION}"):
        subprocess.run([str(py), "-m", "pip", "install", "-q", pkg], check=True)
    subprocess.run(check, check=True, capture_output=True)
    return py


class D3rlpyWorker:
    """The worker process in the d3rlpy environment, driven with one JSON line per command."""

    def __init__(self, python: Path, threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)

    def ask(self, **msg: Any) -> dict[str, Any]:
        """Send one command and return the answer (raises on an error answer)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the d3rlpy worker exited (code {self.proc.wait()})")
        out = json.loads(line)
        if not out.get("ok"):
            raise RuntimeError(f"d3rlpy worker: {out.get('error')}")
        return out

    def close(self) -> None:
        """Stop the worker."""
        try:
            self.ask(cmd="quit")
        except Exception:
            pass
        self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------- our side


class Ours:
    """robo_reward's IQL with the benchmark's settings, timed in this process."""

    def __init__(self, dataset_path: Path, device: str, seed: int, warmup: int):
        from robo_reward.offline.dataset import load_dataset
        from robo_reward.offline.iql import IQL, IQLConfig

        ds = load_dataset(dataset_path)
        cfg = IQLConfig(hidden=tuple(HIDDEN), batch_size=BATCH, lr=3e-4, seed=seed)
        self.agent = IQL.for_dataset(ds, cfg, device=device)
        self.n_params = int(sum(p.numel() for m in (self.agent.q, self.agent.v, self.agent.policy)
                                for p in m.parameters()))
        self.transitions = len(ds)
        self.agent.train_steps(warmup)

    def run(self, steps: int, mode: str) -> dict[str, float]:
        """Time ``steps`` gradient steps (``full``: sampling included; ``update``: pre-drawn batches)."""
        import torch

        if mode == "full":
            c0, t0 = time.process_time(), time.perf_counter()
            self.agent.train_steps(steps)
        else:
            batches = [self.agent.sample() for _ in range(steps)]
            if self.agent.device.type == "cuda":
                torch.cuda.synchronize()
            c0, t0 = time.process_time(), time.perf_counter()
            for b in batches:
                self.agent.update(b)
        if self.agent.device.type == "cuda":
            torch.cuda.synchronize()
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


# ----------------------------------------------------------------------------- driver


def collect_default_dataset(path: Path, episodes: int, seed: int) -> Path:
    """A mixed-quality MetaWorld reach dataset (expert 50 %, noisy expert 30 %, random 20 %)."""
    from robo_reward.offline.dataset import collect_dataset

    ds = collect_dataset("metaworld-reach-v3", n_episodes=episodes, seed=seed,
                         policy="expert@0.5+noisy:0.3@0.3+random@0.2", max_steps=200, progress=True)
    return ds.save(path)


def _stats(values: list[float]) -> dict[str, float]:
    q = np.percentile(values, [25, 75])
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values)),
            "q25": float(q[0]), "q75": float(q[1])}


def _versions() -> dict[str, str]:
    return package_versions(('robo-reward', 'torch', 'numpy', 'gymnasium'))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; write ``<out>.json`` and ``<out>.md``; return the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=None, help="a robo_reward .npz dataset (default: collect one)")
    p.add_argument("--episodes", type=int, default=50, help="episodes of the default dataset (200 steps each)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=200, help="gradient steps per side, mode and round")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--venv", type=Path, default=VENV)
    p.add_argument("--out", type=Path, default=HERE / "results" / "iql_vs_d3rlpy")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    command = "python benchmarks/iql_vs_d3rlpy.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                      " " + " ".join(sys.argv[1:] if argv is None else argv))
    t_start = time.perf_counter()
    load_start = load_average()
    python = ensure_d3rlpy_venv(args.venv)
    tmp = None
    if args.dataset is None:
        tmp = tempfile.TemporaryDirectory(prefix="iql-bench-")
        dataset = collect_default_dataset(Path(tmp.name) / "reach-mixed.npz", args.episodes, args.seed)
        dataset_desc = (f"metaworld-reach-v3, {args.episodes} episodes of 200 steps, "
                        "expert@0.5+noisy:0.3@0.3+random@0.2, seed " + str(args.seed))
    else:
        dataset, dataset_desc = args.dataset, str(args.dataset)
    try:
        ours = Ours(dataset, args.device, args.seed, args.warmup)
        worker = D3rlpyWorker(python, args.threads)
        try:
            setup = worker.ask(cmd="setup", dataset=str(dataset), hidden=HIDDEN, batch_size=BATCH, lr=3e-4,
                               seed=args.seed, threads=args.threads, warmup=args.warmup,
                               device="cuda:0" if args.device.startswith("cuda") else "cpu:0")
            if setup["n_params"] != ours.n_params:
                raise SystemExit(f"parameter counts differ: ours {ours.n_params}, d3rlpy {setup['n_params']}")
            rounds: list[dict[str, Any]] = []
            sides = {"robo_reward": ours.run, "d3rlpy": lambda n, m: worker.ask(cmd="run", steps=n, mode=m)}
            for r in range(args.rounds):
                order = ["robo_reward", "d3rlpy"] if r % 2 == 0 else ["d3rlpy", "robo_reward"]
                row: dict[str, Any] = {"round": r, "order": order, "load": load_average()}
                for mode in ("full", "update"):
                    for side in order:
                        t = sides[side](args.steps, mode)
                        row[f"{side}/{mode}"] = {"wall_s": t["wall_s"], "cpu_s": t["cpu_s"],
                                                 "steps_per_s_wall": args.steps / t["wall_s"],
                                                 "steps_per_s_cpu": args.steps / max(t["cpu_s"], 1e-9)}
                rounds.append(row)
                print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                    f"{k} {v['steps_per_s_cpu']:.0f}/s cpu" for k, v in row.items() if "/" in k), file=sys.stderr)
        finally:
            worker.close()
    finally:
        if tmp is not None:
            tmp.cleanup()

    summary: dict[str, Any] = {}
    for mode in ("full", "update"):
        entry: dict[str, Any] = {}
        for clock in ("cpu", "wall"):
            for side in ("robo_reward", "d3rlpy"):
                entry[f"{side}_steps_per_s_{clock}"] = _stats([row[f"{side}/{mode}"][f"steps_per_s_{clock}"]
                                                               for row in rounds])
            ratios = [row[f"robo_reward/{mode}"][f"steps_per_s_{clock}"] / row[f"d3rlpy/{mode}"][f"steps_per_s_{clock}"]
                      for row in rounds]
            entry[f"speedup_{clock}"] = _stats(ratios)
        summary[mode] = entry
    result = {
        "benchmark": "iql_vs_d3rlpy",
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": args.device,
        "note": "CPU figures" if args.device == "cpu" else f"{args.device} figures",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_start": load_start,
                    "load_end": load_average()},
        "settings": {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
                     "hidden": HIDDEN, "batch_size": BATCH, "lr": 3e-4, "expectile": 0.7, "beta": 3.0,
                     "max_weight": 100.0, "polyak": 0.005, "gamma": 0.99, "seed": args.seed},
        "dataset": {"description": dataset_desc, "transitions_robo_reward": ours.transitions,
                    "transitions_d3rlpy": setup["transitions"], "episodes": setup["episodes"]},
        "parameters": {"robo_reward": ours.n_params, "d3rlpy": setup["n_params"]},
        "versions": {"robo_reward_side": _versions(), "d3rlpy_side": setup["versions"]},
        "summary": summary,
        "rounds": rounds,
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    write_result_files(args.out, result, render_markdown(result), indent=2)
    return result


def _fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}–{s['max']:,.{digits}f})"


def render_markdown(res: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    st, m = res["settings"], res["machine"]
    vo, vd = res["versions"]["robo_reward_side"], res["versions"]["d3rlpy_side"]
    lines = [
        f"# IQL gradient steps per second: robo_reward vs d3rlpy {vd.get('d3rlpy')} ({res['note']})",
        "",
        f"Command: `{res['command']}`  ",
        f"Date: {res['date']}; device {res['device']}; {m['cpus']} CPU cores, torch threads {st['threads']} on both "
        f"sides; load average at start {m['load_start']}, at end {m['load_end']}; total {res['total_s']} s.  ",
        f"Versions: robo_reward side python {vo.get('python')}, torch {vo.get('torch')}, numpy {vo.get('numpy')}; "
        f"d3rlpy side d3rlpy {vd.get('d3rlpy')}, torch {vd.get('torch')}, numpy {vd.get('numpy')}, "
        f"gymnasium {vd.get('gymnasium')} (own virtual environment).  ",
        f"Dataset: {res['dataset']['description']} ({res['dataset']['transitions_robo_reward']:,} transitions; "
        f"d3rlpy samples {res['dataset']['transitions_d3rlpy']:,}: it drops the last step of time-limited episodes).  ",
        f"Networks: twin Q, V, Gaussian policy, hidden {st['hidden']} ReLU; {res['parameters']['robo_reward']:,} "
        f"parameters on both sides. Batch {st['batch_size']}, Adam {st['lr']}, τ {st['expectile']}, "
        f"β {st['beta']}, weights ≤ {st['max_weight']}, Polyak {st['polyak']}, standardised observations.",
        "",
        f"{st['rounds']} rounds of {st['steps']} gradient steps per side and mode after {st['warmup']} warm-up "
        "steps; the order of the sides flips every round. **full**: sample a batch and update (a training "
        "loop's step); **update**: the update alone on batches drawn beforehand. Median over rounds "
        "(min–max). CPU time is the process's own CPU seconds, the fairer figure on a shared machine.",
        "",
        "| mode | clock | robo_reward steps/s | d3rlpy steps/s | speed-up (median of per-round ratios, min–max) |",
        "|---|---|---|---|---|",
    ]
    for mode in ("full", "update"):
        for clock in ("cpu", "wall"):
            e = res["summary"][mode]
            lines.append(f"| {mode} | {clock} | {_fmt(e[f'robo_reward_steps_per_s_{clock}'])} | "
                         f"{_fmt(e[f'd3rlpy_steps_per_s_{clock}'])} | **{e[f'speedup_{clock}']['median']:.2f}×** "
                         f"({e[f'speedup_{clock}']['min']:.2f}–{e[f'speedup_{clock}']['max']:.2f}) |")
    if (m["load_start"] or 0) > (m["cpus"] or 1):
        lines += ["", "**The machine was shared**: the load average exceeded the number of cores, so wall-clock "
                      "rates are depressed and noisy; compare the CPU-time rows."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

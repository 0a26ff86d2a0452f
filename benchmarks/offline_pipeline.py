"""The offline pipeline end to end: collect a mixed-quality dataset, relabel it, train IQL and BC, evaluate.

On a MetaWorld task (default ``metaworld-reach-v3``) the script

1. collects one dataset with the task's scripted expert, the expert with Gaussian action
   noise and uniformly random actions, one policy drawn per episode;
2. trains, through the same code path as ``robo-reward train`` (one run folder each):

   * ``iql / env reward`` — IQL on the dataset's own (ground-truth) rewards;
   * ``iql / code reward`` — IQL on the dataset relabelled with a non-env reward, the
     shipped reward program ``code:path=assets/rewards/<task>.py``;
   * ``iql / perceptual`` (``--perceptual``) — IQL on the dataset relabelled with a
     perceptual reward (Sermanet et al. 2016) fitted on the expert episodes' frames.
     Pretrained vision weights cannot be downloaded here, so the backbone has random
     weights unless ``--backbone-weights`` points at a local file: read those rows as a
     test of the plumbing, not of the method;
   * ``bc`` — behaviour cloning on the same dataset (rewards unused);
3. evaluates every final policy on deterministic episodes in the card's env with its
   ground-truth reward and success signal, and reports, per method, the mean over
   training seeds of the success rate and the ground-truth return with 95 % t-intervals
   over seeds (and the pooled success count with a Wilson interval). The scripted expert
   and random actions are evaluated the same way for reference.

Results: ``<out>.json`` and ``<out>.md`` (default ``benchmarks/results/offline_pipeline``).
``--quick`` shrinks everything to a few minutes. Run folders go under ``--runs``
(default: a temporary folder, deleted at the end).

Usage::

    python benchmarks/offline_pipeline.py [--quick] [--task metaworld-reach-v3] [--seeds 3]
        [--steps 3000] [--episodes 100] [--eval-episodes 10] [--perceptual]
"""

from __future__ import annotations

import argparse
import json
import os
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
REPO = HERE.parent
MIXTURE = "expert@0.2+noisy:1.0@0.3+random@0.5"


def _versions() -> dict[str, str]:
    return package_versions(('robo-reward', 'torch', 'numpy', 'gymnasium', 'metaworld', 'mujoco'))


def _t_interval(values: list[float]) -> list[float] | None:
    from robo_reward.train.evaluate import t_interval

    ci = t_interval(values)
    return None if ci is None else [float(ci[0]), float(ci[1])]


def collect(task: str, episodes: int, max_steps: int, seed: int, path: Path, frames: bool) -> dict[str, Any]:
    """Collect the mixed dataset (with 64×64 frames for the perceptual reward when asked); return its facts.

    Collection runs in a child process: MuJoCo's EGL rendering context and torchvision's
    import (the perceptual reward) do not share one process here.
    """
    from robo_reward.offline.dataset import load_dataset

    t0 = time.perf_counter()
    code = (
        "from robo_reward.offline.dataset import collect_dataset\n"
        f"ds = collect_dataset({task!r}, n_episodes={episodes}, policy={MIXTURE!r}, seed={seed}, "
        f"max_steps={max_steps}, frames={frames}, "
        f"render_overrides={({'width': 64, 'height': 64} if frames else None)!r}, progress=True)\n"
        f"ds.save({str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    ds = load_dataset(path)
    pols = np.array([p.partition(":")[0] for p in ds.metadata["episode_policies"]])
    success = ds.episode_success("is_success")
    env_ret = ds.episode_returns(env_reward=True)
    by_policy = {p: {"episodes": int((pols == p).sum()), "success_rate": float(success[pols == p].mean()),
                     "env_return": float(env_ret[pols == p].mean())} for p in sorted(set(pols))}
    return {"path": str(path), "transitions": len(ds), "episodes": ds.n_episodes, "max_steps": max_steps,
            "mixture": MIXTURE, "seed": seed, "success_rate": float(success.mean()),
            "env_return": float(env_ret.mean()), "by_policy": by_policy, "frames": frames,
            "collect_s": round(time.perf_counter() - t0, 1)}


def fit_perceptual(dataset_path: Path, out: Path, weights: str | None) -> str:
    """Fit a perceptual reward on (up to 5) expert episodes' frames; return its reward spec."""
    code = f"""
import numpy as np
from robo_reward.offline.dataset import load_dataset
from robo_reward.rewards.perceptual import BackboneSpec, fit_perceptual_reward
ds = load_dataset({str(dataset_path)!r})
pols = ds.metadata["episode_policies"]
demos = [ds.frames[s] for s, p in zip(ds.episode_slices(), pols) if p == "expert"][:5]
if not demos:
    raise SystemExit("the dataset has no expert episode to fit the perceptual reward on: raise --episodes")
spec = BackboneSpec(pretrained={weights!r}, image_size=64)
fit_perceptual_reward(demos, n_steps=3, min_length=5, backbone=spec, device="cpu").save({str(out)!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    return f"perceptual:model_path={out},device=cpu"


def train_one(task: str, dataset: Path, agent: str, reward: str | None, seed: int, steps: int, eval_episodes: int,
              hp: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One ``robo-reward train`` run (in this process, through the Runner); the summary's facts."""
    from robo_reward.train.config import make_run_config
    from robo_reward.train.runner import Runner

    cfg = make_run_config({
        "task": task, "agent": agent, "dataset": str(dataset), "reward": reward, "steps": steps, "seed": seed,
        "eval_episodes": eval_episodes, "eval_freq": 0, "checkpoint_freq": 0, "log_freq": max(1, steps // 5),
        "video": False, "device": "cpu", "torch_threads": 1, "agent_overrides": hp, "out": str(run_dir),
    })
    summary = Runner(cfg, progress=False, log=lambda m: None).setup().run()
    ev = json.loads((run_dir / "eval.json").read_text())
    return {"seed": seed, "success_rate": ev["success_rate"], "success_count": ev["success_count"],
            "episodes": ev["episodes"], "return_mean": ev["return_mean"],
            "final_success_rate": ev.get("final_success_rate"), "train_time_s": summary["train_time_s"],
            "grad_steps_per_s": summary["steps_per_s"]}


def reference_policies(task: str, episodes: int, seed: int) -> dict[str, dict[str, Any]]:
    """The scripted expert and uniformly random actions, evaluated like the trained policies."""
    from robo_reward.envs import load_card
    from robo_reward.offline.dataset import _metaworld_expert
    from robo_reward.train.evaluate import run_episodes, summarize_episodes

    card = load_card(task)
    expert = _metaworld_expert(card)
    rng = np.random.default_rng(seed)

    class _Policy:
        def __init__(self, fn: Any):
            self.fn = fn

        def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
            """The wrapped function's action (SB3's ``predict`` signature)."""
            return self.fn(obs), None

    out = {}
    for name, fn in (("scripted expert", expert), ("random actions", lambda o: rng.uniform(-1, 1, 4).astype(np.float32))):
        eps = run_episodes(_Policy(fn), card, episodes, seed)
        s = summarize_episodes(eps["returns"], eps["successes"], eps["lengths"])
        out[name] = {"success_rate": s["success_rate"], "success_ci": s["success_ci"], "return_mean": s["return_mean"],
                     "return_ci": s["return_ci"], "episodes": episodes}
    return out


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and 95 % t-interval over seeds of success rate and GT return; pooled Wilson interval of successes."""
    from robo_reward.train.evaluate import wilson_interval

    succ = [r["success_rate"] for r in rows]
    ret = [r["return_mean"] for r in rows]
    k, n = sum(r["success_count"] for r in rows), sum(r["episodes"] for r in rows)
    return {"seeds": len(rows), "success_mean": float(np.mean(succ)), "success_ci_seeds": _t_interval(succ),
            "success_pooled": [k, n], "success_pooled_wilson": list(wilson_interval(k, n)),
            "return_mean": float(np.mean(ret)), "return_ci_seeds": _t_interval(ret),
            "train_time_s_mean": float(np.mean([r["train_time_s"] for r in rows]))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the pipeline; write ``<out>.json`` and ``<out>.md``; return the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="metaworld-reach-v3")
    p.add_argument("--quick", action="store_true", help="a few minutes: fewer episodes and steps, smaller networks")
    p.add_argument("--episodes", type=int, default=None, help="dataset episodes (default 100; quick 50)")
    p.add_argument("--max-steps", type=int, default=150, help="steps per dataset episode")
    p.add_argument("--steps", type=int, default=None, help="gradient steps per run (default 3000; quick 1000)")
    p.add_argument("--seeds", type=int, default=None, help="training seeds per method (default 3)")
    p.add_argument("--eval-episodes", type=int, default=None, help="evaluation episodes per run (default 10; quick 5)")
    p.add_argument("--hidden", default=None, help="hidden layers, e.g. 256,256 (default 256,256; quick 128,128)")
    p.add_argument("--perceptual", action="store_true", help="also relabel with a perceptual reward (collects frames)")
    p.add_argument("--backbone-weights", default=None, help="local weights file for the perceptual backbone")
    p.add_argument("--runs", type=Path, default=None, help="keep the run folders here (default: temporary)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "offline_pipeline")
    args = p.parse_args(argv)
    quick = args.quick
    episodes = args.episodes or (50 if quick else 100)
    steps = args.steps or (1000 if quick else 3000)
    n_seeds = args.seeds or 3
    eval_eps = args.eval_episodes or (5 if quick else 10)
    hidden = [int(h) for h in (args.hidden or ("128,128" if quick else "256,256")).split(",")]

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")
    command = "python benchmarks/offline_pipeline.py" + ("" if not (argv if argv is not None else sys.argv[1:]) else
                                                         " " + " ".join(argv if argv is not None else sys.argv[1:]))
    t_start, load_start = time.perf_counter(), load_average()
    tmp = None
    runs = args.runs
    if runs is None:
        tmp = tempfile.TemporaryDirectory(prefix="offline-pipeline-")
        runs = Path(tmp.name)
    runs.mkdir(parents=True, exist_ok=True)
    try:
        dataset_path = runs / "dataset.npz"
        print(f"collecting {episodes} episodes on {args.task} ...", file=sys.stderr)
        data = collect(args.task, episodes, args.max_steps, 0, dataset_path, frames=args.perceptual)
        code_reward = f"code:path={REPO / 'assets' / 'rewards' / (args.task + '.py')}"
        methods: list[tuple[str, str, str | None]] = [
            ("iql / env reward", "iql", None),
            ("iql / code reward", "iql", code_reward),
        ]
        datasets = {label: dataset_path for label, _, _ in methods}
        if args.perceptual:
            from robo_reward.offline.dataset import load_dataset, relabel

            spec = fit_perceptual(dataset_path, runs / "perceptual.npz", args.backbone_weights)
            label = "iql / perceptual" + ("" if args.backbone_weights else " (random-weight backbone)")
            # frames are scored once for all seeds: the relabelled copy is trained on its stored rewards
            datasets[label] = relabel(load_dataset(dataset_path), spec, progress=True).save(runs / "perceptual-ds.npz")
            methods.append((label, "iql", None))
            perceptual_label = label
        else:
            perceptual_label = None
        datasets["bc"] = dataset_path
        methods.append(("bc", "bc", None))
        results: dict[str, Any] = {}
        for label, agent, reward in methods:
            rows = []
            for seed in range(n_seeds):
                t0 = time.perf_counter()
                row = train_one(args.task, datasets[label], agent, reward, seed, steps, eval_eps, {"hidden": hidden},
                                runs / f"{label.split()[0]}-{len(results)}-s{seed}")
                rows.append(row)
                print(f"{label} seed {seed}: success {row['success_rate']:.2f}, GT return {row['return_mean']:.1f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            shown = "perceptual (relabelled once, fit on 5 expert episodes)" if label == perceptual_label else reward
            results[label] = {"agent": agent, "reward": shown, "runs": rows, **aggregate(rows)}
        print("evaluating the scripted expert and random actions ...", file=sys.stderr)
        refs = reference_policies(args.task, eval_eps * n_seeds, 10_000)
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {
        "benchmark": "offline_pipeline",
        "command": command,
        "note": "CPU figures",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": args.task,
        "machine": {"cpus": os.cpu_count(), "load_start": load_start, "load_end": load_average(), "torch_threads": 1},
        "versions": _versions(),
        "settings": {"quick": quick, "steps": steps, "seeds": n_seeds, "eval_episodes": eval_eps, "hidden": hidden,
                     "eval_seed": "run seed + 10000"},
        "dataset": {k: v for k, v in data.items() if k != "path"},
        "methods": results,
        "reference": refs,
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    write_result_files(args.out, result, render_markdown(result), indent=2)
    return result


def _ci(ci: list[float] | None, digits: int, unit: bool = False) -> str:
    if ci is None:
        return "—"
    lo, hi = (max(0.0, ci[0]), min(1.0, ci[1])) if unit else (ci[0], ci[1])
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def render_markdown(res: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    st, d, m, v = res["settings"], res["dataset"], res["machine"], res["versions"]
    lines = [
        f"# Offline pipeline on {res['task']}: IQL on env / relabelled rewards vs behaviour cloning ({res['note']})",
        "",
        f"Command: `{res['command']}`  ",
        f"Date: {res['date']}; {m['cpus']} CPU cores, torch threads 1; load average at start {m['load_start']}, "
        f"at end {m['load_end']}; total {res['total_s']:.0f} s.  ",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "  ",
        f"Dataset: {d['episodes']} episodes of {d['max_steps']} steps ({d['transitions']:,} transitions), "
        f"policies `{d['mixture']}` (one per episode), seed {d['seed']}; dataset success rate "
        f"{d['success_rate']:.2f}, mean GT return {d['env_return']:.1f}. By policy: "
        + "; ".join(f"{p} {x['episodes']} episodes, success {x['success_rate']:.2f}, return {x['env_return']:.1f}"
                    for p, x in d["by_policy"].items()) + ".  ",
        f"Training: {st['steps']:,} gradient steps per run, networks {st['hidden']}, presets `agents/iql.yaml` and "
        f"`agents/bc.yaml` otherwise; {st['seeds']} training seeds per method; each final policy evaluated on "
        f"{st['eval_episodes']} deterministic {res['task']} episodes (500 steps, seeds from {st['eval_seed']}) "
        "with the env's own reward and success signal.",
        "",
        "Success = `is_success` at any step. Mean over seeds with a 95 % t-interval over seeds (for the "
        "success rate shown cut to [0, 1]; the JSON has the raw interval); pooled = all evaluation episodes "
        "of all seeds, Wilson interval.",
        "",
        "| method | training reward | success (mean over seeds) [95% CI] | pooled successes [Wilson 95%] | "
        "GT return (mean over seeds) [95% CI] | train s/run |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in res["methods"].items():
        k, n = r["success_pooled"]
        reward = r["reward"] or ("dataset env reward" if r["agent"] == "iql" else "— (actions only)")
        if reward.startswith("code:path="):
            reward = "code:path=assets/rewards/" + Path(reward.split("=", 1)[1]).name
        lines.append(
            f"| {label} | `{reward}` | {r['success_mean']:.2f} {_ci(r['success_ci_seeds'], 2, unit=True)} | {k}/{n} "
            f"{_ci(r['success_pooled_wilson'], 2)} | {r['return_mean']:.1f} {_ci(r['return_ci_seeds'], 1)} | "
            f"{r['train_time_s_mean']:.0f} |")
    for label, r in res["reference"].items():
        k = round(r["success_rate"] * r["episodes"])
        lines.append(f"| {label} (reference) | — | {r['success_rate']:.2f} | {k}/{r['episodes']} "
                     f"{_ci(r['success_ci'], 2)} | {r['return_mean']:.1f} {_ci(r['return_ci'], 1)} | — |")
    if (m["load_start"] or 0) > (m["cpus"] or 1):
        lines += ["", "The machine was shared with other jobs (load average above the core count): the training "
                      "times are wall-clock seconds under that load."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

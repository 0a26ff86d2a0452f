"""Do the steps that the perceptual reward discovers in demos match the task's phases?

The perceptual reward (Sermanet, Xu & Levine 2016; :mod:`robo_reward.rewards.perceptual`)
splits each demonstration into ``K`` steps by minimising the average within-step standard
deviation of frame features (:func:`~robo_reward.rewards.perceptual.segment_features`:
the paper's objective, solved exactly by dynamic programming instead of its recursive
search). This script measures how well those steps agree with the phases of MetaWorld's
scripted-expert demos (reach / grasp / move / place, from ``info`` keys, see
:mod:`robo_reward.offline.demos`), for both of the library's weightings of that average
(:data:`METHODS`):

* ``"length"`` (the default): the average over frames, i.e. each step's feature std
  weighted by its length;
* ``"step"``: the plain average over steps, each counting once, which lets several
  minimum-length steps sit in the still frames at the end of a demo (they cost almost
  nothing) while one long step takes the rest.

What is measured:

* **Agreement** (:func:`jaccard_agreement`): for each labelled phase, the best
  intersection-over-union (Jaccard index, in frames) with any discovered step, averaged
  over the phases; 1 is a perfect match.
* **Baselines** with the same number of steps: random splits (the expectation over
  ``--random-draws`` segmentations drawn uniformly among those respecting the minimum
  step length) and equal-length splits.
* **Features**: the simulator state (the 39-dim observation; the phases are thresholds on
  quantities it holds, so it serves as a reference, not as something a perceptual
  reward sees), down-sampled pixels (no learned features), and vision
  backbones with **random weights** (pretrained weights cannot be downloaded on the
  machine these figures come from; pass ``--resnet-weights`` / ``--clip-pretrained``
  to use real ones).

``K`` is the number of phases that occur in each demo. Demos are recorded in a
subprocess (``robo-reward demos collect``): MuJoCo's EGL rendering and the vision
backbones' imports do not share one process reliably on CPU-only machines.

Usage::

    MUJOCO_GL=egl PYOPENGL_PLATFORM=egl HF_HUB_OFFLINE=1 python benchmarks/perceptual_segmentation.py \\
        [--tasks pick-place push drawer-open sweep-into] [--demos 4] [--size 96] \\
        [--features state pixels resnet18 clip] [--out benchmarks/results/perceptual_segmentation]

Writes ``<out>.json`` (every demo) and ``<out>.md`` (the tables). The CLIP tower defaults to
``ViT-S-32-alt`` to keep the run under ten minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robo_reward.bench.files import write_result_files
from robo_reward.rewards.perceptual import labels_from_boundaries, segment_features

PAPER = ("Sermanet, Xu & Levine, \"Unsupervised Perceptual Rewards for Imitation Learning\", "
         "RSS 2017 (arXiv:1612.06699)")

# ----------------------------------------------------------------------------- the metric


def segments_of(labels: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs ``[(start, stop), ...]`` of equal labels in a per-frame label sequence."""
    lab = np.asarray(labels).reshape(-1)
    if lab.size == 0:
        return []
    cut = np.flatnonzero(np.diff(lab) != 0) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [lab.size]])
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def interval_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Jaccard index of two half-open frame intervals ``[start, stop)``."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def jaccard_agreement(truth: Sequence[int], predicted: Sequence[int]) -> float:
    """Mean over the true segments of the best Jaccard index (in time) with any predicted segment.

    Both arguments are per-frame labels of the same length; segments are their
    contiguous runs (a label that occurs twice makes two segments). 1.0 means every
    true segment is matched exactly.
    """
    t, p = np.asarray(truth).reshape(-1), np.asarray(predicted).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"truth and predicted labels differ in length ({t.size} != {p.size})")
    if t.size == 0:
        raise ValueError("empty label sequences")
    pred = segments_of(p)
    return float(np.mean([max(interval_iou(g, s) for s in pred) for g in segments_of(t)]))


def boundary_error(truth_bounds: Sequence[int], pred_bounds: Sequence[int]) -> float:
    """Mean absolute distance in frames between the i-th true and i-th predicted boundary (same count)."""
    a, b = np.sort(np.asarray(truth_bounds)), np.sort(np.asarray(pred_bounds))
    if a.shape != b.shape:
        raise ValueError("boundary_error needs the same number of boundaries")
    return float(np.mean(np.abs(a - b))) if a.size else 0.0


def random_boundaries(length: int, k: int, min_length: int, rng: np.random.Generator) -> list[int]:
    """Boundaries of a split of ``length`` frames into ``k`` steps of at least ``min_length``,
    drawn uniformly among all such splits (stars and bars over the slack frames)."""
    slack = length - k * min_length
    if slack < 0:
        raise ValueError(f"cannot split {length} frames into {k} steps of at least {min_length}")
    if k == 1:
        return []
    bars = np.sort(rng.choice(slack + k - 1, size=k - 1, replace=False))
    extra = np.diff(np.concatenate([[-1], bars, [slack + k - 1]])) - 1  # k non-negative parts summing to slack
    lengths = extra + min_length
    return [int(x) for x in np.cumsum(lengths)[:-1]]


def equal_boundaries(length: int, k: int) -> list[int]:
    """Boundaries of ``k`` steps of (nearly) equal length."""
    return [int(round(i * length / k)) for i in range(1, k)]


#: Segmentation methods compared: the library's two weightings of the within-step std
#: (``"length"``, the default, first).
METHODS = {
    "length": partial(segment_features, weighting="length"),
    "step": partial(segment_features, weighting="step"),
}


# ----------------------------------------------------------------------------- features


def pixel_features(frames: np.ndarray, side: int = 16) -> np.ndarray:
    """Frames averaged down to ``side × side`` RGB, in [0, 1], flattened (no learned features)."""
    n, h, w, _ = frames.shape
    ys = np.linspace(0, h, side + 1).astype(int)
    xs = np.linspace(0, w, side + 1).astype(int)
    f = frames.astype(np.float32) / 255.0
    out = np.empty((n, side, side, 3), np.float32)
    for i in range(side):
        for j in range(side):
            out[:, i, j] = f[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]].mean(axis=(1, 2))
    return out.reshape(n, -1)


def backbone_features(name: str, frames_list: list[np.ndarray], args: argparse.Namespace) -> tuple[list[np.ndarray], str]:
    """Features of every demo for a vision backbone, and a description of it."""
    from robo_reward.rewards.perceptual import BackboneSpec, make_feature_extractor

    if name == "resnet18":
        weights = args.resnet_weights
        spec = BackboneSpec(kind="torchvision", model="resnet18", pretrained=weights, image_size=args.resnet_size)
        desc = (f"torchvision ResNet-18, {'weights ' + weights if weights else 'random weights (seed 0)'}, "
                f"{args.resnet_size}² input, 512-dim pooled features")
    elif name == "clip":
        pre = args.clip_pretrained
        spec = BackboneSpec(kind="clip", model=args.clip_model, pretrained=pre)
        desc = (f"open_clip {args.clip_model} image tower, {'weights ' + pre if pre else 'random weights (seed 0)'}, "
                "unit-norm embedding")
    else:
        raise ValueError(f"unknown backbone {name!r}")
    ext = make_feature_extractor(spec, device="cpu")
    return [ext.encode(f, batch_size=32) for f in frames_list], desc


# ----------------------------------------------------------------------------- the run


def collect(task: str, n: int, size: int, seed: int, stop_after: int, out: Path) -> None:
    """Record demos with ``robo-reward demos collect`` in a subprocess (rendering stays out of this process)."""
    cmd = [sys.executable, "-m", "robo_reward.cli", "demos", "collect", f"metaworld-{task}-v3", "--n", str(n),
           "--size", str(size), "--seed", str(seed), "--stop-after-success", str(stop_after), "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"demo collection failed for {task}:\n{res.stdout}\n{res.stderr}")


def demo_baselines(phases: np.ndarray, min_length: int, draws: int, rng: np.random.Generator) -> dict[str, Any]:
    """Random-split and equal-split agreement for one demo (and the random draws themselves)."""
    T = len(phases)
    k = len(segments_of(phases))
    rand = np.array([jaccard_agreement(phases, labels_from_boundaries(T, random_boundaries(T, k, min_length, rng)))
                     for _ in range(draws)])
    return {
        "frames": T, "steps": k, "true_boundaries": [a for a, _ in segments_of(phases)[1:]],
        "random_jaccard_mean": float(rand.mean()), "random_jaccard_std": float(rand.std()),
        "equal_jaccard": jaccard_agreement(phases, labels_from_boundaries(T, equal_boundaries(T, k))),
        "_draws": rand,
    }


def evaluate_demo(feats: np.ndarray, phases: np.ndarray, base: dict[str, Any], method: str,
                  min_length: int) -> dict[str, Any]:
    """Discovered vs labelled steps of one demo with one segmentation method."""
    T, k = base["frames"], base["steps"]
    found = METHODS[method](feats, k, min_length)
    j = jaccard_agreement(phases, labels_from_boundaries(T, found))
    return {
        "method": method, "found_boundaries": [int(b) for b in found], "jaccard": j,
        "boundary_error": boundary_error(base["true_boundaries"], found),
        "random_at_least_as_good": float(np.mean(base["_draws"] >= j)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Collect demos, compute features, segment, score; return everything as a dict."""
    from robo_reward.offline.demos import Demo

    t0 = time.perf_counter()
    demo_root = Path(args.demo_dir) if args.demo_dir else Path(tempfile.mkdtemp(prefix="rr_segbench_"))
    demos: dict[str, list[Any]] = {}
    t_collect = time.perf_counter()
    for task in args.tasks:
        folder = demo_root / task
        files = sorted(folder.glob("demo_*.npz"))
        if len(files) < args.demos:
            collect(task, args.demos, args.size, args.seed, args.stop_after_success, folder)
            files = sorted(folder.glob("demo_*.npz"))
        demos[task] = [Demo.load(f) for f in files[: args.demos]]
        if not args.quiet:
            print(f"{task}: {len(demos[task])} demos, lengths {[len(d.phases) for d in demos[task]]}", flush=True)
    t_collect = time.perf_counter() - t_collect

    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    bases = {task: [demo_baselines(d.phases, args.min_length, args.random_draws, rng) for d in ds]
             for task, ds in demos.items()}
    feature_desc: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for feat in args.features:
        t = time.perf_counter()
        per_task: dict[str, list[np.ndarray]] = {}
        for task, ds in demos.items():
            if feat == "state":
                per_task[task] = [d.obs.astype(np.float64) for d in ds]
                feature_desc[feat] = ("simulator state: the 39-dim MetaWorld observation before each step "
                                      "(reference: the phases are thresholds on quantities it holds)")
            elif feat == "pixels":
                per_task[task] = [pixel_features(d.frames, args.pixel_side) for d in ds]
                feature_desc[feat] = f"frames averaged down to {args.pixel_side}×{args.pixel_side} RGB (no learned features)"
            else:
                per_task[task], feature_desc[feat] = backbone_features(feat, [d.frames for d in ds], args)
        for task, ds in demos.items():
            for i, (d, f) in enumerate(zip(ds, per_task[task])):
                base = {k: v for k, v in bases[task][i].items() if k != "_draws"}
                for method in METHODS:
                    r = evaluate_demo(f, d.phases, bases[task][i], method, args.min_length)
                    rows.append({"task": task, "demo": i, "features": feat, **base, **r})
        timings[feat] = round(time.perf_counter() - t, 2)
        if not args.quiet:
            print(f"features {feat}: {timings[feat]} s", flush=True)

    summary: dict[str, dict[str, Any]] = {}
    for task in args.tasks:
        b = bases[task]
        row: dict[str, Any] = {
            "demos": len(b), "steps": sorted({x["steps"] for x in b}), "frames": [x["frames"] for x in b],
            "random": float(np.mean([x["random_jaccard_mean"] for x in b])),
            "equal": float(np.mean([x["equal_jaccard"] for x in b])),
        }
        for method in METHODS:
            for f in args.features:
                sel = [r for r in rows if r["task"] == task and r["features"] == f and r["method"] == method]
                row[f"{method}/{f}"] = float(np.mean([r["jaccard"] for r in sel]))
                row[f"{method}/{f}/boundary_error"] = float(np.mean([r["boundary_error"] for r in sel]))
        summary[task] = row
    keys = ["random", "equal"] + [f"{m}/{f}" for m in METHODS for f in args.features]
    overall = {k: float(np.mean([summary[t][k] for t in args.tasks])) for k in keys}
    return {
        "benchmark": "perceptual_segmentation",
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "device": "cpu",
        "note": "CPU figures; backbones with random weights unless stated",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": args.threads,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "quiet", "demo_dir")},
        "features": feature_desc,
        "seconds": {"collect_demos": round(t_collect, 1), **timings, "total": round(time.perf_counter() - t0, 1)},
        "summary": summary,
        "overall": overall,
        "demos": rows,
    }


FEATURE_TITLES = {"state": "state (reference)", "pixels": "pixels", "resnet18": "ResNet-18 (random)",
                  "clip": "CLIP (random)"}


def _agreement_table(res: dict[str, Any], method: str, feats: list[str], title: dict[str, str]) -> list[str]:
    lines = [
        "| task | phases | frames | random splits | equal splits | " + " | ".join(title[f] for f in feats) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(feats),
    ]
    for task, row in res["summary"].items():
        fr = row["frames"]
        lines.append(
            f"| {task} | {'/'.join(map(str, row['steps']))} | {min(fr)}–{max(fr)} | {row['random']:.2f} | "
            f"{row['equal']:.2f} | " + " | ".join(f"{row[f'{method}/{f}']:.2f}" for f in feats) + " |"
        )
    ov = res["overall"]
    lines.append("| **mean** | | | " + f"**{ov['random']:.2f}** | **{ov['equal']:.2f}** | "
                 + " | ".join(f"**{ov[f'{method}/{f}']:.2f}**" for f in feats) + " |")
    return lines


def _below_random(res: dict[str, Any], method: str, feats: list[str]) -> dict[str, int]:
    """Per feature, how many demos ``method`` segments with less agreement than random splits' mean."""
    return {f: sum(1 for r in res["demos"] if r["features"] == f and r["method"] == method
                   and r["jaccard"] < r["random_jaccard_mean"]) for f in feats}


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def _versus_baselines(res: dict[str, Any], method: str, feats: list[str], title: dict[str, str]) -> str:
    """One sentence: which features' mean agreement beats random splits, and which beats equal splits."""
    ov = {k: round(v, 2) for k, v in res["overall"].items()}  # compare what the tables show
    above_random = [title[f] for f in feats if ov[f"{method}/{f}"] > ov["random"]]
    below_random = [title[f] for f in feats if ov[f"{method}/{f}"] < ov["random"]]
    above_equal = [title[f] for f in feats if ov[f"{method}/{f}"] > ov["equal"]]
    return (f"Mean over the tasks, above random splits ({ov['random']:.2f}): {_names(above_random)}; "
            f"below: {_names(below_random)}. Above equal splits ({ov['equal']:.2f}): {_names(above_equal)}.")


def _state_sentence(res: dict[str, Any], feats: list[str], title: dict[str, str]) -> str:
    if "state" not in feats:
        return ""
    ov = {k: round(v, 2) for k, v in res["overall"].items()}
    better = [title[f] for f in feats if f != "state" and ov[f"length/{f}"] > ov["length/state"]]
    if not better:
        return "In this run no image feature beat it with the default weighting."
    return f"In this run {', '.join(better)} beat it with the default weighting."


def markdown(res: dict[str, Any]) -> str:
    """The report: settings, the agreement tables for both weightings, what they mean, and the paper."""
    s = res["settings"]
    feats = list(res["features"])
    title = {f: FEATURE_TITLES.get(f, f) for f in feats}
    if s.get("resnet_weights") and "resnet18" in title:
        title["resnet18"] = "ResNet-18"
    if s.get("clip_pretrained") and "clip" in title:
        title["clip"] = "CLIP"
    below = {m: _below_random(res, m, feats) for m in METHODS}
    n_demos = sum(v["demos"] for v in res["summary"].values())
    ov = {k: round(v, 2) for k, v in res["overall"].items()}
    step_worse = [title[f] for f in feats if ov[f"step/{f}"] < ov["random"]]
    random_weights = [title[f] for f in feats if "random weights" in res["features"][f]]

    def below_line(method: str) -> str:
        return ("Demos where the discovered steps agree less than random splits do on average: "
                + ", ".join(f"{title[f]} {below[method][f]}/{n_demos}" for f in feats) + ".")

    lines = [
        "# Perceptual-reward segmentation vs MetaWorld task phases",
        "",
        f"Command: `{res['command']}` ({res['seconds']['total']} s in all, "
        f"{res['seconds']['collect_demos']} s of it recording demos; CPU figures, torch threads {res['torch_threads']}, "
        f"{res['platform']}, load average at the end {', '.join(f'{x:.1f}' for x in res['load_average'] or [])}).",
        "",
        f"{s['demos']} scripted-expert demos per task ({s['size']}² frames, reset seeds {s['seed']}..{s['seed'] + s['demos'] - 1}, "
        f"each ending {s['stop_after_success']} steps after first success). Each demo is split by "
        "`robo_reward.rewards.perceptual.segment_features` into as many steps as it "
        f"has labelled phases, each step at least {s['min_length']} frames, with both of its weightings. "
        "Agreement = mean over the labelled phases "
        "of the best Jaccard index (in frames) with a discovered step (1 = exact).",
        "",
        "Baselines, with the same number of steps per demo: **random splits** (the expectation over "
        f"{s['random_draws']} splits drawn uniformly among those respecting the minimum step length) and "
        "**equal splits** (equal-length steps).",
        "",
        "## Default: `weighting=\"length\"`",
        "",
        "Least within-step feature std averaged over *frames* (each step's std weighted by its length, "
        "cost `Σ_steps n_step · mean_d std_d`), solved exactly by dynamic programming.",
        "",
        *_agreement_table(res, "length", feats, title),
        "",
        _versus_baselines(res, "length", feats, title),
        "",
        below_line("length"),
        "",
        "## Variant: `weighting=\"step\"`",
        "",
        "Least within-step feature std averaged over *steps*, each counting once (cost `Σ_steps mean_d std_d`; "
        "the library's behaviour before `weighting` existed).",
        "",
        *_agreement_table(res, "step", feats, title),
        "",
        _versus_baselines(res, "step", feats, title),
        "",
        below_line("step"),
        "",
        ("With this weighting the mean agreement is below random splits for "
         f"{_names(step_worse)}. " if step_worse else
         "In this run its mean agreement is not below random splits for any feature. ")
        + "The reason: in an unweighted average over steps, a short step placed where the features barely "
        "change costs almost nothing however few frames it covers, so the optimum puts several short steps, "
        "often of the minimum length, in the still stretches — the frames after success for the image features, "
        "the first frames for the state — and lets one long step take the rest of the demo. The per-demo "
        "boundaries are in the JSON file (`found_boundaries`). Weighting each step by its length removes that "
        "degenerate optimum.",
        "",
        "Mean boundary error, frames between the i-th labelled and i-th discovered boundary (length / step):",
        "",
        "| task | " + " | ".join(title[f] for f in feats) + " |",
        "|---|" + "---:|" * len(feats),
    ]
    for task, row in res["summary"].items():
        lines.append(f"| {task} | " + " | ".join(
            f"{row[f'length/{f}/boundary_error']:.1f} / {row[f'step/{f}/boundary_error']:.1f}"
            for f in feats) + " |")
    lines += ["", "## Features", ""]
    lines += [f"- **{title[f]}** — {d}" for f, d in res["features"].items()]
    if random_weights:
        lines += [
            "",
            f"The vision backbones ({', '.join(random_weights)}) have **random weights**: no pretrained weights "
            "could be downloaded on the machine these figures come from (pass `--resnet-weights` / "
            "`--clip-pretrained` to use real ones). Their columns measure what untrained "
            "convolutional/transformer features retain, not what pretrained features do.",
        ]
    lines += [
        "",
        "## Reading the numbers",
        "",
        "- Equal-length splits are a strong baseline where the scripted experts spend similar times in each "
        "phase, and a weak one in drawer-open, whose success phase is short.",
        "- The simulator state is a reference, not a bound, for this objective: its raw dimensions have different "
        "scales (metres, a 0–1 gripper opening) and include ones unrelated to the phases (goal position, previous "
        "frame), and the segmentation looks for steady stretches, not for the thresholds that define the phases. "
        + _state_sentence(res, feats, title),
        "- Phases come from `info` (`near_object`, `grasp_success`, `success`; `robo_reward.offline.demos`). "
        "In drawer-open MetaWorld reports `grasp_success = 1` from the first step, so its demos have two phases "
        "(before and after success); push does not set `grasp_success` before success, so it has three.",
        "",
        "## The paper",
        "",
        f"{PAPER} introduced this segmentation (a recursive search over split points for the least average "
        "within-step feature standard deviation, on features of an ImageNet-pretrained Inception network) and "
        "compared the steps it found in its own real-world videos with human-annotated steps and with random splits. "
        "Its numbers are not quoted here: they could not be checked against the paper's text when this report was "
        "written, and its tasks, features and annotations differ from these.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, write ``<out>.json`` and ``<out>.md``, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["pick-place", "push", "drawer-open", "sweep-into"])
    ap.add_argument("--demos", type=int, default=4, help="demos per task")
    ap.add_argument("--size", type=int, default=96, help="frame size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop-after-success", type=int, default=20)
    ap.add_argument("--min-length", type=int, default=3)
    ap.add_argument("--random-draws", type=int, default=1000)
    ap.add_argument("--features", nargs="+", default=["state", "pixels", "resnet18", "clip"],
                    choices=["state", "pixels", "resnet18", "clip"])
    ap.add_argument("--pixel-side", type=int, default=16)
    ap.add_argument("--resnet-size", type=int, default=112)
    ap.add_argument("--resnet-weights", default=None, help="a local ResNet-18 state-dict file (default: random weights)")
    ap.add_argument("--clip-model", default="ViT-S-32-alt")
    ap.add_argument("--clip-pretrained", default=None, help="open_clip tag or checkpoint (default: random weights)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--demo-dir", default=None, help="reuse/keep demos in this folder")
    ap.add_argument("--out", default="benchmarks/results/perceptual_segmentation")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    res = run(args)
    write_result_files(args.out, res, markdown(res))


if __name__ == "__main__":
    main()

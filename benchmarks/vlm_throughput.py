"""VLM-RM reward frames/s: batched rendering and encoding against scoring one frame per call.

Every mode steps the same Gymnasium vector env of ``--n-envs`` rendered MuJoCo sub-envs
(the task card's camera and size, shadows and reflections off) and scores every frame
with the same CLIP model and prompts; only how frames reach the model differs:

* ``batched`` — ``make_vec_env(card, n, reward="vlm-rm")``: the ``VectorRewardWrapper``
  renders all sub-envs in one call and the plugin encodes their frames in one forward
  pass per step (the library's default, per-step mode);
* ``per_frame`` — the same frames, scored one frame per call (one forward pass each),
  with the same tensor preprocessing and cached text embeddings;
* ``per_frame_pil`` — one frame per call through open_clip's own PIL preprocessing
  transform (the naive way);
* ``accumulated`` — the deferred mode's cost: frames of ``--accumulate`` steps encoded in
  one forward pass (``accumulate × n`` frames).

Frames/s count env stepping, rendering, preprocessing and encoding, per CPU-second of
this process on the CPU (other work on a shared machine then slows no mode) and per
wall-clock second on a GPU. Modes alternate
(ABCD, ABCD, ...) over ``--rounds`` rounds and the median is reported, so drift in
machine load does not favour one of them. Random weights (``--pretrained none``) cost
exactly what the pretrained weights of the same architecture cost.

Usage::

    python benchmarks/vlm_throughput.py [--model ViT-B-32] [--n-envs 8] [--steps 6] [--rounds 3] \\
        [--threads 0] [--out benchmarks/results/vlm_throughput.json]
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

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Frames per CPU-second of this process (all its threads, the renderer's included) on the
# CPU, so that other work on a shared machine slows no mode; wall-clock time on a GPU,
# whose work this process's CPU time does not show. Set in run().
_clock = time.process_time


def _bench_batched(venv, actions: np.ndarray) -> float:
    t0 = _clock()
    n = 0
    for a in actions:
        venv.step(a)
        n += venv.num_envs
    return n / (_clock() - t0)


def _bench_per_frame(venv, plugin, actions: np.ndarray) -> float:
    t0 = _clock()
    n = 0
    for a in actions:
        venv.step(a)
        for frame in venv.render():
            plugin.score(frame)  # one frame, one forward pass
            n += 1
    return n / (_clock() - t0)


def _bench_per_frame_pil(venv, plugin, transform, actions: np.ndarray) -> float:
    import torch
    from PIL import Image

    from robo_reward.rewards.vlm import goal_baseline_reward

    enc = plugin.scorer.encoder
    sc = plugin.scorer
    t0 = _clock()
    n = 0
    for a in actions:
        venv.step(a)
        for frame in venv.render():
            with torch.inference_mode():
                x = transform(Image.fromarray(frame)).unsqueeze(0).to(enc.device, enc.dtype)
                e = enc.model.encode_image(x).float()
                e = e / e.norm(dim=-1, keepdim=True)
                goal_baseline_reward(e, sc.goal, sc.baseline, sc.alpha).cpu().numpy()
            n += 1
    return n / (_clock() - t0)


def _bench_accumulated(venv, plugin, actions: np.ndarray, k: int) -> float:
    t0 = _clock()
    n = 0
    pending: list[np.ndarray] = []
    for i, a in enumerate(actions):
        venv.step(a)
        pending.extend(venv.render())
        if (i + 1) % k == 0 or i == len(actions) - 1:
            plugin.score(np.stack(pending))
            n += len(pending)
            pending = []
    return n / (_clock() - t0)


def _roofline(enc, frame: np.ndarray) -> dict:
    """How fast could any batching make the encoder on this CPU? Its FLOPs per frame against a matmul's FLOP rate.

    The FLOPs of one image-encoder forward pass are counted with torch's FlopCounterMode;
    the FLOP rate is the best of a few 1024 x 1024 fp32 matmuls (per CPU-second, on the
    threads torch uses), a practical peak that a ViT's large matrix products approach at
    big batches. ``bound_frames_per_s`` ignores rendering and preprocessing, so it is an
    upper bound on any mode's frames/s.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = enc.preprocess(frame[None])
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            enc.model.encode_image(x)
        flops = float(fc.get_total_flops())
        a = torch.randn(1024, 1024)
        b = torch.randn(1024, 1024)
        a @ b
        best = float("inf")
        for _ in range(10):
            t0 = _clock()
            a @ b
            best = min(best, _clock() - t0)
    peak = 2 * 1024 ** 3 / best
    return {"encoder_gflop_per_frame": round(flops / 1e9, 3), "matmul_gflops": round(peak / 1e9, 1),
            "bound_frames_per_s": round(peak / flops, 3)}


def run(args: argparse.Namespace) -> dict:
    """Measure every mode and return the results as a dict."""
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    import robo_reward.rewards.vlm  # noqa: F401  (registers vlm-rm)
    from robo_reward.envs import load_card, make_vec_env

    global _clock
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    card = load_card(args.task)
    spec = {"name": "vlm-rm", "model": args.model, "pretrained": args.pretrained, "device": args.device,
            "alpha": args.alpha, "batch_size": max(64, args.n_envs * args.accumulate)}
    batched = make_vec_env(card, args.n_envs, reward=spec, seed=0)
    raw = make_vec_env(card, args.n_envs, seed=0, render_mode="rgb_array")
    plugin = batched.plugin
    enc = plugin.scorer.encoder
    _clock = time.process_time if str(enc.device) == "cpu" else time.perf_counter
    transform = image_transform_v2(PreprocessCfg(**enc.model.visual.preprocess_cfg), is_train=False)
    rng = np.random.default_rng(0)
    shape = (args.steps, args.n_envs, *raw.single_action_space.shape)
    actions = rng.uniform(-1, 1, size=shape).astype(np.float32)
    batched.reset(seed=0)
    raw.reset(seed=0)
    # warm-up: first calls pay for allocator growth, GL contexts and lazy initialisation
    _bench_batched(batched, actions[:1])
    _bench_per_frame(raw, plugin, actions[:1])
    _bench_per_frame_pil(raw, plugin, transform, actions[:1])

    load_before = os.getloadavg()
    res: dict[str, list[float]] = {"batched": [], "per_frame": [], "per_frame_pil": [], "accumulated": []}
    for r in range(args.rounds):
        res["batched"].append(_bench_batched(batched, actions))
        res["per_frame"].append(_bench_per_frame(raw, plugin, actions))
        res["per_frame_pil"].append(_bench_per_frame_pil(raw, plugin, transform, actions))
        res["accumulated"].append(_bench_accumulated(raw, plugin, actions, args.accumulate))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in res.items()), file=sys.stderr)
    load_after = os.getloadavg()
    roof = _roofline(enc, raw.render()[0]) if str(enc.device) == "cpu" else None
    batched.close()
    raw.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    return {
        "task": card.name,
        "render": card.render.model_dump(),
        "n_envs": args.n_envs,
        "model": args.model,
        "pretrained": args.pretrained,
        "weights": enc.weights.source,
        "device": str(enc.device),
        "precision": enc.precision,
        "torch_threads": torch.get_num_threads(),
        "clock": "process CPU time (frames per CPU-second)" if _clock is time.process_time else "wall clock",
        "alpha": args.alpha,
        "steps_per_round": args.steps,
        "frames_per_round": args.steps * args.n_envs,
        "accumulate_steps": args.accumulate,
        "rounds": args.rounds,
        "median_frames_per_s": {k: round(v, 3) for k, v in med.items()},
        "all_frames_per_s": {k: [round(x, 3) for x in v] for k, v in res.items()},
        "ratio_batched_vs_per_frame": round(med["batched"] / med["per_frame"], 3),
        "ratio_batched_vs_per_frame_pil": round(med["batched"] / med["per_frame_pil"], 3),
        "ratio_accumulated_vs_per_frame": round(med["accumulated"] / med["per_frame"], 3),
        "target_ratio_batched_vs_per_frame": 4.0,
        "roofline": roof,
        "ratio_bound_vs_per_frame": None if roof is None else round(roof["bound_frames_per_s"] / med["per_frame"], 3),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mujoco-half-cheetah-v5", help="task card (no early termination keeps batches full)")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=6, help="vector-env steps per mode and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--accumulate", type=int, default=3, help="steps per forward pass in the accumulated mode")
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--pretrained", default="none", help="'none' = random weights (same compute as pretrained)")
    p.add_argument("--device", default="auto")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "vlm_throughput.json")
    args = p.parse_args()
    result = run(args)
    result["command"] = "python " + " ".join(sys.argv)
    result["machine"] = {"python": platform.python_version(), "processor": platform.machine(), "device": result["device"]}
    result["date"] = time.strftime("%Y-%m-%d")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = {}
    if args.out.is_file():
        try:
            existing = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            existing = {}
    runs = existing.get("runs", []) if isinstance(existing, dict) else []
    key = (result["device"], result["model"], result["torch_threads"], result["n_envs"])
    runs = [r for r in runs if (r.get("device"), r.get("model"), r.get("torch_threads"), r.get("n_envs")) != key]
    runs.append(result)
    payload = {"runs": runs}
    if isinstance(existing, dict) and existing.get("notes"):
        payload = {"notes": existing["notes"], "runs": runs}  # notes written by people are kept
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    show = ("device", "torch_threads", "median_frames_per_s", "ratio_batched_vs_per_frame",
            "ratio_batched_vs_per_frame_pil", "ratio_accumulated_vs_per_frame", "roofline",
            "ratio_bound_vs_per_frame", "load_average_1min")
    print(json.dumps({k: result[k] for k in show}, indent=2))


if __name__ == "__main__":
    main()

"""``robo-reward demos collect``, ``robo-reward dataset collect``, ``robo-reward reward fit perceptual|rl-vlm-f``.

Commands that render (``demos collect``, ``dataset collect``) and commands that load
vision models (``reward fit ...``) are separate on purpose: Mesa's EGL and triton, which
torchvision's import pulls in, do not share one process reliably on CPU-only machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.errors import ConfigError, RoboRewardError

console = Console()


def demos_collect_cmd(
    task: str = typer.Argument(..., help="A MetaWorld task card, e.g. metaworld-pick-place-v3."),
    n: int = typer.Option(5, "--n", "-n", help="Number of demos."),
    seed: int = typer.Option(0, help="Demo i resets with seed + i."),
    noise: float = typer.Option(0.0, help="Std of Gaussian noise on the expert's actions."),
    size: Optional[int] = typer.Option(None, help="Square frame size (default: the card's render size)."),
    stop_after_success: int = typer.Option(10, help="End a demo this many steps after first success."),
    out: Path = typer.Option(Path("demos"), "--out", "-o", help="Folder for demo_000.npz, ..."),
) -> None:
    """Record scripted-expert demos (frames, observations, actions, phase labels) as .npz files."""
    from .demos import collect_demos

    try:
        overrides = {"width": size, "height": size} if size else None
        demos = collect_demos(task, n=n, seed=seed, noise=noise, stop_after_success=stop_after_success,
                              render_overrides=overrides)
    except RoboRewardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table = Table("file", "frames", "success", "phase boundaries", title=f"{len(demos)} demos of {task}")
    for i, demo in enumerate(demos):
        path = demo.save(out / f"demo_{i:03d}.npz")
        table.add_row(str(path), str(len(demo.frames)), str(demo.success), str(demo.phase_boundaries))
    console.print(table)


def fit_perceptual_cmd(
    demos: List[Path] = typer.Argument(..., help="Demo videos, frame folders or .npz files."),
    steps: int = typer.Option(3, "--steps", help="Steps to split every demo into."),
    min_length: int = typer.Option(5, help="Shortest allowed step, in frames."),
    top_k: int = typer.Option(32, help="Features kept per step."),
    weighting: str = typer.Option(
        "length", "--weighting", metavar="[length|step]",
        help="How the segmentation averages the within-step feature std: 'length' (over frames, each step "
             "weighted by its length) or 'step' (over steps, each counting once; can put minimum-length "
             "steps in still frames).",
    ),
    kind: str = typer.Option("torchvision", help="Backbone kind: torchvision | clip."),
    model: str = typer.Option("resnet18", help="Backbone model name."),
    pretrained: Optional[str] = typer.Option(
        "default", help="Weights: 'default' (normal download), a local file, or 'none' for random weights."
    ),
    image_size: int = typer.Option(224, help="torchvision input size."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    out: Path = typer.Option(Path("perceptual.npz"), "--out", "-o", help="Where to write the fitted model."),
) -> None:
    """Fit a perceptual reward (Sermanet et al. 2016) on demos and save it for the `perceptual` plugin."""
    from ..rewards.perceptual import SEGMENT_WEIGHTINGS, BackboneSpec, fit_perceptual_reward, load_demo_frames

    weights = None if pretrained is not None and pretrained.lower() in ("none", "null", "random") else pretrained
    try:
        if weighting not in SEGMENT_WEIGHTINGS:
            raise ConfigError(f"--weighting must be one of {', '.join(SEGMENT_WEIGHTINGS)}, got {weighting!r}")
        frames = [load_demo_frames(p) for p in demos]
        spec = BackboneSpec(kind=kind, model=model, pretrained=weights, image_size=image_size)
        fitted = fit_perceptual_reward(frames, n_steps=steps, min_length=min_length, top_k=top_k, backbone=spec,
                                       device=device, weighting=weighting)
        path = fitted.save(out)
    except RoboRewardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"fitted {steps} steps ({weighting} weighting) on {len(frames)} demos -> {path}")
    console.print(f"use it with: --reward \"perceptual:model_path={path}\" (env made with render_mode='rgb_array')")


def dataset_collect_cmd(
    task: str = typer.Argument(..., help="A task card, e.g. metaworld-drawer-open-v3."),
    episodes: int = typer.Option(10, "--episodes", "-n", help="Episodes to record."),
    policy: str = typer.Option(
        "expert", help="expert | noisy:STD | random, or a mixture such as 'expert@0.5+noisy:0.3@0.3+random@0.2'."
    ),
    seed: int = typer.Option(0, help="Seeds the env, the mixture draws and the noise."),
    frames: bool = typer.Option(True, "--frames/--no-frames", help="Store the frame rendered after each step."),
    size: Optional[int] = typer.Option(64, help="Square frame size (0: the card's render size)."),
    max_steps: Optional[int] = typer.Option(None, help="Cut episodes at this many steps (default: the card's limit)."),
    out: Path = typer.Option(Path("dataset.npz"), "--out", "-o", help="Where to write the dataset (.npz)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Record an offline dataset (transitions, info keys and, by default, frames) for relabelling and IQL."""
    from .dataset import collect_dataset

    try:
        overrides = {"width": size, "height": size} if frames and size else None
        ds = collect_dataset(task, n_episodes=episodes, policy=policy, seed=seed, max_steps=max_steps, frames=frames,
                             render_overrides=overrides, progress=progress)
        path = ds.save(out)
    except RoboRewardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    shape = "none" if ds.frames is None else "x".join(map(str, ds.frames.shape[1:]))
    console.print(f"{len(ds)} transitions in {ds.n_episodes} episodes of {task} (frames: {shape}) -> {path}")


def _load_frame_pool(paths: List[Path]) -> tuple:
    """Frames, episode ids, the dataset (when exactly one dataset file was given) and its task, from .npz files."""
    import numpy as np

    from ..core.errors import ConfigError
    from .dataset import load_dataset

    frames, episodes, datasets, task = [], [], [], None
    next_ep = 0
    for p in paths:
        try:
            ds = load_dataset(p)
        except ConfigError:
            ds = None
        if ds is not None:
            if ds.frames is None:
                raise ConfigError(
                    f"{p} holds no frames; collect it with `robo-reward dataset collect ... --frames` "
                    "(frames cannot be re-rendered from MetaWorld observations: they do not hold the full simulator state)"
                )
            frames.append(ds.frames)
            _, ep = np.unique(ds.episode_ids, return_inverse=True)
            episodes.append(ep + next_ep)
            next_ep += int(ep.max()) + 1 if len(ep) else 0
            datasets.append(ds)
            task = task or ds.metadata.get("task")
            continue
        from ..rewards.perceptual import load_demo_frames

        f = load_demo_frames(p)
        frames.append(f)
        episodes.append(np.full(len(f), next_ep, np.int64))
        next_ep += 1
    sizes = {f.shape[1:] for f in frames}
    if len(sizes) != 1:
        raise ConfigError(f"all frames must have one size; got {sorted(sizes)}")
    return (np.concatenate(frames), np.concatenate(episodes), datasets[0] if len(paths) == 1 and datasets else None,
            task)


def fit_rlvlmf_cmd(
    data: List[Path] = typer.Argument(
        ..., help="Offline datasets with frames (robo-reward dataset collect) or demo .npz files / videos / frame folders."
    ),
    labeller: str = typer.Option("clip", "--labeller", "-l", help="clip (CLIP similarity, offline) | llm (a VLM over an API)."),
    queries: int = typer.Option(500, "--queries", "-q", help="Pairs of frames to label."),
    same_episode: bool = typer.Option(False, help="Draw both frames of a pair from one episode."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task card (default: the dataset's)."),
    goal: Optional[str] = typer.Option(
        None, help="llm: the goal phrase after 'The goal is', e.g. 'to open the drawer' (default: from the card)."
    ),
    clip_goal: Optional[List[str]] = typer.Option(None, "--clip-goal", help="clip: goal prompt(s) (default: the card's vlm.goal)."),
    clip_baseline: Optional[List[str]] = typer.Option(None, "--clip-baseline", help="clip: baseline prompt(s)."),
    clip_alpha: float = typer.Option(0.0, "--clip-alpha", help="clip: goal-baseline projection strength."),
    clip_model: str = typer.Option("ViT-B-32", "--clip-model", help="clip: open_clip model name."),
    clip_pretrained: str = typer.Option(
        "laion2b_s34b_b79k", "--clip-pretrained", help="clip: open_clip tag or checkpoint file; 'none' = random (tests)."
    ),
    margin: float = typer.Option(0.1, help="clip: unsure when the scores differ by less than this many score std."),
    backend: Optional[str] = typer.Option(
        None, help="llm: a backend spec, e.g. 'openai:model=...,base_url=...' or 'replay:path=run.jsonl'."
    ),
    base_url: Optional[str] = typer.Option(None, help="llm: server root, e.g. http://127.0.0.1:8000/v1 (vLLM)."),
    model: Optional[str] = typer.Option(None, "--model", help="llm: the VLM's model name on the server."),
    label_model: Optional[str] = typer.Option(None, help="llm: another model (same server) for the text-only labelling query."),
    api_key_env: Optional[str] = typer.Option("OPENAI_API_KEY", help="llm: environment variable with the API key."),
    record: Optional[Path] = typer.Option(None, help="llm: append every request/response to this JSONL (for replays)."),
    replay: Optional[Path] = typer.Option(None, help="llm: answer from this recording instead of a server."),
    cache: Optional[Path] = typer.Option(None, help="Label cache (JSONL; default: next to --out, '<out>.labels.jsonl')."),
    workers: int = typer.Option(4, help="llm: pairs labelled concurrently."),
    both_orders: bool = typer.Option(
        False, "--both-orders/--one-order",
        help="llm: also ask with the images swapped; keep only labels both orders agree on.",
    ),
    image_size: Optional[int] = typer.Option(None, help="llm: resize frames to this square size before sending."),
    detail: Optional[str] = typer.Option(None, help="llm: OpenAI image detail (low | high | auto)."),
    encoder: str = typer.Option("clip", help="Reward-model encoder: clip (frozen CLIP + MLP) | pixels | cnn."),
    encoder_size: Optional[int] = typer.Option(None, help="pixels: side of the averaged image (16); cnn: input side (64)."),
    ensemble: int = typer.Option(3, help="Ensemble members."),
    epochs: int = typer.Option(50, help="Training epochs."),
    batch_size: int = typer.Option(64, help="Pairs per gradient step."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Seeds the pair draws, the weights and the shuffling."),
    device: str = typer.Option("cpu", help="cpu | cuda | auto."),
    out: Path = typer.Option(Path("rlvlmf.pt"), "--out", "-o", help="Where to write the reward model."),
    relabel_out: Optional[Path] = typer.Option(None, help="Also write the dataset relabelled with the learned reward here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Fit an RL-VLM-F reward (Wang et al. 2024): label frame pairs with CLIP or a VLM, train Bradley-Terry, save it."""
    import json

    from ..rewards.rlvlmf import ClipLabeller, EncoderSpec, LLMLabeller, fit_rlvlmf, goal_from_card, relabel_dataset

    pre = None if clip_pretrained.lower() in ("none", "null", "random") else clip_pretrained
    try:
        frames, episode_ids, dataset, data_task = _load_frame_pool(data)
        card = None
        if task or data_task:
            from ..envs import load_card

            card = load_card(task or data_task)
        cache_path = cache if cache is not None else out.with_name(out.stem + ".labels.jsonl")
        if labeller == "clip":
            lab = ClipLabeller(task=card, goal=clip_goal or None, baseline=clip_baseline or None, alpha=clip_alpha,
                               model=clip_model, pretrained=pre, device=device, seed=seed, margin=margin,
                               cache=cache_path)
        elif labeller == "llm":
            from ..llm import OpenAIBackend, ReplayBackend, make_backend

            if replay is not None:
                be = ReplayBackend(replay, model=model)
            elif backend is not None:
                be = make_backend(backend)
            else:
                if not (base_url and model):
                    raise ConfigError("--labeller llm needs --base-url and --model (or --backend, or --replay)")
                be = OpenAIBackend(model, base_url=base_url, api_key_env=api_key_env, record=record)
            label_be = None
            if label_model:
                label_be = (ReplayBackend(replay, model=label_model) if replay is not None else
                            OpenAIBackend(label_model, base_url=base_url or be.base_url, api_key_env=api_key_env,
                                          record=record))
            phrase = goal or (goal_from_card(card) if card is not None else None)
            if not phrase:
                raise ConfigError("--labeller llm needs --goal (or a task card with a vlm section)")
            lab = LLMLabeller(be, phrase, label_backend=label_be, cache=cache_path, workers=workers,
                              image_size=image_size, detail=detail, both_orders=both_orders)
        else:
            raise ConfigError(f"unknown labeller {labeller!r}: use clip or llm")
        spec = EncoderSpec(encoder, model=clip_model, pretrained=pre, seed=seed, size=encoder_size)
        result = fit_rlvlmf(frames, lab, queries, episode_ids=episode_ids, same_episode=same_episode, encoder=spec,
                            ensemble_size=ensemble, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                            device=device, progress=progress)
        path = result.model.save(out)
        summary = {"model": str(path), "cache": str(cache_path), "frames": int(len(frames)), **result.summary()}
        if relabel_out is not None:
            if dataset is None:
                raise ConfigError("--relabel-out needs exactly one offline dataset as input")
            relabelled = relabel_dataset(dataset, result.model, progress=progress)
            summary["relabelled"] = str(relabelled.save(relabel_out))
        out.with_name(out.stem + ".summary.json").write_text(json.dumps(summary, indent=2))
    except RoboRewardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table = Table("queries", "kept", "unsure", "from cache", "asked", "train accuracy", title=f"RL-VLM-F ({labeller})")
    acc = summary["train_accuracy"] or []
    table.add_row(str(summary["queries"]), str(summary["kept"]), str(summary["unsure"]),
                  str(summary["labeller"]["cached"]), str(summary["labeller"]["labelled"]),
                  " ".join(f"{a:.2f}" for a in acc))
    console.print(table)
    console.print(f"reward model -> {path}")
    if "relabelled" in summary:
        console.print(f"relabelled dataset -> {summary['relabelled']}")
    console.print(f'use it with: --reward "rl-vlm-f:path={path}" (env made with render_mode=\'rgb_array\')')


def register(app: typer.Typer) -> None:
    """Add ``demos collect``, ``dataset collect`` and ``reward fit perceptual|rl-vlm-f`` to the ``robo-reward`` app."""
    from ..metrics.cli import _group
    from ..rewards import rlvlmf  # noqa: F401  (registers the rl-vlm-f reward for every command; no torch import)

    demos_app = typer.Typer(name="demos", help="Record demonstrations.", no_args_is_help=True)
    demos_app.command("collect")(demos_collect_cmd)
    app.add_typer(demos_app, name="demos")
    dataset_app = typer.Typer(name="dataset", help="Record offline datasets.", no_args_is_help=True)
    dataset_app.command("collect")(dataset_collect_cmd)
    app.add_typer(dataset_app, name="dataset")
    fit_app = typer.Typer(name="fit", help="Fit a reward from data.", no_args_is_help=True)
    fit_app.command("perceptual")(fit_perceptual_cmd)
    fit_app.command("rl-vlm-f")(fit_rlvlmf_cmd)
    _group(app).add_typer(fit_app, name="fit")

"""``robo-reward demos collect`` and ``robo-reward reward fit perceptual``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.errors import RoboRewardError

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
    from ..rewards.perceptual import BackboneSpec, fit_perceptual_reward, load_demo_frames

    weights = None if pretrained is not None and pretrained.lower() in ("none", "null", "random") else pretrained
    try:
        frames = [load_demo_frames(p) for p in demos]
        spec = BackboneSpec(kind=kind, model=model, pretrained=weights, image_size=image_size)
        fitted = fit_perceptual_reward(frames, n_steps=steps, min_length=min_length, top_k=top_k, backbone=spec,
                                       device=device)
        path = fitted.save(out)
    except RoboRewardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"fitted {steps} steps on {len(frames)} demos -> {path}")
    console.print(f"use it with: --reward \"perceptual:model_path={path}\" (env made with render_mode='rgb_array')")


def register(app: typer.Typer) -> None:
    """Add ``demos collect`` and ``reward fit perceptual`` to the ``robo-reward`` app."""
    from ..metrics.cli import _group

    demos_app = typer.Typer(name="demos", help="Record demonstrations.", no_args_is_help=True)
    demos_app.command("collect")(demos_collect_cmd)
    app.add_typer(demos_app, name="demos")
    fit_app = typer.Typer(name="fit", help="Fit a reward from data.", no_args_is_help=True)
    fit_app.command("perceptual")(fit_perceptual_cmd)
    _group(app).add_typer(fit_app, name="fit")

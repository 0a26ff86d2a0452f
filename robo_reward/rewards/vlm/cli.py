"""``robo-reward vlm score``: score a video or a folder of frames with a CLIP reward, without an env."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .model import DEFAULT_MODEL, DEFAULT_PRETRAINED

vlm_app = typer.Typer(
    name="vlm",
    help="VLM-RM: CLIP rewards from frames (Rocamonde et al. 2023).",
    no_args_is_help=True,
    add_completion=False,
)


@vlm_app.command("score")
def score_cmd(
    path: Path = typer.Argument(..., help="A video file (mp4, gif, ...) or a folder of images (natural name order)."),
    goal: Optional[List[str]] = typer.Option(None, "--goal", "-g", help="Goal prompt; repeat for several (averaged)."),
    baseline: Optional[List[str]] = typer.Option(
        None, "--baseline", "-b", help="Baseline prompt; repeat for several (averaged). Needed for --alpha > 0."
    ),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Take missing prompts from this task card's vlm section."),
    alpha: float = typer.Option(0.0, "--alpha", "-a", help="Goal-baseline projection strength in [0, 1] (0: plain CLIP)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="open_clip model name, hf-hub:org/repo or local-dir:/path."),
    pretrained: str = typer.Option(
        DEFAULT_PRETRAINED, "--pretrained", "-p", help="open_clip tag or checkpoint file; 'none' = random weights (tests)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp16 on CUDA), fp32, fp16, bf16."),
    batch_size: int = typer.Option(64, "--batch-size", help="Frames per forward pass."),
    stride: int = typer.Option(1, "--stride", help="Score every N-th frame."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="Ground truth per scored frame (.npy, or text/CSV: one number per line) for the EPIC distance."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write a plot of reward (vs ground truth) per frame here."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write the per-frame rewards and terms as CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (rewards, terms, evaluation) instead of CSV lines."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Score every frame of PATH against text prompts; print per-frame rewards and optionally plot them."""
    from ...core.errors import RoboRewardError

    try:
        result = _score(
            path, goal, baseline, task, alpha, model, pretrained, device, precision, batch_size, stride, max_frames,
            labels, out, csv_path, progress,
        )
    except RoboRewardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rewards, terms, evaluation = result
    if as_json:
        payload = {
            "path": str(path),
            "n_frames": int(rewards.size),
            "reward": [round(float(v), 6) for v in rewards],
            "terms": {k: [round(float(x), 6) for x in v] for k, v in terms.items()},
            "evaluation": evaluation,
            "plot": str(out) if out else None,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(_csv_text(rewards, terms), nl=False)
    summary = f"# {rewards.size} frames: reward mean {rewards.mean():.4f}, min {rewards.min():.4f}, max {rewards.max():.4f}"
    if evaluation is not None:
        summary += f"; EPIC distance to labels {evaluation['epic_distance']:.4f} (pearson {evaluation['pearson']:.4f})"
    typer.echo(summary)
    if out is not None:
        typer.echo(f"# plot written to {out}")


def _csv_text(rewards, terms) -> str:
    names = list(terms)
    lines = [",".join(["frame", "reward", *names])]
    for i in range(rewards.size):
        lines.append(",".join([str(i), f"{rewards[i]:.6f}", *(f"{terms[k][i]:.6f}" for k in names)]))
    return "\n".join(lines) + "\n"


def _score(path, goal, baseline, task, alpha, model, pretrained, device, precision, batch_size, stride, max_frames,
           labels, out, csv_path, progress):
    from ...core.errors import ConfigError
    from .evaluate import evaluate_reward, plot_reward_vs_ground_truth
    from .recorded import load_labels, score_recorded
    from .reward import VLMRewardModel

    goals = list(goal or [])
    baselines = list(baseline or [])
    if task is not None:
        from ...envs import load_card

        card = load_card(task)
        if card.vlm is None and not goals:
            raise ConfigError(f"task card {card.name!r} has no vlm prompts; pass --goal")
        if card.vlm is not None:
            goals = goals or list(card.vlm.goal)
            baselines = baselines or list(card.vlm.baseline)
    if not goals:
        raise ConfigError("give at least one --goal prompt (or --task CARD with a vlm section)")
    scorer = VLMRewardModel(
        goals, baselines or None, alpha, model=model, pretrained=pretrained, device=device, precision=precision,
        batch_size=batch_size,
    )
    rewards, terms = score_recorded(
        scorer, path, batch_size=batch_size, stride=stride, max_frames=max_frames, progress=progress
    )
    evaluation = None
    truth = None
    if labels is not None:
        truth = load_labels(labels)
        if truth.size != rewards.size:
            raise ConfigError(f"{labels} has {truth.size} values but {rewards.size} frames were scored")
        evaluation = evaluate_reward(rewards, truth).as_dict()
    if out is not None:
        import matplotlib.pyplot as plt

        extra = {"cosine_goal": terms["cosine_goal"]} if alpha > 0 else None
        fig = plot_reward_vs_ground_truth(
            rewards, truth, out, title=f"{Path(path).name}: {goals[0]!r}" + (f" (alpha={alpha:g})" if alpha else ""),
            extra=extra,
        )
        plt.close(fig)
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.write_text(_csv_text(rewards, terms))
    return rewards, terms, evaluation


def register(app: typer.Typer) -> None:
    """Add the ``vlm`` command group (``robo-reward vlm score ...``) to the ``robo-reward`` Typer app."""
    app.add_typer(vlm_app, name="vlm")

"""``robo-reward train`` and ``robo-reward eval``: added to the main CLI by :func:`register`.

Examples::

    robo-reward train --config assets/runs/quickstart.yaml
    robo-reward train --task mujoco-reacher-v5 --agent sac --steps 50000 \\
        --reward "python:fn=robo_reward.rewards.examples:reacher_distance" --out runs/reacher
    robo-reward train --task mujoco-inverted-pendulum-v5 --agent ppo-multicritic \
        --reward "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright" \
        --hp "term_weights={upright: 1.0, centered: 0.5}"   # built-in PPO, one critic per reward term
    robo-reward train --agent iql --dataset data/reach-mixed.npz --steps 100000 \
        --reward "python:path=assets/rewards/metaworld-reach-v3.py"   # offline: relabel, then IQL
    robo-reward train --agent bc --dataset data/reach-mixed.npz --steps 20000     # behaviour cloning
    robo-reward train --resume runs/reacher          # after a kill: continue from the last checkpoint
    robo-reward eval runs/reacher --episodes 50      # writes runs/reacher/eval.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ..core.errors import ConfigError, RoboRewardError


def _parse_overrides(items: list[str] | None) -> dict[str, Any] | None:
    """``["n_steps=512", "policy_kwargs={net_arch: [32, 32]}"]`` → a dict (values parsed as YAML)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ConfigError(f"--hp takes KEY=VALUE (e.g. --hp n_steps=512), got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse the value of --hp {item!r} as YAML: {exc}") from exc
    return out


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci(ci: Any, digits: int = 2) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "—"


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table of a training summary: learned-reward return, GT return, success rate.

    For offline runs (``iql``, ``bc``) the middle column describes the dataset's episodes.
    """
    offline = bool(summary.get("offline"))
    unit = "gradient steps" if offline else "steps"
    table = Table(title=f"{summary['task']} · {summary['agent']} · {summary['timesteps']} {unit} · "
                  f"{summary['train_time_s']:.0f} s ({_fmt(summary.get('steps_per_s'), 0)} {unit}/s)")
    table.add_column("metric")
    n_eps = summary["train"].get("window_episodes", 0)
    table.add_column(f"dataset ({n_eps} episodes)" if offline else f"training (last {n_eps} episodes)",
                     justify="right")
    table.add_column("final evaluation (deterministic)", justify="right")
    tr, ev = summary["train"], summary.get("final_eval") or {}
    table.add_row("learned-reward return", _fmt(tr.get("learned_return")), "—")
    gt_eval = (f"{_fmt(ev.get('return_mean'))} ± {_fmt(ev.get('return_std'))}  95% CI {_ci(ev.get('return_ci'))}"
               if ev else "—")
    table.add_row("ground-truth (env) return", _fmt(tr.get("env_return")), gt_eval)
    succ_eval = (f"{ev['success_rate']:.2f} ({ev['success_count']}/{ev['episodes']})  95% CI {_ci(ev.get('success_ci'))}"
                 if ev else "—")
    table.add_row("success rate (any step)", _fmt(tr.get("success_rate")), succ_eval)
    if ev.get("final_success_rate") is not None:
        table.add_row("success at the last step", "—",
                      f"{ev['final_success_rate']:.2f}  95% CI {_ci(ev.get('final_success_ci'))}")
    return table


def eval_table(result: dict[str, Any]) -> Table:
    """A rich table of an evaluation result."""
    table = Table(title=f"{result['task']} · {result['episodes']} episodes · seed {result['seed']}")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    table.add_column(f"{int(result.get('confidence', 0.95) * 100)}% CI", justify="right")
    table.add_row("ground-truth (env) return", _fmt(result["return_mean"]), _fmt(result["return_std"]),
                  _ci(result.get("return_ci")))
    table.add_row("success rate (any step)", _fmt(result["success_rate"]), "",
                  _ci(result.get("success_ci")) + " (Wilson)")
    if result.get("final_success_rate") is not None:
        table.add_row("success at the last step", _fmt(result["final_success_rate"]), "",
                      _ci(result.get("final_success_ci")) + " (Wilson)")
    table.add_row("episode length", _fmt(result.get("length_mean"), 1), "", "")
    return table


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``eval`` commands to ``app``."""

    @app.command("train")
    def train_cmd(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Run config YAML; flags override it."),
        task: Optional[str] = typer.Option(None, "--task", "-t", help="Task-card name."),
        reward: Optional[str] = typer.Option(
            None, "--reward", "-r", help="Reward spec 'name:k=v,...' ('env' = the env's own reward)."
        ),
        mode: Optional[str] = typer.Option(None, "--mode", help="replace | add | blend | weighted."),
        alpha: Optional[float] = typer.Option(None, "--alpha", help="Plugin weight in blend mode."),
        agent: Optional[str] = typer.Option(
            None, "--agent", "-a",
            help="ppo | sac | td3 (Stable-Baselines3), ppo-native | ppo-multicritic | barfi (built-in), "
                 "iql | bc (offline, need --dataset).",
        ),
        dataset: Optional[str] = typer.Option(
            None, "--dataset", "-d",
            help="Offline dataset for --agent iql | bc: a .npz file or minari:<dataset id>; --reward relabels it.",
        ),
        steps: Optional[int] = typer.Option(
            None, "--steps", "-n", help="Total environment steps (gradient steps for iql and bc)."
        ),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of everything (recorded)."),
        n_envs: Optional[int] = typer.Option(None, "--n-envs", help="Number of sub-environments."),
        vectorization: Optional[str] = typer.Option(
            None, "--vectorization",
            help="sync (default) | simulator: the simulator's own batch (ManiSkill GPU, MuJoCo MJX; built-in agents).",
        ),
        device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/<task>-...)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a killed run from its last checkpoint."),
        video: Optional[bool] = typer.Option(None, "--video/--no-video", help="Record videos/eval.mp4 at the end."),
        eval_episodes: Optional[int] = typer.Option(None, "--eval-episodes", help="Episodes of the final evaluation."),
        eval_freq: Optional[int] = typer.Option(
            None, "--eval-freq", help="Also evaluate every this many steps (0 = never; iql/bc default: steps // 10)."
        ),
        log_freq: Optional[int] = typer.Option(None, "--log-freq", help="Steps between metrics.jsonl lines."),
        checkpoint_freq: Optional[int] = typer.Option(None, "--checkpoint-freq", help="Steps between checkpoints."),
        hp: Optional[list[str]] = typer.Option(
            None, "--hp", help="Agent hyperparameter override KEY=VALUE (repeatable), e.g. --hp n_steps=512."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Train an agent on a task card with a reward plugin (or offline on a dataset); write a run folder."""
        from ..train.config import load_run_config
        from ..train.runner import Runner

        console = Console(stderr=True)
        log = lambda msg: console.print(msg, markup=False, highlight=False)  # noqa: E731
        try:
            if resume is not None:
                given = {k: v for k, v in dict(
                    config=config, task=task, reward=reward, mode=mode, alpha=alpha, agent=agent, steps=steps,
                    seed=seed, n_envs=n_envs, vectorization=vectorization, out=out, video=video,
                    eval_episodes=eval_episodes,
                    checkpoint_freq=checkpoint_freq, hp=hp, dataset=dataset, eval_freq=eval_freq,
                    log_freq=log_freq).items() if v not in (None, [], ())}
                if given:
                    raise ConfigError(
                        f"--resume continues a run with its own config.yaml; drop {', '.join('--' + k.replace('_', '-') for k in given)} "
                        "(only --device may change)"
                    )
                runner = Runner(resume=resume, device=device, progress=progress, log=log)
            else:
                cfg = load_run_config(
                    config,
                    task=task, reward=reward, mode=mode, alpha=alpha, agent=agent, steps=steps, seed=seed,
                    n_envs=n_envs, vectorization=vectorization, device=device,
                    out=str(out) if out is not None else None, video=video,
                    eval_episodes=eval_episodes, checkpoint_freq=checkpoint_freq,
                    agent_overrides=_parse_overrides(hp), dataset=dataset, eval_freq=eval_freq, log_freq=log_freq,
                )
                runner = Runner(cfg, progress=progress, log=log)
            summary = runner.setup().run()
        except RoboRewardError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        out_console = Console()
        out_console.print(summary_table(summary))
        if summary.get("video_error"):
            out_console.print(f"[yellow]video not recorded:[/yellow] {summary['video_error']}", highlight=False)
        out_console.print(f"run folder: {runner.run_dir}", highlight=False, markup=False)

    @app.command("eval")
    def eval_cmd(
        run_dir: Path = typer.Argument(..., help="A run folder written by 'robo-reward train'."),
        episodes: int = typer.Option(20, "--episodes", "-e", help="Number of deterministic episodes."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of episode 0 (default: run seed + 10000)."),
        task: Optional[str] = typer.Option(None, "--task", help="Evaluate on another task card than the run's."),
        device: str = typer.Option("cpu", "--device", help="Device to load the model on."),
        stochastic: bool = typer.Option(False, "--stochastic", help="Sample actions instead of the deterministic ones."),
        output: Optional[Path] = typer.Option(None, "--output", help="Where to write the JSON (default RUN_DIR/eval.json)."),
    ) -> None:
        """Evaluate a run's final model: success rate and ground-truth return with 95% intervals; writes eval.json."""
        from ..train.evaluate import evaluate, write_eval_json

        console = Console()
        try:
            result = evaluate(run_dir, task=task, episodes=episodes, seed=seed, deterministic=not stochastic,
                              device=device, progress=True)
        except RoboRewardError as exc:
            Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        path = output or (run_dir / "eval.json")
        write_eval_json(result, path)
        console.print(eval_table(result))
        console.print(f"wrote {path}", highlight=False, markup=False)

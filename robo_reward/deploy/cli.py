"""``robo-reward export`` and ``robo-reward deploy run|serve-sim``: added to the main CLI by :func:`register`.

Examples::

    robo-reward export runs/reacher --format onnx                 # runs/reacher/export/policy.onnx (+ .json)
    robo-reward export model.zip --task mujoco-reacher-v5 --format torchscript
    robo-reward deploy serve-sim mujoco-reacher-v5 --port 5555    # a simulated robot on 127.0.0.1:5555
    robo-reward deploy run runs/reacher/export/policy.onnx --robot tcp://127.0.0.1:5555 --rate 50 \\
        --safety safety.yaml --log deploy_logs/

``deploy run`` exits with 0 when the run completed, 3 when it was stopped by the
safety layer, a fault or the operator (Ctrl-C), and 2 on bad input.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.errors import RoboRewardError

#: Exit code of ``deploy run`` after a safety stop.
EXIT_SAFETY_STOP = 3


def _fmt_ms(stats: Any, key: str) -> str:
    return "—" if not stats else f"{stats[key]:.3f}"


def timing_table(report: Any) -> Table:
    """A rich table of a run's timing report (milliseconds)."""
    t = report.timing
    table = Table(title=f"timing at {t['rate_hz']:.0f} Hz · {t['cycles']} cycles · "
                        f"{t['deadline_misses']} deadline misses ({t['deadline_miss_pct']:.2f}%)")
    for col in ("", "p50", "p99", "max"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("loop period (ms)", "period_ms"), ("period error (%)", "period_error_pct"),
            ("start lateness (ms)", "start_lateness_ms"), ("policy inference (ms)", "inference_ms"),
            ("observation read (ms)", "observation_ms"), ("action send (ms)", "action_ms")]
    for label, key in rows:
        s = t.get(key)
        table.add_row(label, _fmt_ms(s, "p50"), _fmt_ms(s, "p99"), _fmt_ms(s, "max"))
    return table


def _formats(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip().lower()
            if part in ("both", "all"):
                out += ["onnx", "torchscript"]
            elif part:
                out.append(part)
    return list(dict.fromkeys(out))


def _parse_safe_action(value: str | None) -> Any:
    if value is None:
        return None
    if value in ("zeros", "center", "hold"):
        return value
    try:
        return [float(x) for x in value.split(",")]
    except ValueError:
        raise typer.BadParameter("use zeros, center, hold or comma-separated numbers", param_hint="--safe-action") from None


def register(app: typer.Typer) -> None:
    """Add ``export`` and the ``deploy`` group (``run``, ``serve-sim``) to ``app``."""

    @app.command("export")
    def export_cmd(
        source: Path = typer.Argument(..., help="A run folder, an SB3 model .zip or a built-in PPO checkpoint .pt."),
        fmt: list[str] = typer.Option(["onnx"], "--format", "-f", help="onnx | torchscript | both (repeatable)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN_DIR/export)."),
        task: Optional[str] = typer.Option(None, "--task", "-t", help="Task card (default: the run's)."),
        algo: Optional[str] = typer.Option(None, "--algo", help="SB3 algorithm (default: the run's, or read from the zip)."),
        vecnormalize: Optional[Path] = typer.Option(None, "--vecnormalize", help="SB3 VecNormalize statistics to bake in."),
        samples: int = typer.Option(1000, "--parity-samples", help="Random observations of the parity check."),
        tolerance: float = typer.Option(1e-5, "--tolerance", help="Largest allowed |exported - original| action entry."),
        seed: int = typer.Option(0, "--seed", help="Seed of the parity observations."),
        opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset."),
        exporter: str = typer.Option("auto", "--exporter", help="ONNX exporter: auto | dynamo | legacy."),
    ) -> None:
        """Export a trained policy (deterministic action, normalisation and rescaling inside) with a parity check."""
        from .export import export_policy

        console = Console()
        err = Console(stderr=True)
        try:
            results = export_policy(
                source, out, _formats(fmt), task=task, algo=algo, vecnormalize=vecnormalize,
                parity_samples=samples, tolerance=tolerance, seed=seed, opset=opset, exporter=exporter,
                log=lambda line: err.print(line, markup=False, highlight=False),
            )
        except RoboRewardError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        table = Table(title="exported policies")
        for col in ("file", "format", "max |Δaction|", "control rate", "metadata"):
            table.add_column(col)
        for r in results:
            rate = r.metadata.get("control_rate_hz")
            table.add_row(str(r.path), r.metadata["policy_format"], f"{r.max_abs_diff:.2e}",
                          f"{rate:g} Hz" if rate else "—", str(r.metadata_path))
        console.print(table)

    deploy = typer.Typer(help="Run exported policies on robots (real, networked or simulated).", no_args_is_help=True)

    @deploy.command("run")
    def run_cmd(
        policy: Path = typer.Argument(..., help="An exported policy file (.onnx / .torchscript.pt) or export folder."),
        robot: str = typer.Option(..., "--robot", "-r", help="tcp://HOST:PORT, sim:CARD or gym:ENV_ID."),
        rate: Optional[float] = typer.Option(None, "--rate", help="Control rate in Hz (default: settings, then policy)."),
        steps: Optional[int] = typer.Option(None, "--steps", "-n", help="Steps per episode (default: until it ends)."),
        duration: Optional[float] = typer.Option(None, "--duration", help="Wall-clock limit of the run, seconds."),
        episodes: int = typer.Option(1, "--episodes", "-e", help="Episodes (robots with reset are reset before each)."),
        safety: Optional[Path] = typer.Option(None, "--safety", help="Deploy settings YAML (rate_hz, safety: {...})."),
        task: Optional[str] = typer.Option(None, "--task", help="Task card whose deploy: section to use (default: the policy's)."),
        log_dir: Optional[Path] = typer.Option(None, "--log", help="Folder for episode files, interventions, report."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the first reset (simulated robots)."),
        max_action_rate: Optional[float] = typer.Option(None, "--max-action-rate", help="Rate limit, action units per second."),
        safe_action: Optional[str] = typer.Option(None, "--safe-action", help="zeros | center | hold | v0,v1,..."),
        watchdog: Optional[float] = typer.Option(None, "--watchdog-periods", help="Stop after this many periods without an observation."),
        threads: int = typer.Option(1, "--threads", help="Inference threads."),
        rt_priority: Optional[int] = typer.Option(
            None, "--rt-priority", help="Run the loop with SCHED_FIFO at this priority (1-99; Linux, needs root/CAP_SYS_NICE)."),
    ) -> None:
        """Run an exported policy on a robot at a fixed rate behind the safety layer (Ctrl-C stops safely)."""
        from ..envs import load_card
        from .policy import load_policy
        from .robot import open_robot
        from .runtime import ControlLoop
        from .safety import load_deploy_settings

        console = Console()
        err = Console(stderr=True)
        say = lambda line: err.print(line, markup=False, highlight=False)  # noqa: E731
        try:
            pol = load_policy(policy, threads=threads)
            card = load_card(task) if task else None
            if card is None:  # the card the policy was trained on, if this machine has it
                meta_task = pol.metadata.get("task") or {}
                for ref in (meta_task.get("name"), meta_task.get("source")):
                    if ref:
                        try:
                            card = load_card(ref)
                            break
                        except RoboRewardError:
                            continue
            overrides = {"rate_hz": rate, "safety": {"max_action_rate": max_action_rate,
                                                     "safe_action": _parse_safe_action(safe_action),
                                                     "watchdog_periods": watchdog}}
            settings = load_deploy_settings(card, safety, overrides)
            rob = open_robot(robot)
            loop = ControlLoop(pol, rob, settings=settings, max_steps=steps, duration_s=duration, episodes=episodes,
                               seed=seed, log_dir=log_dir, log=say, realtime_priority=rt_priority)
            say(f"running {policy} on {robot} at {loop.rate_hz:g} Hz (Ctrl-C stops with the safe action)")
            report = loop.run()
        except RoboRewardError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        console.print(timing_table(report))
        for ep in report.episodes:
            ret = "—" if ep["return"] is None else f"{ep['return']:.3f}"
            console.print(f"episode {ep['index']}: {ep['steps']} steps, ended by {ep['end']}, return {ret}",
                          highlight=False, markup=False)
        if report.interventions:
            console.print("interventions: " + ", ".join(f"{k} × {v}" for k, v in sorted(report.interventions.items())),
                          highlight=False, markup=False)
        if report.log_dir:
            console.print(f"logs: {report.log_dir}", highlight=False, markup=False)
        if report.safety_stop:
            err.print(f"[yellow]stopped ({report.stop_reason}):[/yellow] {report.detail}", highlight=False)
            raise typer.Exit(EXIT_SAFETY_STOP)

    @deploy.command("serve-sim")
    def serve_cmd(
        task: str = typer.Argument(..., help="Task card to simulate (name or YAML path)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
        port: int = typer.Option(5555, "--port", "-p", help="Port (0: a free one, printed)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the first episode."),
        fault: Optional[list[str]] = typer.Option(
            None, "--fault", help="Inject a fault: stall@STEP:SECONDS, disconnect@STEP, malformed@STEP:VARIANT, "
                                  "stale@STEP:COUNT, nan@STEP:COUNT (repeatable)."),
        safe_action: Optional[str] = typer.Option(None, "--safe-action", help="Safe action announced to clients (v0,v1,...)."),
        max_episode_steps: Optional[int] = typer.Option(
            None, "--max-episode-steps", help="Override the card's episode length (e.g. long runs for timing)."),
        rt_priority: Optional[int] = typer.Option(
            None, "--rt-priority", help="Serve with SCHED_FIFO at this priority (1-99; Linux, needs root/CAP_SYS_NICE)."),
    ) -> None:
        """Serve a task card's simulated robot over TCP (the deploy protocol) until Ctrl-C."""
        from .sim_server import SimRobotServer

        err = Console(stderr=True)
        say = lambda line: err.print(line, markup=False, highlight=False)  # noqa: E731
        try:
            safe = None
            if safe_action:
                parsed = _parse_safe_action(safe_action)
                if not isinstance(parsed, list):
                    raise typer.BadParameter("give numbers: v0,v1,...", param_hint="--safe-action")
                safe = parsed
            if max_episode_steps is not None and max_episode_steps < 1:
                raise typer.BadParameter("must be >= 1", param_hint="--max-episode-steps")
            server = SimRobotServer.from_card(task, seed=seed, host=host, port=port, faults=fault or (),
                                              safe_action=safe, log=say, max_episode_steps=max_episode_steps)
            server.bind()
        except RoboRewardError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
        token = None
        if rt_priority is not None:
            from .runtime import set_realtime_priority

            token, note = set_realtime_priority(rt_priority)
            say(f"scheduling: {note}")
        typer.echo(f"listening on {server.uri}", err=False)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            if token is not None:
                from .runtime import restore_priority

                restore_priority(token)
            if old is not None:
                signal.signal(signal.SIGTERM, old)
            say("server stopped")

    app.add_typer(deploy, name="deploy")


__all__ = ["EXIT_SAFETY_STOP", "register", "timing_table"]

"""``robo-reward bench``: run benchmark suites and report on them. Added to the main CLI by :func:`register`.

Examples::

    robo-reward bench list                                        # shipped suites
    robo-reward bench show smoke                                  # the grid of a suite, and what is done
    robo-reward bench run smoke --workers 2                       # train every cell (resumable)
    robo-reward bench run benchmarks/suites/mujoco-locomotion.yaml --ray auto
    robo-reward bench report runs/bench/smoke --out report/       # tables, figures, report.md, index.html
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.errors import RoboRewardError


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group to ``app``."""
    bench = typer.Typer(
        name="bench",
        help="Benchmark suites: tasks x rewards x agents x seeds, with honest statistics and reports.",
        no_args_is_help=True,
    )

    def _fail(exc: Exception) -> None:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2)

    @bench.command("list")
    def list_cmd() -> None:
        """List the shipped suites (and those in $ROBO_REWARD_SUITES)."""
        from .suite import list_suites, load_suite

        table = Table("suite", "cells", "steps/run", "description", title="benchmark suites")
        for name, path in list_suites().items():
            try:
                s = load_suite(path)
                n = len(s.cells("runs/bench"))
                table.add_row(name, str(n), str(s.steps), " ".join(s.description.split())[:90])
            except RoboRewardError as exc:
                table.add_row(name, "?", "?", f"[red]invalid:[/red] {str(exc).splitlines()[0]}")
        Console().print(table)

    @bench.command("show")
    def show_cmd(
        suite: str = typer.Argument(..., help="Suite YAML path or shipped suite name."),
        out: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Output folder the suite runs into."),
    ) -> None:
        """Show a suite's cells and which are done, started or new."""
        from .suite import load_suite
        from .worker import cell_state

        try:
            s = load_suite(suite)
            cells = s.cells(out)
        except RoboRewardError as exc:
            _fail(exc)
        table = Table("task", "reward", "agent", "seed", "steps", "state", "run folder",
                      title=f"suite {s.name}: {len(cells)} cells")
        for c in cells:
            state = cell_state(c)
            color = {"done": "green", "partial": "yellow"}.get(state, "white")
            table.add_row(c.task, c.reward, c.agent, str(c.seed), str(c.steps), f"[{color}]{state}[/{color}]",
                          str(c.run_dir))
        Console().print(table)

    @bench.command("run")
    def run_cmd(
        suite: str = typer.Argument(..., help="Suite YAML path or shipped suite name (see 'bench list')."),
        out: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Run folders go to OUT/<suite>/..."),
        workers: Optional[int] = typer.Option(
            None, "--workers", "-w", help="Cells at a time (default: cores / resources.cpus)."
        ),
        ray: Optional[str] = typer.Option(
            None, "--ray", help="Schedule cells as Ray tasks: 'local' (a Ray instance here) or a cluster address."
        ),
        only: Optional[list[str]] = typer.Option(
            None, "--only", help="Run only cells whose id task/reward/agent/seed<k> contains this (repeatable)."
        ),
        report: Optional[Path] = typer.Option(None, "--report", help="Write the report here when all cells are done."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show live progress."),
    ) -> None:
        """Train every cell of a suite that is not done yet (finished cells are skipped, killed ones resumed)."""
        from .runner import run_suite
        from .suite import load_suite

        console = Console(stderr=True)

        def _terminate(signum: int, frame: object) -> None:  # `kill` stops the cells as cleanly as Ctrl-C
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _terminate)
        try:
            s = load_suite(suite)
            outcomes = run_suite(s, out, workers=workers, ray=ray, only=only, progress=progress,
                                 log=lambda m: console.print(m, markup=False, highlight=False))
        except RoboRewardError as exc:
            _fail(exc)
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        console.print(f"suite {s.name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                      + f"; run folders under {Path(out) / s.name}", highlight=False)
        failed = [o for o in outcomes if o.status == "failed"]
        for o in failed:
            console.print(f"[red]failed:[/red] {o.cell.id} (exit {o.returncode}); log: {o.log}", highlight=False)
        if report is not None and not failed:
            from .report import write_report

            info = write_report(Path(out) / s.name, report)
            console.print(f"report: {Path(report) / info['html']}", highlight=False)
        if failed:
            raise typer.Exit(1)

    @bench.command("report")
    def report_cmd(
        runs: list[Path] = typer.Argument(..., help="Folder(s) holding run folders, e.g. runs/bench/smoke."),
        out: Path = typer.Option(Path("report"), "--out", "-o", help="Report folder."),
        reps: int = typer.Option(2000, "--reps", help="Bootstrap resamples per interval."),
        confidence: float = typer.Option(0.95, "--confidence", help="Interval level."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        copy_videos: bool = typer.Option(True, "--copy-videos/--link-videos",
                                         help="Copy evaluation videos into the report (else link to run folders)."),
        title: Optional[str] = typer.Option(None, "--title", help="Page title."),
    ) -> None:
        """Aggregate run folders into tables (CSV), figures (PNG), report.md and a self-contained index.html."""
        from .report import write_report

        try:
            info = write_report(runs, out, reps=reps, confidence=confidence, seed=seed, copy_videos=copy_videos,
                                title=title)
        except RoboRewardError as exc:
            _fail(exc)
        Console().print(
            f"{info['runs']} runs ({info['finished']} finished), {len(info['figures'])} figures, "
            f"{len(info['videos'])} videos\nreport: {out / info['html']}  ·  {out / info['markdown']}",
            highlight=False, markup=False,
        )

    app.add_typer(bench, name="bench")


__all__ = ["register"]

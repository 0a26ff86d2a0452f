"""The ``robo-reward`` command line."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="robo-reward",
    help="Reinforcement learning on Gymnasium tasks with learned or generated rewards.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """Reinforcement learning on Gymnasium tasks with learned or generated rewards."""


@app.command("rewards")
def rewards_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the registered reward plugins (built-in and from entry points)."""
    from .core.registry import list_rewards

    rewards = list_rewards()
    if as_json:
        typer.echo(json.dumps(rewards, indent=2))
        return
    table = Table("reward", "summary", title="reward plugins")
    from rich.markup import escape

    for name, summary in rewards.items():
        table.add_row(name, escape(summary.replace("``", "")))
    console.print(table)


@app.command("doctor")
def doctor_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Check which optional parts can run here (torch build, rendering, simulators, MJX, ...) and what to install."""
    from rich.markup import escape

    from .doctor import report

    rep = report()
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
        return
    table = Table("check", "status", "found / why not", "fix",
                  title=f"robo_reward {rep['robo_reward']} · Python {rep['python']}")
    for c in rep["checks"]:
        table.add_row(c["name"], "[green]ok[/green]" if c["ok"] else "[yellow]missing[/yellow]",
                      escape(c["detail"]), escape(c["fix"]))
    console.print(table)


def _register_subcommands() -> None:
    """Attach the command groups that live next to the code they drive."""
    import importlib

    for module in (
        "robo_reward.envs.cli",
        "robo_reward.agents.cli",
        "robo_reward.rewards.vlm.cli",
        "robo_reward.metrics.cli",
        "robo_reward.rewards.code.cli",
        "robo_reward.deploy.cli",
        "robo_reward.bench.cli",
        "robo_reward.offline.cli",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # that part of the library is not there
            raise
        mod.register(app)


_register_subcommands()


def main() -> None:
    """Entry point of the ``robo-reward`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

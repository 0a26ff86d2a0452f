"""``robo-reward tasks`` and ``robo-reward task-show``: browse the task cards from the command line."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table


def _card_row(card: Any) -> dict[str, Any]:
    return {
        "name": card.name,
        "family": card.family,
        "env_id": card.env_id,
        "env_name": card.env_kwargs.get("env_name"),
        "success": card.success.summary(),
        "obs_dim": card.obs_dim,
        "max_episode_steps": card.max_episode_steps,
        "gym_id": card.gym_id,
    }


def tasks_cmd(
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Only cards of this family (e.g. mujoco, metaworld)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the shipped task cards: name, family, env id, success signal, observation size."""
    from ..core.errors import TaskCardError
    from .cards import FAMILIES, list_cards

    if family is not None and family not in FAMILIES:
        raise typer.BadParameter(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}", param_hint="--family")
    try:
        cards = [c for c in list_cards() if family is None or c.family == family]
    except TaskCardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rows = [_card_row(c) for c in cards]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"task cards ({len(rows)})")
    for col in ("name", "family", "env id", "success signal", "obs dim", "steps"):
        table.add_column(col, overflow="fold")
    for card, r in zip(cards, rows):
        env = r["env_id"] + (f" ({r['env_name']})" if r["env_name"] else "")
        success = r["success"]
        if card.success.predicate is not None:  # the module path is long; the function name says enough
            success = "predicate " + card.success.predicate.rpartition(":")[2]
        table.add_row(
            r["name"], r["family"], escape(env), escape(success), str(r["obs_dim"] or "?"), str(r["max_episode_steps"])
        )
    Console().print(table)


def task_show_cmd(
    name: str = typer.Argument(..., help="Card name (see `robo-reward tasks`) or path of a YAML card."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole card as JSON."),
) -> None:
    """Show one task card: success signal, rendering, VLM prompts and observation fields."""
    from ..core.errors import TaskCardError
    from .cards import load_card

    try:
        card = load_card(name)
    except TaskCardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(card.model_dump(mode="json"), indent=2))
        return
    console = Console()
    r = card.render
    lines = [
        f"[b]family[/b]    {card.family}",
        f"[b]env[/b]       {escape(card.env_id)} {escape(json.dumps(card.env_kwargs)) if card.env_kwargs else ''}",
        f"[b]gym id[/b]    {escape(card.gym_id)}",
        f"[b]episode[/b]   {card.max_episode_steps} steps",
        f"[b]success[/b]   {escape(card.success.summary())}",
    ]
    if card.success.description:
        lines.append(f"            {escape(card.success.description)}")
    cam = r.camera or "(default view)"
    roll = f", rolled {r.camera_roll:g}°" if r.camera_roll else ""
    lines.append(
        f"[b]render[/b]    {r.width}x{r.height}, camera {escape(cam)}{roll}, "
        f"shadows {'on' if r.shadows else 'off'}, reflections {'on' if r.reflections else 'off'}"
    )
    if card.vlm is not None:
        lines.append(f"[b]VLM goal[/b]  {escape(' | '.join(card.vlm.goal))}")
        lines.append(f"[b]baseline[/b]  {escape(' | '.join(card.vlm.baseline))}")
    if card.source is not None:
        lines.append(f"[b]file[/b]      {escape(str(card.source))}")
    console.print(Panel("\n".join(lines), title=card.name, expand=False))
    if card.description:
        console.print(escape(card.description))
    if card.observation:
        table = Table("slice", "name", "units", "meaning", title=f"observation ({card.obs_dim or '?'} dims)")
        for f in card.observation:
            table.add_row(f"[{f.start}:{f.stop}]", f.name, escape(f.units), escape(f.meaning))
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``tasks`` and ``task-show`` commands to the ``robo-reward`` Typer app."""
    app.command("tasks")(tasks_cmd)
    app.command("task-show")(task_show_cmd)

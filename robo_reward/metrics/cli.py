"""``robo-reward reward compare A B --task T``: EPIC, STARC and correlations between two rewards on a task.

Example::

    robo-reward reward compare env "python:fn=robo_reward.rewards.examples:reacher_distance" \\
        --task mujoco-reacher-v5 --states 512

The task's env is rolled out with uniformly random actions; the visited states are
the coverage distribution. STARC (VAL canonicalisation with the uniform policy ``π``,
L2, L2) needs ``c(s, a) = Q^π(s, a) − V^π(s)`` at those states: by default it is
estimated by Monte Carlo rollouts from the restored simulator state (``--method mc``,
no function fitting), or with a fitted ``V^π`` (``--method lstd`` / ``mlp``, which is
fast but depends on the function class). EPIC uses the rollouts as its coverage
distribution; rewards that need the env's own reward or ``info`` exist only on
simulated transitions, so EPIC is reported as unavailable for them. Pearson
correlations are over the simulated transitions, against each other and against the
env's own reward.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.errors import RoboRewardError

#: Name of the shared command group (other parts of the library may add commands to it).
GROUP = "reward"


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.std() < 1e-12 or y.std() < 1e-12:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def compare_rewards(
    reward_a: Any,
    reward_b: Any,
    task: str,
    *,
    n_states: int = 256,
    gamma: float = 0.9,
    method: str = "mc",
    k: int = 1,
    n_mean: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Compute what ``reward compare`` reports; returns a JSON-able dict.

    Args:
        reward_a, reward_b: reward specs (or plugins) for :func:`robo_reward.make_reward`.
        task: a task card name or path (:func:`robo_reward.envs.load_card`).
        n_states: coverage states visited by random rollouts.
        gamma: discount of both distances.
        method: how STARC's ``c(s, a) = Q^π(s, a) − V^π(s)`` is estimated: ``"mc"``
            (Monte Carlo rollouts from restored simulator states, no fitting:
            :func:`~robo_reward.metrics.distances.starc_distance_rollouts`), or ``"lstd"`` /
            ``"mlp"`` (a fitted ``V^π``: :func:`~robo_reward.metrics.distances.starc_distance_sampled`).
        k: next states simulated per state for ``lstd``/``mlp`` (1 for deterministic simulators).
        n_mean: samples per expectation in EPIC's canonicalisation.
        seed: seed of rollouts, actions and fitting.

    Raises:
        RoboRewardError: an unknown task or reward, a reward that cannot be evaluated, an env
            whose state cannot be restored.
    """
    from ..core.errors import ConfigError
    from ..core.registry import make_reward
    from ..envs import load_card, make_env
    from .distances import (
        epic_distance_sampled,
        simulate_env_advantage_rollouts,
        simulate_env_transitions,
        starc_distance_rollouts,
        starc_distance_sampled,
    )

    if method not in ("mc", "lstd", "mlp"):
        raise ConfigError(f"unknown method {method!r}; use mc, lstd or mlp")
    card = load_card(task)
    plugins = [make_reward(r, task=card) for r in (reward_a, reward_b)]
    env = make_env(card, seed=seed)
    try:
        if method == "mc":
            data, coverage = simulate_env_advantage_rollouts(env, n_states, gamma=gamma, seed=seed, progress=progress)
            starc = starc_distance_rollouts(plugins[0], plugins[1], data)
            ra, rb = data.evaluate(plugins[0])[data.alive], data.evaluate(plugins[1])[data.alive]
            env_r = data.env_reward[data.alive]
            detail = {"horizon": data.horizon}
        else:
            sim, coverage = simulate_env_transitions(env, n_states, k=k, seed=seed, progress=progress)
            ra, rb = sim.evaluate(plugins[0]), sim.evaluate(plugins[1])
            starc = starc_distance_sampled(ra, rb, sim, gamma=gamma, value_method=method, seed=seed)
            env_r = sim.env_reward
            detail = {"k": sim.k}
    finally:
        env.close()
    epic: float | None
    epic_note = None
    try:
        epic = epic_distance_sampled(plugins[0], plugins[1], gamma=gamma, transitions=coverage, n_mean=n_mean, seed=seed)
    except RoboRewardError as exc:
        epic, epic_note = None, str(exc)
    names = [r if isinstance(r, str) else (getattr(r, "name", "") or type(r).__name__) for r in (reward_a, reward_b)]
    return {
        "task": card.name,
        "reward_a": str(names[0]),
        "reward_b": str(names[1]),
        "n_states": int(n_states),
        "gamma": gamma,
        "method": method,
        **detail,
        "seed": seed,
        "starc": starc,
        "starc_range": [0.0, 2.0],
        "epic": epic,
        "epic_note": epic_note,
        "pearson_a_b": _pearson(ra, rb),
        "pearson_a_env": None if env_r is None else _pearson(ra, env_r),
        "pearson_b_env": None if env_r is None else _pearson(rb, env_r),
        "n_transitions_correlated": int(np.asarray(ra).size),
    }


def compare_cmd(
    reward_a: str = typer.Argument(..., help="First reward spec (e.g. env, 'python:fn=mod:func')."),
    reward_b: str = typer.Argument(..., help="Second reward spec."),
    task: str = typer.Option(..., "--task", "-t", help="Task card name (see `robo-reward tasks`) or YAML path."),
    states: int = typer.Option(256, "--states", "-n", help="Coverage states visited by random rollouts."),
    gamma: float = typer.Option(
        0.9, "--gamma", help="Discount of the distances (mc rollouts last until γ^H <= 0.01: 44 steps at 0.9, 459 at 0.99)."
    ),
    method: str = typer.Option(
        "mc", "--method", help="STARC's estimator: mc (Monte Carlo rollouts, no fitting), lstd or mlp (fitted V^π)."
    ),
    k: int = typer.Option(1, "--k", help="lstd/mlp: next states simulated per state (1 for deterministic simulators)."),
    seed: int = typer.Option(0, "--seed", help="Seed of rollouts, actions and fitting."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compare two rewards on a task: STARC and EPIC distances and Pearson correlations."""
    try:
        res = compare_rewards(
            reward_a, reward_b, task, n_states=states, gamma=gamma, method=method, k=k, seed=seed,
            progress=not as_json,
        )
    except RoboRewardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return

    def fmt(x: Optional[float]) -> str:
        return "—" if x is None else f"{x:.3f}"

    table = Table(title=f"{escape(res['reward_a'])}  vs  {escape(res['reward_b'])}  on {res['task']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    table.add_row("STARC", fmt(res["starc"]), "0 = same up to shaping and scale, √2 ≈ unrelated, 2 = opposite")
    table.add_row("EPIC", fmt(res["epic"]), "0 = same up to shaping and scale, 1 = opposite")
    table.add_row("Pearson(A, B)", fmt(res["pearson_a_b"]), f"on {res['n_transitions_correlated']} simulated transitions")
    table.add_row("Pearson(A, env)", fmt(res["pearson_a_env"]), "against the env's own reward")
    table.add_row("Pearson(B, env)", fmt(res["pearson_b_env"]), "against the env's own reward")
    console = Console()
    console.print(table)
    how = (
        f"4 Monte Carlo rollouts of {res['horizon']} steps each"
        if res["method"] == "mc"
        else f"{res['k']} simulated next state(s) each, V^π fitted by {res['method']}"
    )
    console.print(f"{res['n_states']} coverage states from random rollouts, {how}; γ = {res['gamma']}, seed {res['seed']}")
    if res["epic_note"]:
        console.print(f"EPIC not available: {escape(res['epic_note'])}")


def _group(app: typer.Typer) -> typer.Typer:
    """The ``reward`` sub-app of ``app``, created if no other module has added it yet."""
    from typer.models import DefaultPlaceholder

    for info in app.registered_groups:
        name = info.name
        if isinstance(name, DefaultPlaceholder) or name is None:
            sub = info.typer_instance
            name = getattr(getattr(sub, "info", None), "name", None)
            if isinstance(name, DefaultPlaceholder):
                name = name.value
        if name == GROUP and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(name=GROUP, help="Work with reward functions (compare, ...).", no_args_is_help=True)
    app.add_typer(sub, name=GROUP)
    return sub


def register(app: typer.Typer) -> None:
    """Add ``reward compare`` to the ``robo-reward`` Typer app (sharing the ``reward`` group if it exists)."""
    _group(app).command("compare")(compare_cmd)

"""``robo-reward reward generate | refine | search``: LLM-written reward code from the command line.

Examples (any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio)::

    robo-reward reward generate --task mujoco-reacher-v5 --few-shot 2 \\
        --model qwen2.5-coder --base-url http://127.0.0.1:8000/v1 --library rewards/reacher
    robo-reward reward refine v0002 --library rewards/reacher \\
        --feedback "it circles the target; slow down near it" --model qwen2.5-coder --base-url ...
    robo-reward reward search --task mujoco-reacher-v5 --method icpl --rounds 3 --samples 4 \\
        --steps 20000 --select human --model ... --library rewards/reacher

The LLM is named by ``--model`` / ``--base-url`` / ``--api-key-env`` (the key is read from
that environment variable), by a backend spec ``--llm "openai:model=...,base_url=..."``,
or answered from a recording with ``--replay FILE``; ``--record FILE`` writes every
exchange (with token counts) for later replay. Every version goes into the ``--library``
folder; train on one with ``robo-reward train --reward code:path=<library>/<version>``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ...core.errors import ConfigError, RoboRewardError

#: Default reward-library folder (relative to the working directory).
DEFAULT_LIBRARY = "reward_library"

_LLM = typer.Option(None, "--llm", help="LLM backend spec, e.g. 'openai:model=gpt-4o-mini' (see robo_reward.llm.make_backend).")
_MODEL = typer.Option(None, "--model", "-m", help="Model name on the OpenAI-compatible server.")
_BASE_URL = typer.Option(
    "https://api.openai.com/v1", "--base-url", help="API root of the server, e.g. http://127.0.0.1:8000/v1 (vLLM)."
)
_KEY_ENV = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key (none sent if unset).")
_REPLAY = typer.Option(None, "--replay", help="Answer from this recorded JSONL file instead of a server.")
_RECORD = typer.Option(None, "--record", help="Append every request/response (with token counts) to this JSONL file.")
_TEMPERATURE = typer.Option(None, "--temperature", help="Sampling temperature (server default if unset).")
_MAX_TOKENS = typer.Option(None, "--max-tokens", help="Most completion tokens per answer.")
_TIMEOUT = typer.Option(120.0, "--timeout", help="Seconds to wait for each LLM answer.")
_LIBRARY = typer.Option(DEFAULT_LIBRARY, "--library", "-l", help="Reward-library folder (created if missing).")
_MAX_FIXES = typer.Option(2, "--max-fixes", help="Times rejected code goes back to the LLM with the critic's findings.")
_CRITIC_LLM = typer.Option(False, "--critic-llm/--no-critic-llm", help="Also let the LLM review code the checks accept.")
_SEED = typer.Option(0, "--seed", help="Seed of the critic's rollouts and of training.")
_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


def make_llm(
    llm: Optional[str] = None,
    model: Optional[str] = None,
    base_url: str = "https://api.openai.com/v1",
    api_key_env: Optional[str] = "OPENAI_API_KEY",
    replay: Optional[Path] = None,
    record: Optional[Path] = None,
    temperature: Optional[float] = None,
    max_tokens: Optional[int] = None,
    timeout: float = 120.0,
) -> Any:
    """Build the LLM backend from the command-line options (see the module docstring).

    Raises:
        ConfigError: no model, spec or replay file given, or conflicting options.
    """
    from ...llm import OpenAIBackend, ReplayBackend, make_backend

    defaults = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens}.items() if v is not None}
    if replay is not None:
        if llm is not None:
            raise ConfigError("give either --replay or --llm, not both")
        return ReplayBackend(replay, model=model, defaults=defaults)
    if llm is not None:
        extra: dict[str, Any] = {}
        if record is not None:
            extra["record"] = str(record)
        if defaults:
            extra["defaults"] = defaults
        return make_backend(llm, **extra)
    if not model:
        raise ConfigError(
            "name the LLM: --model NAME (with --base-url for a local server), --llm SPEC, or --replay FILE"
        )
    return OpenAIBackend(model, base_url=base_url, api_key_env=api_key_env or None, record=record,
                         defaults=defaults, timeout_s=timeout)


def _short(finding: dict[str, Any], width: int = 60) -> str:
    """A finding in one short line for the table (the whole text is in the version's critic.json)."""
    msg = re.sub(r"^reward code \S+ in \S+: ", "", finding["message"].splitlines()[0])
    msg = re.sub(r"`[^`]*`", "`…`", msg)  # the code line itself is in critic.json
    text = (f"line {finding['line']}: " if finding.get("line") else "") + msg
    return text if len(text) <= width else text[: width - 1] + "…"


def _versions_table(result: Any, title: str) -> Table:
    table = Table(title=title)
    for col in ("version", "parent", "status", "success", "task return", "first problem"):
        table.add_column(col)
    seen: set[str] = set()
    lib = result.library
    for cand in result.candidates:
        for v in lib.lineage(cand.version):
            if v.id in seen:
                continue
            seen.add(v.id)
            v = lib.get(v.id)
            crit = v.critic() or {}
            errs = [f for f in crit.get("findings", []) if f.get("severity") == "error"]
            problem = _short(errs[0]) if errs else ""
            m = v.metrics() or {}
            sr = m.get("success_rate")
            gt = m.get("env_return")
            table.add_row(v.id, v.parent or "", v.status, "" if sr is None else f"{sr:.2f}",
                          "" if gt is None else f"{gt:.3g}", escape(problem))
    return table


def _report(result: Any, as_json: bool, title: str) -> None:
    best = result.best
    payload = {
        "best": best.id if best else None,
        "best_path": str(best.path) if best else None,
        "spec": best.spec_string if best else None,
        "library": str(result.library.root),
        "versions": [c.version.id for c in result.candidates],
        "rounds": result.rounds,
        "usage": result.usage,
    }
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        console = Console()
        console.print(_versions_table(result, title))
        if best is not None:
            console.print(f"[bold]{best.id}[/bold] ({best.path})", soft_wrap=True)
            console.print(f"train on it:  robo-reward train --task {best.task} --reward {escape(best.spec_string)}",
                          soft_wrap=True)
        else:
            console.print("[red]no version passed the critic[/red]; see critic.json in the version folders")
        if result.usage:
            u = result.usage
            console.print(f"LLM: {u['requests']} requests, {u['prompt_tokens']} prompt + {u['completion_tokens']} "
                          f"completion tokens, ${u['cost_usd']:.4f}")
    if best is None:
        raise typer.Exit(2)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1) from None


def generate_cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task card name (see `robo-reward tasks`) or YAML path."),
    few_shot: int = typer.Option(0, "--few-shot", "-k", help="Examples of similar tasks to show (0 = zero-shot)."),
    examples: Optional[Path] = typer.Option(None, "--examples", help="Folder of example reward programs (default: shipped)."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="An extra instruction for the LLM."),
    library: Path = _LIBRARY,
    max_fixes: int = _MAX_FIXES,
    critic_llm: bool = _CRITIC_LLM,
    seed: int = _SEED,
    llm: Optional[str] = _LLM,
    model: Optional[str] = _MODEL,
    base_url: str = _BASE_URL,
    api_key_env: str = _KEY_ENV,
    replay: Optional[Path] = _REPLAY,
    record: Optional[Path] = _RECORD,
    temperature: Optional[float] = _TEMPERATURE,
    max_tokens: Optional[int] = _MAX_TOKENS,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
) -> None:
    """Text2Reward: have the LLM write a dense reward for TASK (zero- or few-shot), checked by the critic."""
    from .loops import generate

    try:
        client = make_llm(llm, model, base_url, api_key_env, replay, record, temperature, max_tokens, timeout)
        result = generate(task, client, library, few_shot=few_shot, examples_dir=examples, instruction=instruction,
                          max_fixes=max_fixes, critic_llm=critic_llm, seed=seed,
                          log=(lambda m: None) if as_json else (lambda m: typer.echo(m, err=True)))
    except RoboRewardError as exc:
        _fail(exc)
    _report(result, as_json, f"generate: {task}")


def refine_cmd(
    version: str = typer.Argument(..., help="The version to refine: an id (v0003) or a version folder."),
    feedback: str = typer.Option(..., "--feedback", "-f", help="What the trained policy should do differently, in words."),
    library: Optional[Path] = typer.Option(
        None, "--library", "-l", help=f"Reward-library folder (default: the version folder's parent, else {DEFAULT_LIBRARY})."
    ),
    max_fixes: int = _MAX_FIXES,
    critic_llm: bool = _CRITIC_LLM,
    seed: int = _SEED,
    llm: Optional[str] = _LLM,
    model: Optional[str] = _MODEL,
    base_url: str = _BASE_URL,
    api_key_env: str = _KEY_ENV,
    replay: Optional[Path] = _REPLAY,
    record: Optional[Path] = _RECORD,
    temperature: Optional[float] = _TEMPERATURE,
    max_tokens: Optional[int] = _MAX_TOKENS,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
) -> None:
    """Text2Reward refinement: revise a reward version from free-text feedback on the trained behaviour."""
    from .library import RewardLibrary
    from .loops import refine

    if library is None:
        p = Path(version)
        library = p.parent if p.is_dir() else Path(DEFAULT_LIBRARY)
    try:
        lib = RewardLibrary(library, create=False)
        client = make_llm(llm, model, base_url, api_key_env, replay, record, temperature, max_tokens, timeout)
        result = refine(version, feedback, client, lib, max_fixes=max_fixes, critic_llm=critic_llm, seed=seed,
                        log=(lambda m: None) if as_json else (lambda m: typer.echo(m, err=True)))
    except RoboRewardError as exc:
        _fail(exc)
    _report(result, as_json, f"refine: {version}")


def search_cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task card name or YAML path."),
    method: str = typer.Option("icpl", "--method", help="icpl (K samples per round, ranked) or auto-mc (designer/critic/analyser)."),
    rounds: int = typer.Option(3, "--rounds", "-r", help="ICPL rounds, or Auto MC-Reward iterations."),
    samples: int = typer.Option(4, "--samples", "-k", help="ICPL: reward functions per round."),
    steps: int = typer.Option(20_000, "--steps", help="Training steps per candidate."),
    select: str = typer.Option(
        "success", "--select", help="ICPL ranking: success (success rate), oracle (ground-truth return) or human (you, from videos)."
    ),
    oracle_noise: float = typer.Option(0.0, "--oracle-noise", help="Oracle: chance of swapping each neighbouring pair."),
    threshold: float = typer.Option(0.8, "--threshold", help="Auto MC-Reward: stop at this success rate."),
    start: Optional[str] = typer.Option(None, "--start", help="Auto MC-Reward: start from this library version."),
    analyser_llm: bool = typer.Option(False, "--analyser-llm/--no-analyser-llm", help="Auto MC-Reward: the LLM also explains failures."),
    few_shot: int = typer.Option(0, "--few-shot", help="Examples of similar tasks in the first prompt."),
    agent: str = typer.Option("ppo", "--agent", help="ppo, sac or td3 (Stable-Baselines3)."),
    n_envs: int = typer.Option(4, "--n-envs", help="Sub-environments per training run."),
    hp: Optional[List[str]] = typer.Option(None, "--hp", help="Agent hyperparameter KEY=VALUE (repeatable)."),
    eval_episodes: int = typer.Option(5, "--eval-episodes", help="Deterministic episodes of each trained policy."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    library: Path = _LIBRARY,
    max_fixes: int = _MAX_FIXES,
    critic_llm: Optional[bool] = typer.Option(
        None, "--critic-llm/--no-critic-llm", help="LLM review of accepted code (default: on for auto-mc, off for icpl)."
    ),
    seed: int = _SEED,
    llm: Optional[str] = _LLM,
    model: Optional[str] = _MODEL,
    base_url: str = _BASE_URL,
    api_key_env: str = _KEY_ENV,
    replay: Optional[Path] = _REPLAY,
    record: Optional[Path] = _RECORD,
    temperature: Optional[float] = _TEMPERATURE,
    max_tokens: Optional[int] = _MAX_TOKENS,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
) -> None:
    """Search for a reward by training on candidates: ICPL (ranked samples) or Auto MC-Reward (analyse and revise)."""
    from ...agents.cli import _parse_overrides
    from .loops import auto_mc_reward, default_trainer, icpl, make_selector

    log = (lambda m: None) if as_json else (lambda m: typer.echo(m, err=True))
    try:
        if method not in ("icpl", "auto-mc"):
            raise ConfigError(f"unknown --method {method!r}; use icpl or auto-mc")
        client = make_llm(llm, model, base_url, api_key_env, replay, record, temperature, max_tokens, timeout)
        selector = make_selector(select, noise=oracle_noise, seed=seed)
        trainer = default_trainer(agent=agent, n_envs=n_envs, agent_overrides=_parse_overrides(hp),
                                  eval_episodes=eval_episodes, video=selector.needs_video, progress=not as_json,
                                  device=device)
        common = dict(steps=steps, seed=seed, trainer=trainer, few_shot=few_shot, max_fixes=max_fixes, log=log)
        if method == "icpl":
            result = icpl(task, client, library, rounds=rounds, samples=samples, selector=selector,
                          critic_llm=bool(critic_llm), **common)
        else:
            result = auto_mc_reward(task, client, library, iterations=rounds, success_threshold=threshold, start=start,
                                    critic_llm=True if critic_llm is None else critic_llm, analyser_llm=analyser_llm,
                                    **common)
    except RoboRewardError as exc:
        _fail(exc)
    _report(result, as_json, f"search ({method}): {task}")


def register(app: typer.Typer) -> None:
    """Add ``reward generate``, ``reward refine`` and ``reward search`` to the ``robo-reward`` app (sharing the ``reward`` group)."""
    from ...metrics.cli import _group

    group = _group(app)
    group.command("generate")(generate_cmd)
    group.command("refine")(refine_cmd)
    group.command("search")(search_cmd)


__all__ = ["DEFAULT_LIBRARY", "generate_cmd", "make_llm", "refine_cmd", "register", "search_cmd"]

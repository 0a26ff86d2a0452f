"""Benchmark suites: a grid of tasks × rewards × agents × seeds, read from YAML.

A suite file (``benchmarks/suites/*.yaml``)::

    name: smoke                      # folder name under the output directory
    description: ...
    tasks:                           # task-card names, or mappings with per-task settings
      - mujoco-reacher-v5
      - {name: mujoco-half-cheetah-v5, steps: 1000000, run: {n_envs: 8}}
    rewards:                         # label -> reward spec ("env" = the env's own reward)
      env: env
      distance: "python:fn=robo_reward.rewards.examples:reacher_distance"
      t2r:                           # a reward that differs per task: tasks not listed skip it
        by_task:
          metaworld-reach-v3: "python:fn=my_rewards:reach"
    agents: [ppo, sac]               # or a mapping agent -> hyperparameter overrides
    seeds: 5                         # 0..4, or an explicit list [0, 1, 7]
    steps: 200000
    eval_episodes: 10                # final deterministic evaluation (ground truth)
    alignment_episodes: 3            # rollouts to correlate the learned reward with the ground truth
    run: {n_envs: 4, log_freq: 2000} # any other `robo-reward train` setting, for every cell
    resources: {cpus: 1, gpus: 0}    # per cell: Ray requests, and how the local pool is sized

Every combination is a *cell*, trained as its own run folder
``<out>/<suite>/<task>/<reward>/<agent>/seed<k>`` with the same files as
``robo-reward train`` writes. Agent names are data: whatever ``robo-reward train
--agent`` accepts is valid here. Every cell's run config is validated when the suite is
loaded, so a typo fails before anything trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import ConfigError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
#: Run-config keys a suite sets itself (per cell), not through ``run:``.
_CELL_KEYS = ("task", "reward", "agent", "seed", "steps", "eval_episodes", "out", "run_dir", "agent_overrides",
              "overrides", "library_version", "resolved")
SUITE_DIR_ENV = "ROBO_REWARD_SUITES"


def _safe_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SAFE.match(value):
        raise ValueError(
            f"{what} {value!r} must start with a letter or digit and contain only letters, digits and _ . + - "
            "(it names a folder)"
        )
    return value


class TaskEntry(BaseModel):
    """One task of a suite, with optional per-task settings that override the suite's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    steps: int | None = Field(None, gt=0)
    eval_episodes: int | None = Field(None, ge=0)
    run: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _safe_name(v, "task name")


class Resources(BaseModel):
    """What one cell needs: CPU cores and GPUs (fractions allowed, as in Ray)."""

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class Suite(BaseModel):
    """A validated suite (see the module docstring for the YAML format)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    tasks: list[TaskEntry] = Field(min_length=1)
    rewards: dict[str, Any] = Field(min_length=1)
    agents: dict[str, dict[str, Any]] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    steps: int = Field(gt=0)
    eval_episodes: int = Field(10, ge=0)
    alignment_episodes: int = Field(3, ge=0)
    run: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    source: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _safe_name(v, "suite name")

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, v: Any) -> Any:
        if not isinstance(v, list):
            raise ValueError("tasks must be a list of task-card names or {name: ..., steps: ..., run: {...}} mappings")
        out = [{"name": t} if isinstance(t, str) else t for t in v]
        names = [t.get("name") if isinstance(t, Mapping) else None for t in out]
        dup = sorted({n for n in names if n is not None and names.count(n) > 1})
        if dup:
            raise ValueError(f"tasks listed twice: {dup}")
        return out

    @field_validator("rewards", mode="before")
    @classmethod
    def _rewards(cls, v: Any) -> Any:
        if isinstance(v, list):  # a list of specs: label them by their spec
            v = {reward_label(spec): spec for spec in v}
        if not isinstance(v, Mapping):
            raise ValueError("rewards must map a label to a reward spec, e.g. {env: env, dist: 'python:fn=m:f'}")
        for label, spec in v.items():
            _safe_name(str(label), "reward label")
            if isinstance(spec, Mapping) and "by_task" in spec:
                if set(spec) != {"by_task"} or not isinstance(spec["by_task"], Mapping):
                    raise ValueError(f"reward {label!r}: a per-task reward is {{by_task: {{task: spec, ...}}}} only")
        return {str(k): v_ for k, v_ in v.items()}

    @field_validator("agents", mode="before")
    @classmethod
    def _agents(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            v = {a: {} for a in v}
        if not isinstance(v, Mapping):
            raise ValueError("agents must be a list of agent names or a mapping agent -> hyperparameter overrides")
        out = {}
        for name, overrides in v.items():
            _safe_name(str(name), "agent name")
            if overrides is not None and not isinstance(overrides, Mapping):
                raise ValueError(f"agent {name!r}: overrides must be a mapping of hyperparameters")
            out[str(name)] = dict(overrides or {})
        return out

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise ValueError("seeds: a count must be >= 1")
            return list(range(v))
        if isinstance(v, list):
            if len(set(v)) != len(v):
                raise ValueError(f"seeds listed twice: {v}")
            return v
        raise ValueError("seeds must be a count (5 means 0..4) or a list of seeds")

    @field_validator("run")
    @classmethod
    def _run(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) & set(_CELL_KEYS))
        if bad:
            raise ValueError(
                f"{bad} are set by the suite itself (tasks, rewards, agents, seeds, steps, eval_episodes; "
                "agent hyperparameters go under agents: {name: {...}})"
            )
        return v

    # ------------------------------------------------------------------ the grid
    def reward_for(self, label: str, task: str) -> tuple[bool, Any]:
        """``(applies, spec)`` of reward ``label`` on ``task`` (per-task rewards skip unlisted tasks)."""
        spec = self.rewards[label]
        if isinstance(spec, Mapping) and "by_task" in spec:
            by = spec["by_task"]
            return (task in by, by.get(task))
        return True, spec

    def cells(self, out: str | Path) -> list["Cell"]:
        """Every cell of the grid, in task, reward, agent, seed order, with run folders under ``out/<name>``."""
        from ..envs import load_card
        from ..train.config import make_run_config

        root = Path(out) / self.name
        cells: list[Cell] = []
        for task in self.tasks:
            load_card(task.name)  # TaskCardError (a ConfigError) lists the known cards
            for label in self.rewards:
                applies, spec = self.reward_for(label, task.name)
                if not applies:
                    continue
                for agent, overrides in self.agents.items():
                    for seed in self.seeds:
                        config = {
                            **self.run,
                            **task.run,
                            "task": task.name,
                            "reward": spec,
                            "agent": agent,
                            "agent_overrides": dict(overrides),
                            "seed": int(seed),
                            "steps": int(task.steps or self.steps),
                            "eval_episodes": int(self.eval_episodes if task.eval_episodes is None
                                                 else task.eval_episodes),
                        }
                        where = f" (suite {self.name!r}, task {task.name}, reward {label}, agent {agent}, seed {seed})"
                        checked = make_run_config(config, source=where)  # fails early on a typo
                        config["reward"] = checked.reward  # normalised ("env" -> None)
                        cells.append(
                            Cell(
                                suite=self.name,
                                task=task.name,
                                reward=label,
                                agent=agent,
                                seed=int(seed),
                                config=config,
                                run_dir=root / task.name / label / agent / f"seed{seed}",
                                alignment_episodes=self.alignment_episodes if checked.reward is not None else 0,
                                cpus=self.resources.cpus,
                                gpus=self.resources.gpus,
                            )
                        )
        if not cells:
            raise ConfigError(f"suite {self.name!r} has no cells (no reward applies to any of its tasks)")
        return cells


@dataclass
class Cell:
    """One run of a suite: a task, a reward (by label), an agent and a seed.

    Attributes:
        config: the ``robo-reward train`` run config (without ``out``).
        run_dir: the run folder.
        alignment_episodes: evaluation rollouts on which to correlate the learned reward
            with the ground truth (0: none; always 0 for the env reward itself).
        cpus, gpus: resources it asks for.
    """

    suite: str
    task: str
    reward: str
    agent: str
    seed: int
    config: dict[str, Any]
    run_dir: Path
    alignment_episodes: int = 0
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def id(self) -> str:
        """``task/reward/agent/seed<k>``."""
        return f"{self.task}/{self.reward}/{self.agent}/seed{self.seed}"

    @property
    def steps(self) -> int:
        """Training steps of the cell's run."""
        return int(self.config["steps"])

    def to_json(self) -> dict[str, Any]:
        """What ``bench_cell.json`` in the run folder holds."""
        return {
            "suite": self.suite,
            "task": self.task,
            "reward": self.reward,
            "agent": self.agent,
            "seed": self.seed,
            "config": self.config,
            "run_dir": str(self.run_dir),
            "alignment_episodes": self.alignment_episodes,
            "cpus": self.cpus,
            "gpus": self.gpus,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Cell":
        """Rebuild a cell from what :meth:`to_json` wrote."""
        d = dict(data)
        d["run_dir"] = Path(d["run_dir"])
        return cls(**d)


def reward_label(spec: Any) -> str:
    """A short, folder-safe label for a reward spec (``python:fn=m:reacher_distance`` -> ``reacher_distance``)."""
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "env", "none", "null")):
        return "env"
    if isinstance(spec, Mapping):
        name = str(spec.get("name", "reward"))
        fn = spec.get("fn")
        text = str(fn).rsplit(":", 1)[-1].rsplit(".", 1)[-1] if fn else name
    else:
        s = str(spec)
        name, _, args = s.partition(":")
        m = re.search(r"fn=[^,]*?[:.]([A-Za-z_][A-Za-z0-9_]*)\s*(?:,|$)", args)
        text = m.group(1) if m else (name + ("-" + args if args else ""))
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "reward"
    return text[:60]


# ----------------------------------------------------------------------------- loading


def suite_dirs() -> list[Path]:
    """Folders searched for a suite given by name: ``$ROBO_REWARD_SUITES`` (``:``-separated), then the shipped ones."""
    import os

    dirs = [Path(p) for p in os.environ.get(SUITE_DIR_ENV, "").split(os.pathsep) if p]
    pkg = Path(__file__).resolve().parent.parent
    dirs += [pkg / "_data" / "benchmarks" / "suites", pkg.parent / "benchmarks" / "suites"]
    return [d for d in dirs if d.is_dir()]


def list_suites() -> dict[str, Path]:
    """Shipped (and ``$ROBO_REWARD_SUITES``) suites by name."""
    out: dict[str, Path] = {}
    for d in suite_dirs():
        for p in sorted(d.glob("*.yaml")):
            out.setdefault(p.stem, p)
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"  {loc}: required")
        else:
            lines.append(f"  {loc}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid suite{source}:\n" + "\n".join(lines)


def suite_from_dict(data: Any, source: str | None = None) -> Suite:
    """Validate a suite mapping; :class:`ConfigError` lists every problem."""
    where = f" ({source})" if source else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a suite must be a mapping{where}, got {type(data).__name__}")
    try:
        return Suite.model_validate({**dict(data), "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where)) from None


def load_suite(name_or_path: str | Path) -> Suite:
    """Load a suite from a YAML path, or by name from :func:`suite_dirs` (``smoke``, ``mujoco-locomotion``, ...).

    Raises:
        ConfigError: no such file or suite, malformed YAML, or an invalid suite.
    """
    p = Path(name_or_path)
    if not p.is_file():
        known = list_suites()
        key = p.stem if p.suffix in (".yaml", ".yml") and len(p.parts) == 1 else str(name_or_path)
        if key not in known:
            raise ConfigError(
                f"no suite file {str(name_or_path)!r} and no shipped suite of that name; shipped: "
                f"{', '.join(sorted(known)) or '(none found)'}"
            )
        p = known[key]
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML in {p}: {exc}") from exc
    return suite_from_dict(data, str(p))


__all__ = ["Cell", "Resources", "Suite", "TaskEntry", "list_suites", "load_suite", "reward_label", "suite_from_dict",
           "suite_dirs"]

"""The run configuration: what to train, with which reward and agent, for how long.

A :class:`RunConfig` is read from YAML (:func:`load_run_config`), overridden by
command-line flags, and written back, resolved, into the run folder's ``config.yaml``.
Unknown keys are errors (they are usually typos), reported as :class:`ConfigError`.

Example ``run.yaml``::

    task: mujoco-inverted-pendulum-v5
    reward: "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright"
    agent: ppo
    steps: 60000
    seed: 0
    agent_overrides: {n_steps: 512}

The built-in multi-critic PPO takes its critics and their weights from the overrides::

    agent: ppo-multicritic
    agent_overrides: {critic_terms: [upright, centered], term_weights: {upright: 1.0, centered: 0.5}}

Offline agents (``iql``, ``bc``) learn from a dataset; ``steps`` counts gradient steps,
``task`` defaults to the task recorded in the dataset, and the reward (if any) relabels
the dataset before training::

    agent: iql
    dataset: data/reach-mixed.npz
    reward: "python:path=assets/rewards/metaworld-reach-v3.py"
    steps: 100000
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.registry import get_reward_entry, parse_spec

#: The offline agents (learn from ``dataset``); kept in step with ``robo_reward.train.offline``.
OFFLINE_AGENTS = ("iql", "bc")
#: Agents that can train on a simulator's own batch (``vectorization: simulator``).
SIMULATOR_AGENTS = ("ppo-native", "ppo-multicritic", "barfi")

#: Reward spec values that mean "train on the environment's own reward".
ENV_REWARD_SPECS = (None, "env")


class RunConfig(BaseModel):
    """Everything that defines a training run. Unknown keys are rejected.

    Attributes:
        task: task-card name (see ``robo-reward envs``), e.g. ``mujoco-reacher-v5``.
        reward: reward spec string (``"name:k=v"``) or mapping (``{name: ..., k: v}``);
            ``None`` or ``"env"`` trains on the environment's own reward.
        mode: how the plugin reward meets the env reward: ``replace`` (plugin only),
            ``add`` (plugin + env), ``blend`` (``alpha*plugin + (1-alpha)*env``) or
            ``weighted`` (``weights[0]*plugin + weights[1]*env``).
        alpha: plugin weight in ``blend`` mode (default 0.5); only valid with ``blend``.
        weights: ``[plugin_weight, env_weight]``; only valid (and required) with ``weighted``.
        agent: ``ppo``, ``sac`` or ``td3`` (Stable-Baselines3; presets in ``agents/<agent>.yaml``),
            or a built-in agent: ``ppo-native`` (robo_reward's PPO, one critic),
            ``ppo-multicritic`` (one critic per reward term, SLIM; presets in
            ``agents/ppo-native.yaml``) or ``barfi`` (bilevel blending of the env reward
            with the plugin's terms; ``agents/barfi.yaml``).
            Offline agents: ``iql`` (Implicit Q-Learning, ``agents/iql.yaml``) and ``bc``
            (behaviour cloning, ``agents/bc.yaml``), which need ``dataset``.
        dataset: the offline dataset of ``iql``/``bc`` runs: a robo_reward ``.npz`` file
            or ``minari:<dataset id>`` (only valid with those agents). With a ``reward``,
            the dataset is relabelled with it (combined with the stored env reward by ``mode``).
        agent_overrides: hyperparameters merged over the preset (``overrides`` also accepted).
        steps: total environment steps to train for (across all sub-envs; PPO rounds up
            to whole rollouts); gradient steps for the offline agents.
        seed: the seed of everything (sub-env ``i`` is seeded ``seed + i``).
        n_envs: number of sub-environments (an SB3 ``DummyVecEnv``, or a Gymnasium
            ``SyncVectorEnv`` for the built-in agents; at most 256, or 65536 with
            ``vectorization: simulator``).
        vectorization: ``sync`` (one env per sub-env, stepped in turn) or ``simulator``:
            the simulator's own batch (ManiSkill's GPU simulation, MuJoCo MJX; see
            :func:`~robo_reward.envs.make_vec_env`), for the built-in online agents
            (``ppo-native``, ``ppo-multicritic``, ``barfi``). Evaluation episodes still
            run on the card's CPU env, the ground truth.
        device: ``auto``, ``cpu`` or ``cuda``.
        torch_threads: ``torch.set_num_threads`` for the run. ``None``: 1 when training on
            the CPU (the small MLP policies of state-based tasks train fastest on one
            thread, and more threads only fight the simulator), torch's default on a GPU.
        eval_episodes: episodes of the final deterministic evaluation (0 = none).
        eval_freq: also evaluate every this many steps during training (0 = never). Offline
            agents, which see no episodes while they train, default to ten evaluations
            per run (``steps // 10``) when it is not given.
        checkpoint_freq: save a resumable checkpoint every this many steps (0 = only at the end).
        log_freq: write a ``metrics.jsonl`` line every this many steps.
        video: record ``videos/eval.mp4`` of one deterministic episode at the end.
        video_max_steps: cap on the video's length in steps (``None``: a whole episode).
        out: the run folder (``run_dir`` also accepted); ``None``: ``runs/<task>-<agent>-s<seed>-<time>``.
        library_version: robo_reward version that wrote the config (filled in by the runner).
        resolved: facts the runner resolved (hyperparameters, env id, versions); informational,
            recomputed on every run.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    task: str = Field(min_length=1)
    reward: str | dict[str, Any] | None = None
    mode: Literal["replace", "add", "blend", "weighted"] = "replace"
    alpha: float | None = Field(None, ge=0.0, le=1.0)
    weights: list[float] | None = None
    agent: Literal["ppo", "sac", "td3", "ppo-native", "ppo-multicritic", "barfi", "iql", "bc"] = "ppo"
    dataset: str | None = None
    agent_overrides: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("agent_overrides", "overrides")
    )
    steps: int = Field(100_000, gt=0)
    seed: int = Field(0, ge=0)
    n_envs: int = Field(1, ge=1, le=65536)
    vectorization: Literal["sync", "simulator"] = "sync"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(None, ge=1)
    eval_episodes: int = Field(10, ge=0)
    eval_freq: int = Field(0, ge=0)
    checkpoint_freq: int = Field(10_000, ge=0)
    log_freq: int = Field(1_000, gt=0)
    video: bool = True
    video_max_steps: int | None = Field(None, gt=0)
    out: str | None = Field(None, validation_alias=AliasChoices("out", "run_dir"))
    library_version: str | None = None
    resolved: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _offline_defaults(cls, data: Any) -> Any:
        """Offline runs: the task from the dataset's metadata, ten periodic evaluations by default."""
        if not isinstance(data, Mapping):
            return data
        agent = data.get("agent")
        if not (isinstance(agent, str) and agent.strip().lower() in OFFLINE_AGENTS):
            return data
        data = dict(data)
        if not data.get("task") and isinstance(data.get("dataset"), str):
            from .offline import dataset_task

            task = dataset_task(data["dataset"])
            if task:
                data["task"] = task
        if data.get("eval_freq") is None:
            steps = data.get("steps", cls.model_fields["steps"].default)
            if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
                data["eval_freq"] = max(1, steps // 10)
        return data

    @field_validator("agent", mode="before")
    @classmethod
    def _lower_agent(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("reward", mode="before")
    @classmethod
    def _check_reward(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip() in ("", "env", "none", "null")):
            return None
        if isinstance(v, str):
            name, _ = parse_spec(v)  # raises ConfigError on a malformed spec
        elif isinstance(v, Mapping):
            if "name" not in v:
                raise ValueError(f"a reward mapping needs a 'name' key, got keys {sorted(v)}")
            name = v["name"]
        else:
            raise ValueError("reward must be a spec string, a mapping with 'name', or null")
        get_reward_entry(name)  # raises UnknownRewardError listing the registered rewards
        return v

    @model_validator(mode="after")
    def _check_mix(self) -> "RunConfig":
        from ..wrappers.mixing import resolve_mode

        resolve_mode(self.mode, self.alpha, self.weights)  # ConfigError says what is wrong
        if self.agent in OFFLINE_AGENTS and not self.dataset:
            raise ConfigError(f"agent {self.agent!r} learns offline: give it a dataset (--dataset PATH.npz or "
                              "minari:<dataset id>)")
        if self.dataset and self.agent not in OFFLINE_AGENTS:
            raise ConfigError(f"dataset only applies to the offline agents ({', '.join(OFFLINE_AGENTS)}), "
                              f"not to {self.agent!r}")
        if self.vectorization == "simulator" and self.agent not in SIMULATOR_AGENTS:
            raise ConfigError(f"vectorization 'simulator' trains the built-in online agents "
                              f"({', '.join(SIMULATOR_AGENTS)}), not {self.agent!r}")
        if self.vectorization == "sync" and self.n_envs > 256:
            raise ConfigError(f"n_envs={self.n_envs}: more than 256 sub-envs need vectorization 'simulator' "
                              "(one batched simulation on a GPU)")
        return self

    @property
    def reward_spec(self) -> str | dict[str, Any]:
        """The reward spec to build (``"env"`` when training on the env reward)."""
        return "env" if self.reward is None else self.reward

    @property
    def uses_env_reward(self) -> bool:
        """True when the run trains on the environment's own reward."""
        return self.reward is None

    def to_yaml_dict(self) -> dict[str, Any]:
        """A plain dict for writing to YAML (every field, including defaults)."""
        return self.model_dump(mode="json")


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    fields = ", ".join(sorted(RunConfig.model_fields))
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key; valid keys: {fields}")
        elif err["type"] == "missing":
            lines.append(f"  {loc}: required")
        else:
            msg = err["msg"]
            if err["type"] == "literal_error":
                msg = msg.replace("Input should be", "should be")
            lines.append(f"  {loc}: {msg} (got {err.get('input')!r})")
    return f"invalid run config{source}:\n" + "\n".join(lines)


def make_run_config(data: Mapping[str, Any], *, source: str = "") -> RunConfig:
    """Validate ``data`` into a :class:`RunConfig`, raising :class:`ConfigError` with every problem listed."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a run config must be a mapping, got {type(data).__name__}{source}")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        # a ConfigError raised inside a validator (e.g. an unknown reward) comes back verbatim
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, ConfigError):
                where = ".".join(str(p) for p in err["loc"])
                raise ConfigError(f"invalid run config{source}: {where + ': ' if where else ''}{ctx_err}") from None
        raise ConfigError(_format_validation_error(exc, source)) from None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; :class:`ConfigError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML in {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of run settings, not a {type(data).__name__}")
    return data


def load_run_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Load a run config from YAML (optional) and apply ``overrides`` on top.

    Overrides whose value is ``None`` are ignored, so command-line flags that were not
    given leave the YAML values alone. ``agent_overrides`` given here are merged over
    the YAML ones key by key.

    Raises:
        ConfigError: the file is missing or malformed, or a value is invalid.
    """
    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    if "overrides" in data and "agent_overrides" not in data:
        data["agent_overrides"] = data.pop("overrides")
    if "run_dir" in data and "out" not in data:
        data["out"] = data.pop("run_dir")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "agent_overrides" and isinstance(data.get("agent_overrides"), dict):
            data["agent_overrides"] = {**data["agent_overrides"], **value}
        else:
            data[key] = value
    return make_run_config(data, source=f" ({path})" if path is not None else "")


def write_run_config(config: RunConfig, path: str | Path) -> None:
    """Write ``config`` as YAML to ``path`` (atomically: a kill never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    tmp.replace(path)

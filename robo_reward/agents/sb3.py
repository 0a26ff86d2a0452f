"""Stable-Baselines3 agents built from the shipped YAML presets (``agents/<algo>.yaml``).

A preset file has a ``default`` block of constructor arguments and optional blocks
named after task families (``mujoco``, ``metaworld``, ...). The hyperparameters of a
run are ``default`` ← ``<family>`` ← the run's overrides, merged key by key
(``policy_kwargs`` too). Everything is validated against the SB3 constructor and
policy signatures, so a typo fails before training starts with the valid keys listed.

YAML-friendly spellings that :func:`make_model` converts:

* ``activation_fn: tanh`` (also ``relu``, ``elu``, ``leaky_relu``, ``gelu``, ``silu``);
* ``learning_rate: lin_3e-4`` (and any other schedule argument): linear decay to 0;
* ``train_freq: [1, episode]`` → the tuple SB3 expects;
* ``action_noise: {type: normal, sigma: 0.1}`` (``ornstein-uhlenbeck`` too), sigma as a
  fraction of the half-range of the action space.
"""

from __future__ import annotations

import copy
import inspect
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from ..core.errors import ConfigError, require
from ..paths import data_dir

#: The agent names a run config may use, and the SB3 class each maps to.
ALGORITHMS: dict[str, str] = {"ppo": "PPO", "sac": "SAC", "td3": "TD3"}

#: Agents that learn from a replay buffer (saved next to their checkpoints).
OFF_POLICY: frozenset[str] = frozenset({"sac", "td3"})

# Constructor arguments the runner sets itself, or that cannot be written in YAML.
_MANAGED = frozenset(
    {"self", "env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model",
     "rollout_buffer_class", "replay_buffer_class"}
)
_POLICY_MANAGED = frozenset({"self", "observation_space", "action_space", "lr_schedule"})
_SCHEDULE_KEYS = frozenset({"learning_rate", "clip_range", "clip_range_vf"})
_ACTIVATIONS = {
    "tanh": "Tanh",
    "relu": "ReLU",
    "elu": "ELU",
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
    "silu": "SiLU",
}
_NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
_PRESET_META_KEYS = frozenset({"algorithm", "description", "default"})


def list_agents() -> list[str]:
    """Return the agent names that have a preset (``["ppo", "sac", "td3"]``)."""
    return sorted(ALGORITHMS)


def is_off_policy(agent: str) -> bool:
    """Whether ``agent`` keeps a replay buffer (SAC, TD3)."""
    return _check_agent(agent) in OFF_POLICY


def _check_agent(agent: str) -> str:
    name = str(agent).strip().lower()
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown agent {agent!r}; valid agents: {', '.join(list_agents())}")
    return name


def algorithm_class(agent: str) -> type:
    """Return the Stable-Baselines3 class for ``agent`` (``"ppo"`` → ``stable_baselines3.PPO``)."""
    name = _check_agent(agent)
    sb3 = require("stable_baselines3", "sb3", f"the {name} agent")
    return getattr(sb3, ALGORITHMS[name])


def preset_path(agent: str) -> Path:
    """Path of the shipped preset file for ``agent``."""
    return data_dir("agents") / f"{_check_agent(agent)}.yaml"


@lru_cache(maxsize=None)
def _allowed_keys(agent: str) -> frozenset[str]:
    cls = algorithm_class(agent)
    params = inspect.signature(cls.__init__).parameters
    return frozenset(k for k in params if k not in _MANAGED) | {"policy"}


@lru_cache(maxsize=None)
def _allowed_policy_keys(agent: str, policy: str) -> frozenset[str] | None:
    cls = algorithm_class(agent)
    pol = cls.policy_aliases.get(policy)
    if pol is None:
        return None
    names: set[str] = set()
    var_kw = False
    for klass in pol.__mro__:  # subclasses pass **kwargs up; collect the whole chain
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind == p.VAR_KEYWORD:
                var_kw = True
            elif p.name not in _POLICY_MANAGED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
        if not var_kw:
            break
        var_kw = False
    return frozenset(names)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k == "policy_kwargs":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def validate_hyperparameters(agent: str, params: Mapping[str, Any], where: str = "hyperparameters") -> None:
    """Raise :class:`ConfigError` if ``params`` has keys ``agent`` does not accept.

    Checks the top-level keys against the SB3 constructor, ``policy`` against the
    algorithm's policy names, ``policy_kwargs`` against the policy's constructor, and the
    YAML spellings (activation names, schedules, action noise).
    """
    name = _check_agent(agent)
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where} for {name} must be a mapping, got {type(params).__name__}")
    allowed = _allowed_keys(name)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown {name} hyperparameter(s) {unknown} in {where}; valid keys: {', '.join(sorted(allowed))}"
        )
    policy = params.get("policy", "MlpPolicy")
    cls = algorithm_class(name)
    if policy not in cls.policy_aliases:
        raise ConfigError(
            f"unknown policy {policy!r} for {name} in {where}; valid policies: {', '.join(sorted(cls.policy_aliases))}"
        )
    pk = params.get("policy_kwargs")
    if pk is not None:
        if not isinstance(pk, Mapping):
            raise ConfigError(f"policy_kwargs in {where} must be a mapping, got {type(pk).__name__}")
        pallowed = _allowed_policy_keys(name, policy)
        if pallowed is not None:
            bad = sorted(set(pk) - pallowed)
            if bad:
                raise ConfigError(
                    f"unknown policy_kwargs {bad} for {name} {policy} in {where}; "
                    f"valid keys: {', '.join(sorted(pallowed))}"
                )
        act = pk.get("activation_fn")
        if act is not None and (not isinstance(act, str) or act.lower() not in _ACTIVATIONS):
            raise ConfigError(
                f"activation_fn {act!r} in {where} is not known; use one of: {', '.join(_ACTIVATIONS)}"
            )
    for key in _SCHEDULE_KEYS & set(params):
        _schedule(params[key], key, where)  # raises on a bad spelling
    if "action_noise" in params:
        _check_noise(params["action_noise"], where)


def _schedule(value: Any, key: str, where: str) -> Any:
    if isinstance(value, str):
        if value.startswith("lin_"):
            try:
                start = float(value[4:])
            except ValueError:
                raise ConfigError(f"{key}={value!r} in {where}: write 'lin_<number>', e.g. 'lin_3e-4'") from None

            def linear(progress_remaining: float, _start: float = start) -> float:
                return progress_remaining * _start

            return linear
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} in {where}: give a number or 'lin_<number>'") from None
    if value is None and key == "clip_range_vf":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} in {where}: give a number or 'lin_<number>'")
    return float(value)


def _check_noise(spec: Any, where: str) -> None:
    if spec is None:
        return
    if not isinstance(spec, Mapping) or spec.get("type") not in _NOISE_TYPES:
        raise ConfigError(
            f"action_noise in {where} must be null or {{type: {' | '.join(_NOISE_TYPES)}, sigma: float}}, got {spec!r}"
        )
    extra = set(spec) - {"type", "sigma"}
    if extra:
        raise ConfigError(f"action_noise in {where} has unknown keys {sorted(extra)}; valid: type, sigma")
    sigma = spec.get("sigma", 0.1)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
        raise ConfigError(f"action_noise sigma in {where} must be a number >= 0, got {sigma!r}")


def read_preset(agent: str) -> dict[str, Any]:
    """Read and validate the whole preset file of ``agent`` (every block).

    Returns the file as a dict (``algorithm``, ``description``, ``default``, families).

    Raises:
        ConfigError: unknown agent, malformed file or unknown keys in any block.
    """
    name = _check_agent(agent)
    path = preset_path(name)
    if not path.is_file():
        raise ConfigError(f"the preset file for agent {name!r} is missing ({path}); reinstall robo_reward")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse agent preset {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("default"), dict):
        raise ConfigError(f"agent preset {path} needs a mapping with a 'default' block")
    if data.get("algorithm", name) != name:
        raise ConfigError(f"agent preset {path} says algorithm {data['algorithm']!r}, expected {name!r}")
    for block, params in data.items():
        if block in ("algorithm", "description"):
            continue
        if not isinstance(params, dict):
            raise ConfigError(f"block {block!r} of agent preset {path} must be a mapping")
        validate_hyperparameters(name, _merge(data["default"], params), where=f"{path.name} [{block}]")
    return data


def preset_families(agent: str) -> list[str]:
    """Task families that have their own block in ``agent``'s preset."""
    return sorted(k for k in read_preset(agent) if k not in _PRESET_META_KEYS)


def load_preset(
    agent: str, task_family: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the resolved hyperparameters: ``default`` ← ``task_family`` block ← ``overrides``.

    A family without a block of its own gets the defaults. The result is plain YAML
    data (what a run records in its ``config.yaml``); :func:`make_model` turns it into
    constructor arguments.

    Raises:
        ConfigError: unknown agent or unknown keys (the message lists the valid ones).
    """
    name = _check_agent(agent)
    data = read_preset(name)
    params = copy.deepcopy(data["default"])
    if task_family and task_family in data and task_family not in _PRESET_META_KEYS:
        params = _merge(params, data[task_family])
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"agent overrides must be a mapping, got {type(overrides).__name__}")
        params = _merge(params, overrides)
    validate_hyperparameters(name, params, where="agent overrides" if overrides else f"{name} preset")
    return params


def _constructor_kwargs(agent: str, params: Mapping[str, Any], action_space: Any) -> dict[str, Any]:
    kwargs = copy.deepcopy(dict(params))
    for key in _SCHEDULE_KEYS & set(kwargs):
        kwargs[key] = _schedule(kwargs[key], key, "hyperparameters")
    pk = kwargs.get("policy_kwargs")
    if pk:
        pk = dict(pk)
        if isinstance(pk.get("activation_fn"), str):
            import torch.nn as nn

            pk["activation_fn"] = getattr(nn, _ACTIVATIONS[pk["activation_fn"].lower()])
        kwargs["policy_kwargs"] = pk
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if "action_noise" in kwargs:
        kwargs["action_noise"] = _make_noise(kwargs["action_noise"], action_space)
    return kwargs


def _make_noise(spec: Mapping[str, Any] | None, action_space: Any) -> Any:
    if spec is None:
        return None
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    shape = action_space.shape
    low, high = np.asarray(action_space.low, dtype=np.float64), np.asarray(action_space.high, dtype=np.float64)
    half = np.where(np.isfinite(high - low), (high - low) / 2.0, 1.0)
    sigma = float(spec.get("sigma", 0.1)) * half * np.ones(shape)
    mean = np.zeros(shape)
    if spec["type"] == "normal":
        return NormalActionNoise(mean=mean, sigma=sigma)
    return OrnsteinUhlenbeckActionNoise(mean=mean, sigma=sigma)


def make_model(
    agent: str,
    venv: Any,
    *,
    task_family: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    device: str = "auto",
    tensorboard_log: str | Path | None = None,
    verbose: int = 0,
    hyperparameters: Mapping[str, Any] | None = None,
) -> Any:
    """Build an untrained SB3 model for ``venv`` from the preset of ``agent``.

    Args:
        agent: ``"ppo"``, ``"sac"`` or ``"td3"``.
        venv: an SB3 ``VecEnv`` (or a Gymnasium env, which SB3 wraps).
        task_family: selects the preset block merged over ``default`` (e.g. ``"mujoco"``).
        overrides: hyperparameters that win over the preset.
        seed: seeds Python, NumPy, torch, the action space and the env.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tensorboard_log: folder for TensorBoard event files (``None``: no TensorBoard).
        verbose: SB3 verbosity.
        hyperparameters: already-resolved hyperparameters (from :func:`load_preset`);
            when given, ``task_family`` and ``overrides`` are not looked at.

    Raises:
        ConfigError: unknown agent or hyperparameters.
    """
    name = _check_agent(agent)
    if hyperparameters is None:
        params = load_preset(name, task_family, overrides)
    else:
        params = dict(hyperparameters)
        validate_hyperparameters(name, params)
    cls = algorithm_class(name)
    kwargs = _constructor_kwargs(name, params, venv.action_space)
    policy = kwargs.pop("policy", "MlpPolicy")
    return cls(
        policy,
        venv,
        seed=seed,
        device=device,
        tensorboard_log=str(tensorboard_log) if tensorboard_log is not None else None,
        verbose=verbose,
        **kwargs,
    )


def load_model(agent: str, path: str | Path, env: Any = None, device: str = "auto", **kwargs: Any) -> Any:
    """Load a saved SB3 model of ``agent`` from ``path`` (a ``.zip``), optionally bound to ``env``.

    Raises:
        ConfigError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no saved model at {path}")
    return algorithm_class(agent).load(str(path), env=env, device=device, **kwargs)

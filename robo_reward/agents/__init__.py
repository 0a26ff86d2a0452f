"""Agents: the built-in ones (modules beside this file), Stable-Baselines3 models built
from the YAML presets in ``agents/`` (:mod:`robo_reward.agents.sb3`), and the
``train``/``eval`` commands (:mod:`robo_reward.agents.cli`).

``robo-reward train --agent`` names:

* Stable-Baselines3: ``ppo``, ``sac``, ``td3`` (presets ``agents/{ppo,sac,td3}.yaml``);
* built-in: ``ppo-native`` (:class:`robo_reward.agents.ppo.PPO`, one critic),
  ``ppo-multicritic`` (the same with one critic per reward term, SLIM; both from
  ``agents/ppo-native.yaml``) and ``barfi`` (:class:`robo_reward.agents.barfi.BARFI`,
  ``agents/barfi.yaml``).

Importing this package does not import Stable-Baselines3 or torch; they are loaded
when a model is built.
"""

from .sb3 import (
    ALGORITHMS,
    OFF_POLICY,
    algorithm_class,
    is_off_policy,
    list_agents,
    load_model,
    load_preset,
    make_model,
    preset_families,
    read_preset,
    validate_hyperparameters,
)

#: SB3 agents, then the built-in ones: every ``robo-reward train --agent`` name.
SB3_AGENTS: tuple[str, ...] = ("ppo", "sac", "td3")
BUILTIN_AGENTS: tuple[str, ...] = ("ppo-native", "ppo-multicritic", "barfi")
TRAIN_AGENTS: tuple[str, ...] = SB3_AGENTS + BUILTIN_AGENTS

__all__ = [
    "ALGORITHMS",
    "BUILTIN_AGENTS",
    "SB3_AGENTS",
    "TRAIN_AGENTS",
    "OFF_POLICY",
    "algorithm_class",
    "is_off_policy",
    "list_agents",
    "load_model",
    "load_preset",
    "make_model",
    "preset_families",
    "read_preset",
    "validate_hyperparameters",
]

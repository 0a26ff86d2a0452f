"""Agents: the built-in ones (modules beside this file), Stable-Baselines3 models built
from the YAML presets in ``agents/`` (:mod:`robo_reward.agents.sb3`), and the
``train``/``eval`` commands (:mod:`robo_reward.agents.cli`).

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

__all__ = [
    "ALGORITHMS",
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

"""Measuring rewards themselves: EPIC and STARC distances between reward functions.

Exact versions for tabular MDPs (:mod:`robo_reward.tabular`) and sample-based versions
for continuous spaces and Gymnasium simulators; see :mod:`robo_reward.metrics.distances`
for the definitions and references::

    from robo_reward.metrics import epic_distance, starc_distance
    d = starc_distance(mdp, reward_a, reward_b)   # 0 for shaped / rescaled rewards
"""

from .distances import (
    AdvantageRollouts,
    simulate_env_advantage_rollouts,
    starc_distance_rollouts,
    RewardFn,
    SimulatedTransitions,
    Transitions,
    as_reward_fn,
    epic_canonicalize,
    epic_canonicalize_sampled,
    epic_distance,
    epic_distance_sampled,
    fit_value,
    pearson_distance,
    random_features,
    simulate_env_transitions,
    simulate_transitions,
    starc_distance,
    starc_distance_sampled,
    starc_standardize,
    val_canonicalize,
    val_canonicalize_sampled,
)

__all__ = [
    "AdvantageRollouts",
    "simulate_env_advantage_rollouts",
    "starc_distance_rollouts",
    "RewardFn",
    "SimulatedTransitions",
    "Transitions",
    "as_reward_fn",
    "epic_canonicalize",
    "epic_canonicalize_sampled",
    "epic_distance",
    "epic_distance_sampled",
    "fit_value",
    "pearson_distance",
    "random_features",
    "simulate_env_transitions",
    "simulate_transitions",
    "starc_distance",
    "starc_distance_sampled",
    "starc_standardize",
    "val_canonicalize",
    "val_canonicalize_sampled",
]

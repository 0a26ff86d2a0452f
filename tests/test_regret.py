"""The regret preference model (Knox et al. 2022) and the partial-return model on tabular MDPs."""

from __future__ import annotations

import numpy as np
import pytest

from robo_reward.core.errors import ConfigError
from robo_reward.rewards.preference.regret import (
    PreferenceDataset,
    generate_preferences,
    label_preferences,
    learn_reward,
    partial_return,
    preference_probability,
    segment_regret,
    segment_regret_deterministic,
)
from robo_reward.tabular import Segments, TabularMDP, optimal_advantage, random_gridworld, sample_segments

RIGHT, LEFT = 0, 1


def _corridor() -> TabularMDP:
    """States 0-1-2-3 in a row, 3 is a terminal goal; every step costs 1; undiscounted (Knox et al.'s setting).

    V* = [-3, -2, -1, 0].
    """
    P = np.zeros((4, 2, 4))
    for s in range(3):
        P[s, RIGHT, s + 1] = 1
        P[s, LEFT, max(s - 1, 0)] = 1
    P[3, :, 3] = 1
    return TabularMDP(P, -np.ones(4), gamma=1.0, terminal=np.array([False, False, False, True]))


def _segments(*steps: list[tuple[int, int, int]]) -> Segments:
    L = max(len(s) for s in steps)
    arr = np.zeros((len(steps), L, 3), dtype=np.int64)
    mask = np.zeros((len(steps), L), dtype=bool)
    for i, seg in enumerate(steps):
        arr[i, : len(seg)] = seg
        mask[i, : len(seg)] = True
    return Segments(arr[..., 0], arr[..., 1], arr[..., 2], mask)


def test_regret_of_optimal_segment_is_zero_and_of_suboptimal_is_positive():
    mdp = _corridor()
    segs = _segments(
        [(0, RIGHT, 1), (1, RIGHT, 2), (2, RIGHT, 3)],  # optimal, reaches the goal
        [(1, LEFT, 0), (0, RIGHT, 1)],  # one wasted step back: Q*(1, left) = -1 + V*(0) = -4 vs V*(1) = -2
        [(0, LEFT, 0)],  # bumps into the wall: Q*(0, left) = -1 + V*(0) = -4 vs V*(0) = -3
    )
    np.testing.assert_allclose(segment_regret(mdp, segs), [0.0, 2.0, 1.0], atol=1e-9)
    # Knox et al.'s start/end form V*(s0) - (Σ r + V*(s_T)) agrees for deterministic transitions
    np.testing.assert_allclose(segment_regret_deterministic(mdp, segs), [0.0, 2.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(partial_return(mdp, segs), [-3.0, -2.0, -1.0])


def test_regret_and_partial_return_disagree_where_knox_et_al_say_they_do():
    # Both segments have partial return -2; only the second consists of optimal actions.
    mdp = _corridor()
    wasteful = _segments([(1, LEFT, 0), (0, RIGHT, 1)])
    optimal = _segments([(0, RIGHT, 1), (1, RIGHT, 2)])
    p_pr = preference_probability(mdp, optimal, wasteful, model="partial_return")
    p_rg = preference_probability(mdp, optimal, wasteful, model="regret")
    assert p_pr[0] == pytest.approx(0.5)
    assert p_rg[0] == pytest.approx(1.0 / (1.0 + np.exp(-2.0)))
    assert preference_probability(mdp, optimal, wasteful, model="regret", temperature=2.0)[0] == pytest.approx(
        1.0 / (1.0 + np.exp(-1.0))
    )
    labels = label_preferences(mdp, optimal, wasteful, noiseless=True)
    assert labels.tolist() == [1.0]
    assert label_preferences(mdp, optimal, optimal, noiseless=True).tolist() == [0.5]


def test_stochastic_regret_sums_advantages():
    world = random_gridworld(4, slip=0.2, seed=5)
    mdp = world.mdp
    segs = sample_segments(mdp, 64, 4, seed=0)
    adv = optimal_advantage(mdp)
    expected = -(adv[segs.states, segs.actions] * segs.mask * mdp.gamma ** np.arange(4)).sum(1)
    np.testing.assert_allclose(segment_regret(mdp, segs), expected, atol=1e-9)
    assert (segment_regret(mdp, segs) >= -1e-9).all()
    # padding after a terminal state carries no regret
    ended = segs.mask[:, 0] & ~segs.mask[:, -1]
    if ended.any():
        assert mdp.terminal[segs.next_states[ended][np.arange(ended.sum()), segs.mask[ended].sum(1) - 1]].all()


def _optimal_everywhere(mdp: TabularMDP, policy: np.ndarray) -> bool:
    adv = optimal_advantage(mdp)
    live = np.flatnonzero(~mdp.terminal)
    return bool((adv[live, policy[live]] > -1e-6).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reward_learned_from_regret_preferences_recovers_the_optimal_policy(seed):
    pytest.importorskip("torch")
    world = random_gridworld(4, seed=seed)
    mdp = world.mdp
    data = generate_preferences(mdp, 300, model="regret", seed=seed)
    learned = learn_reward(mdp, data, model="regret", features=world.features, steps=150, lr=0.1)
    assert learned.losses[-1] < learned.losses[0]
    assert _optimal_everywhere(mdp, learned.policy(mdp))
    assert learned.normalized_return(mdp) == pytest.approx(1.0, abs=1e-6)


def test_partial_return_learning_predicts_partial_return_preferences():
    pytest.importorskip("torch")
    world = random_gridworld(4, seed=3)
    mdp = world.mdp
    data = generate_preferences(mdp, 400, model="partial_return", seed=0)
    learned = learn_reward(mdp, data, model="partial_return", features=world.features, steps=300, lr=0.1)
    test = generate_preferences(mdp, 500, model="partial_return", noiseless=True, seed=1)
    decided = test.labels != 0.5
    pred = partial_return(mdp, test.seg1, learned.reward) > partial_return(mdp, test.seg2, learned.reward)
    assert (pred[decided] == (test.labels[decided] == 1.0)).mean() > 0.9


def test_tabular_default_features_learn_from_regret():
    pytest.importorskip("torch")
    mdp = _corridor()
    mdp.gamma = 0.9
    data = generate_preferences(mdp, 200, model="regret", noiseless=True, seed=0)
    learned = learn_reward(mdp, data, model="regret", steps=200, lr=0.1)  # one weight per (s, a)
    assert learned.weights.shape == (8,)
    assert _optimal_everywhere(mdp, learned.policy(mdp))


def test_bad_input_raises_config_error():
    mdp = _corridor()
    segs = _segments([(0, RIGHT, 1)])
    with pytest.raises(ConfigError, match="preference model"):
        preference_probability(mdp, segs, segs, model="boltzmann")
    with pytest.raises(ConfigError, match="temperature"):
        preference_probability(mdp, segs, segs, temperature=0.0)
    with pytest.raises(ConfigError):
        segment_regret(mdp, _segments([(0, 5, 1)]))
    with pytest.raises(ConfigError, match="same number"):
        preference_probability(mdp, segs, _segments([(0, RIGHT, 1)], [(1, RIGHT, 2)]))
    with pytest.raises(ConfigError, match="probabilities"):
        learn_reward(mdp, PreferenceDataset(segs, segs, np.array([2.0])))
    with pytest.raises(ConfigError, match="features"):
        learn_reward(mdp, PreferenceDataset(segs, segs, np.array([1.0])), features=np.ones((3, 3)))


def test_learned_advantage_from_regret_preferences_acts_near_optimally():
    pytest.importorskip("torch")
    from robo_reward.rewards.preference.regret import SegmentArrays, learn_advantage
    from robo_reward.tabular import normalized_return

    world = random_gridworld(4, seed=0)
    mdp = world.mdp
    data = generate_preferences(mdp, 400, model="regret", seed=0)
    eye_s, eye_a = np.eye(mdp.n_states), np.eye(mdp.n_actions)

    def arrays(seg):  # the generic array form a continuous task would give: observation and action vectors
        return SegmentArrays(eye_s[seg.states], eye_a[seg.actions], seg.mask)

    model = learn_advantage(arrays(data.seg1), arrays(data.seg2), data.labels, eye_a, hidden=(32,), steps=300, lr=1e-2)
    assert model.losses[-1] < 0.5 * model.losses[0]
    assert (model.advantage(eye_s, eye_a[np.zeros(mdp.n_states, int)]) <= 1e-12).all()  # Â <= 0 by construction
    policy = model.greedy(eye_s).argmax(1)
    adv = optimal_advantage(mdp)
    live = np.flatnonzero(~mdp.terminal)
    assert (adv[live, policy[live]] > -1e-6).mean() >= 0.85
    assert normalized_return(mdp, policy) > 0.8
    with pytest.raises(ConfigError):
        learn_advantage(arrays(data.seg1), arrays(data.seg2[:3]), data.labels, eye_a)

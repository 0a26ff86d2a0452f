"""Tabular MDP tools and the EPIC / STARC reward distances (exact and sample-based), and `reward compare`."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from robo_reward.core.errors import ConfigError
from robo_reward.metrics import (
    Transitions,
    epic_canonicalize,
    epic_distance,
    epic_distance_sampled,
    pearson_distance,
    simulate_env_advantage_rollouts,
    simulate_env_transitions,
    simulate_transitions,
    starc_distance,
    starc_distance_rollouts,
    starc_distance_sampled,
    val_canonicalize,
)
from robo_reward.tabular import (
    TabularMDP,
    normalized_return,
    optimal_advantage,
    optimal_policy,
    policy_evaluation,
    policy_iteration,
    random_gridworld,
    random_mdp,
    uniform_policy,
    value_iteration,
)


def _shape(mdp: TabularMDP, phi: np.ndarray) -> np.ndarray:
    """Potential shaping γΦ(s') − Φ(s) as an [S, A, S] array, with Φ = 0 on terminal states."""
    phi = np.where(mdp.terminal, 0.0, phi)
    return mdp.gamma * phi[None, None, :] - phi[:, None, None]


# --------------------------------------------------------------------------- tabular tools


def _hand_mdp() -> TabularMDP:
    """0 --a0--> 1 (r 0), 0 --a1--> 0 (r 1); 1 --a0--> 2 terminal (r 10), 1 --a1--> 0 (r 0); γ = 0.9."""
    P = np.zeros((3, 2, 3))
    R = np.zeros((3, 2, 3))
    P[0, 0, 1] = 1
    P[0, 1, 0] = 1
    R[0, 1, 0] = 1.0
    P[1, 0, 2] = 1
    R[1, 0, 2] = 10.0
    P[1, 1, 0] = 1
    P[2, :, 2] = 1
    return TabularMDP(P, R, gamma=0.9, terminal=np.array([False, False, True]))


def test_value_iteration_matches_hand_solution():
    # Staying in 0 forever is worth 1 / (1 - 0.9) = 10; going 0 -> 1 -> goal is worth 0.9 * 10 = 9.
    mdp = _hand_mdp()
    V, Q = value_iteration(mdp)
    np.testing.assert_allclose(V, [10.0, 10.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(Q, [[9.0, 10.0], [10.0, 9.0], [0.0, 0.0]], atol=1e-9)
    np.testing.assert_array_equal(optimal_policy(mdp)[:2], [1, 0])
    np.testing.assert_allclose(optimal_advantage(mdp), [[-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]], atol=1e-9)
    V2, Q2, pi2 = policy_iteration(mdp)
    np.testing.assert_allclose(V2, V, atol=1e-9)
    np.testing.assert_array_equal(pi2[:2], [1, 0])


def test_policy_evaluation_matches_hand_solution():
    # uniform policy: V0 = .5 (.9 V1) + .5 (1 + .9 V0), V1 = .5 * 10 + .5 (.9 V0)
    mdp = _hand_mdp()
    V = policy_evaluation(mdp, uniform_policy(mdp))
    v0 = 2.75 / 0.3475
    np.testing.assert_allclose(V, [v0, 5 + 0.45 * v0, 0.0], atol=1e-9)
    assert normalized_return(mdp, np.array([1, 0, 0])) == pytest.approx(1.0)
    assert normalized_return(mdp, uniform_policy(mdp)) == pytest.approx(0.0)


def test_gridworld_value_iteration_is_a_fixed_point():
    world = random_gridworld(5, slip=0.1, seed=3)
    V, Q = value_iteration(world.mdp)
    mdp = world.mdp
    target = mdp.reward + mdp.gamma * ((~mdp.terminal) * V)[None, None, :]
    Q_again = (mdp.transitions * target).sum(axis=2)
    Q_again[mdp.terminal] = 0
    np.testing.assert_allclose(Q, Q_again, atol=1e-8)
    np.testing.assert_allclose(V, Q.max(axis=1), atol=1e-8)
    assert set(world.render().replace(" ", "").replace("\n", "")) <= set("rmgGH")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(transitions=np.ones((2, 1, 2))), "sum to 1"),
        (dict(transitions=np.ones((2, 1, 3)) / 3), r"\[S, A, S\]"),
        (dict(reward=np.zeros((3, 3))), "broadcastable"),
        (dict(gamma=1.5), "gamma"),
        (dict(terminal=np.array([True, True])), "non-terminal"),
    ],
)
def test_tabular_mdp_rejects_bad_input(kwargs, match):
    base = dict(transitions=np.full((2, 1, 2), 0.5), reward=np.zeros(2), gamma=0.9)
    base.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        TabularMDP(**base)


def test_policy_evaluation_rejects_bad_policy_and_improper_gamma_one():
    mdp = _hand_mdp()
    with pytest.raises(ConfigError):
        policy_evaluation(mdp, np.array([0, 5, 0]))
    loop = TabularMDP(np.ones((1, 1, 1)), np.ones(1), gamma=1.0)
    with pytest.raises(ConfigError, match="terminal"):
        policy_evaluation(loop, np.array([0]))


# --------------------------------------------------------------------------- exact distances


@pytest.fixture
def world():
    return random_gridworld(5, seed=7)


def test_epic_canonicalisation_removes_shaping_exactly():
    mdp = random_mdp(7, 3, gamma=0.8, seed=1)
    rng = np.random.default_rng(0)
    phi = rng.normal(size=7) * 10
    ds, da = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(3))
    c1 = epic_canonicalize(mdp, mdp.reward, state_dist=ds, action_dist=da)
    c2 = epic_canonicalize(mdp, mdp.reward + mdp.gamma * phi[None, None, :] - phi[:, None, None], state_dist=ds, action_dist=da)
    np.testing.assert_allclose(c1, c2, atol=1e-12)


def test_distances_zero_for_shaping_and_rescaling(world):
    mdp, R = world.mdp, world.mdp.reward
    phi = np.random.default_rng(0).normal(size=mdp.n_states) * 20
    shaped = R + _shape(mdp, phi)
    assert not np.allclose(shaped, R)
    for d in (epic_distance, starc_distance):
        # (1e-6: the square root in both distances turns 1e-16 rounding into 1e-8)
        assert d(mdp, R, shaped) < 1e-6
        assert d(mdp, R, 3.5 * R) < 1e-6
        assert d(mdp, R, 0.01 * R + _shape(mdp, phi)) < 1e-6
    # and the optimal policies agree, as they must
    np.testing.assert_array_equal(optimal_policy(mdp, R), optimal_policy(mdp, shaped))


def test_distances_clearly_positive_for_a_different_optimal_policy(world):
    mdp, R = world.mdp, world.mdp.reward
    # move the goal: the reward of another (non-terminal) cell becomes the goal's reward
    other = int(np.flatnonzero(~mdp.terminal)[0])
    moved = world.weights[world.cell_types].copy()
    moved[world.cell_types == 3] = -1.0
    moved[other] = 50.0
    R2 = np.broadcast_to(moved[None, None, :], R.shape)
    assert (optimal_policy(mdp, R) != optimal_policy(mdp, R2))[~mdp.terminal].any()
    assert epic_distance(mdp, R, R2) > 0.2
    assert starc_distance(mdp, R, R2) > 0.3
    assert epic_distance(mdp, R, -R) == pytest.approx(1.0)
    assert starc_distance(mdp, R, -R) == pytest.approx(2.0)


def test_val_canonicalisation_is_the_uniform_policy_advantage(world):
    mdp = world.mdp
    c = val_canonicalize(mdp)
    V = policy_evaluation(mdp, uniform_policy(mdp))
    # averaging the advantage over the uniform policy gives 0 in every live state
    np.testing.assert_allclose(c[~mdp.terminal].mean(axis=1), 0.0, atol=1e-9)
    assert np.abs(c).max() > 0.1
    assert np.isfinite(V).all()


def test_pearson_distance_conventions_and_errors():
    x = np.arange(5.0)
    assert pearson_distance(x, 2 * x + 1) == pytest.approx(0.0)
    assert pearson_distance(x, -x) == pytest.approx(1.0)
    assert pearson_distance(np.ones(3), np.ones(3)) == 0.0
    with pytest.raises(ConfigError):
        pearson_distance(x, x[:3])
    with pytest.raises(ConfigError):
        pearson_distance(x, x, weights=-np.ones(5))


# --------------------------------------------------------------------------- sample-based, tabular checks


def _onehot_setup(mdp: TabularMDP):
    S, A = mdp.n_states, mdp.n_actions
    eye = np.eye(S)

    def fn(R):
        R = np.broadcast_to(R, (S, A, S))
        return lambda o, a, o2: R[np.argmax(o, 1), np.asarray(a, int), np.argmax(o2, 1)]

    def sample_next(o, a, k, rng):
        return eye[rng.choice(S, size=k, p=mdp.transitions[int(np.argmax(o)), int(a)])]

    return eye, fn, sample_next


def test_sampled_starc_converges_to_exact_tabular_value():
    S, A = 6, 3
    mdp = random_mdp(S, A, gamma=0.9, branching=2, seed=0)
    rng = np.random.default_rng(1)
    Ra = rng.normal(size=(S, A, 1)) + 0.3 * rng.normal(size=(S, A, S))
    Rb = rng.normal(size=(S, A, 1)) + 0.3 * rng.normal(size=(S, A, S))
    exact = starc_distance(mdp, Ra, Rb)
    eye, fn, sample_next = _onehot_setup(mdp)
    errors = {}
    for n in (100, 10_000):
        errs = []
        for seed in range(3):
            obs = eye[np.random.default_rng(100 + seed).integers(0, S, size=n)]
            data = simulate_transitions(obs, sample_next, lambda m, g: g.integers(0, A, size=m), k=2, seed=seed)
            errs.append(abs(starc_distance_sampled(fn(Ra), fn(Rb), data, gamma=0.9, features="identity") - exact))
        errors[n] = float(np.mean(errs))
    assert errors[10_000] < 0.03
    assert errors[10_000] < errors[100]


def test_sampled_epic_converges_to_exact_and_removes_shaping():
    S, A = 6, 3
    mdp = random_mdp(S, A, gamma=0.9, seed=2)
    rng = np.random.default_rng(3)
    Rb = rng.normal(size=(S, A, S))
    phi = rng.normal(size=S) * 5
    exact = epic_distance(mdp, mdp.reward, Rb)
    eye, fn, _ = _onehot_setup(mdp)
    ss = lambda n, g: eye[g.integers(0, S, size=n)]  # noqa: E731
    sa = lambda n, g: g.integers(0, A, size=n)  # noqa: E731
    est = epic_distance_sampled(
        fn(mdp.reward), fn(Rb), gamma=0.9, state_sampler=ss, action_sampler=sa, n_transitions=6000, n_mean=600, seed=0
    )
    assert est == pytest.approx(exact, abs=0.03)
    shaped = mdp.reward + mdp.gamma * phi[None, None, :] - phi[:, None, None]
    d = epic_distance_sampled(fn(mdp.reward), fn(shaped), gamma=0.9, state_sampler=ss, action_sampler=sa, n_transitions=500, n_mean=50)
    assert d < 1e-6  # shaping cancels exactly for any samples (up to a constant)


# --------------------------------------------------------------------------- continuous spaces


def _point_system():
    """A 2-D point: s' = s + 0.1 a + noise; reward for being near the origin."""

    def sample_next(o, a, k, rng):
        return o[None, :] + 0.1 * np.asarray(a)[None, :] + 0.01 * rng.normal(size=(k, 2))

    near = lambda o, a, o2: -np.sum(o2**2, axis=1)  # noqa: E731
    far = lambda o, a, o2: np.sum(o2**2, axis=1)  # noqa: E731
    phi = lambda o: 3.0 * o[:, 0] - o[:, 1]  # noqa: E731
    shaped = lambda o, a, o2: near(o, a, o2) + 0.9 * phi(o2) - phi(o)  # noqa: E731
    return sample_next, near, far, shaped


def test_continuous_starc_and_epic_invariances():
    sample_next, near, far, shaped = _point_system()
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, size=(600, 2))
    acts = lambda n, g: g.uniform(-1, 1, size=(n, 2))  # noqa: E731
    data = simulate_transitions(obs, sample_next, acts, k=2, seed=0)
    # linear potentials are in the span of the default features ([1, z, cos(Wz + b)])
    assert starc_distance_sampled(near, shaped, data, gamma=0.9) < 0.02
    assert starc_distance_sampled(near, lambda *x: 4.0 * near(*x), data, gamma=0.9) < 1e-9
    assert starc_distance_sampled(near, far, data, gamma=0.9) > 1.9
    states = lambda n, g: g.uniform(-1, 1, size=(n, 2))  # noqa: E731
    kw = dict(gamma=0.9, state_sampler=states, action_sampler=acts, n_transitions=1000, n_mean=100)
    assert epic_distance_sampled(near, shaped, **kw) < 1e-6
    assert epic_distance_sampled(near, far, **kw) > 0.95
    tr = Transitions(obs, acts(600, rng), data.next_obs[:, 0])
    assert epic_distance_sampled(near, shaped, gamma=0.9, transitions=tr, n_mean=100) < 1e-6


def test_fitted_value_mlp_runs_and_keeps_scale_invariance():
    pytest.importorskip("torch")
    sample_next, near, far, shaped = _point_system()
    obs = np.random.default_rng(0).uniform(-1, 1, size=(200, 2))
    data = simulate_transitions(obs, sample_next, lambda n, g: g.uniform(-1, 1, size=(n, 2)), k=2, seed=0)
    kw = dict(gamma=0.9, value_method="mlp", mlp_iterations=5, mlp_steps=30)
    assert starc_distance_sampled(near, lambda *x: 2.0 * near(*x), data, **kw) < 1e-5
    assert starc_distance_sampled(near, far, data, **kw) > 1.5


def test_starc_on_a_gymnasium_simulator_with_monte_carlo_rollouts():
    env = gym.make("Pendulum-v1")
    data, coverage = simulate_env_advantage_rollouts(env, 48, gamma=0.6, seed=0)
    assert data.horizon == 10 and len(coverage) == 48
    r_env = data.env_reward
    # Pendulum obs = [cos θ, sin θ, θ̇]; a potential on observations
    phi = lambda o: 2.0 * o[..., 0] + 0.1 * o[..., 2]  # noqa: E731
    shaped = np.where(data.alive, r_env + 0.6 * phi(data.next_obs) - phi(data.obs), 0.0)
    assert starc_distance_rollouts(r_env, 3.0 * r_env, data) < 1e-9
    assert starc_distance_rollouts(r_env, -r_env, data) == pytest.approx(2.0)
    assert starc_distance_rollouts(r_env, shaped, data) < 0.05  # only the γ^H tail of the potential remains
    upright = lambda o, a, o2: o2[:, 0]  # noqa: E731  (cos θ: the same goal, no torque cost)
    d = starc_distance_rollouts(r_env, upright, data)
    assert 0.05 < d < 1.9
    # env rewards are not available off the simulator: EPIC says so instead of guessing
    from robo_reward.rewards.builtin import EnvReward

    with pytest.raises(ConfigError, match="env's own reward"):
        epic_distance_sampled(EnvReward(), upright, gamma=0.6, transitions=coverage, n_mean=16)


def test_simulated_next_states_restore_the_simulator_state():
    env = gym.make("Pendulum-v1")
    sim, coverage = simulate_env_transitions(env, 20, k=3, seed=1)
    # Pendulum is deterministic: the k next states from one state and action agree
    np.testing.assert_allclose(sim.next_obs[:, 0], sim.next_obs[:, 2], atol=1e-12)
    # and the rollout continued from the restored state: consecutive coverage states chain up
    np.testing.assert_allclose(coverage.next_obs[:-1], coverage.obs[1:], atol=1e-12)


def test_state_restore_errors_name_the_alternative():
    class Opaque(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,))
        action_space = gym.spaces.Box(-1, 1, (1,))

        def reset(self, *, seed=None, options=None):
            return np.zeros(1, np.float32), {}

        def step(self, a):
            return np.zeros(1, np.float32), 0.0, False, False, {}

    with pytest.raises(ConfigError, match="sample_next"):
        simulate_env_transitions(Opaque(), 4)


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError):
        epic_distance_sampled(lambda *x: x[0][:, 0], lambda *x: x[0][:, 0], gamma=0.9)
    with pytest.raises(ConfigError):
        epic_distance_sampled(lambda *x: x[0][:, 0], lambda *x: x[0][:, 0], gamma=2.0)
    sample_next, near, far, _ = _point_system()
    obs = np.zeros((10, 2))
    data = simulate_transitions(obs, sample_next, lambda n, g: g.uniform(-1, 1, (n, 2)), seed=0)
    with pytest.raises(ConfigError):
        starc_distance_sampled(near, far, data, gamma=1.0)
    with pytest.raises(ConfigError):
        starc_distance_sampled(near, lambda *x: np.zeros(3), data, gamma=0.9)
    with pytest.raises(ConfigError):
        starc_distance_sampled(near, far, data, gamma=0.9, value_method="magic")
    with pytest.raises(ConfigError):
        starc_distance_sampled(near, 42, data, gamma=0.9)


# --------------------------------------------------------------------------- CLI


def test_reward_compare_cli_on_a_task_card():
    pytest.importorskip("mujoco")
    from typer.testing import CliRunner

    from robo_reward.cli import app

    runner = CliRunner()
    spec = "python:fn=robo_reward.rewards.examples:reacher_distance"
    res = runner.invoke(
        app, ["reward", "compare", "env", spec, "--task", "mujoco-reacher-v5", "--states", "12", "--gamma", "0.5", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["task"] == "mujoco-reacher-v5" and out["method"] == "mc" and out["horizon"] == 7
    assert 0.0 < out["starc"] < 2.0
    assert out["epic"] is None and "own reward" in out["epic_note"]  # `env` exists only on simulated steps
    assert out["pearson_a_env"] == pytest.approx(1.0)
    same = runner.invoke(app, ["reward", "compare", spec, spec, "-t", "mujoco-reacher-v5", "-n", "8", "--gamma", "0.5", "--json"])
    assert same.exit_code == 0, same.output
    out = json.loads(same.output)
    assert out["starc"] == pytest.approx(0.0, abs=1e-9) and out["epic"] == pytest.approx(0.0, abs=1e-9)
    bad = runner.invoke(app, ["reward", "compare", "env", "no-such-reward", "-t", "mujoco-reacher-v5"])
    assert bad.exit_code == 1 and "no-such-reward" in bad.output

"""BARFI: Neumann-series inverse-Hessian products, implicit hypergradients, the blended reward, the agent."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import robo_reward as rr
from robo_reward.agents.barfi import (
    BARFI,
    BARFIConfig,
    BlendedReward,
    discounted_returns,
    implicit_hypergradient,
    neumann_inverse_hvp,
)
from robo_reward.core.errors import ConfigError
from robo_reward.core.types import RewardOutput, RewardPlugin, TransitionBatch
from tests.fixtures import one_torch_thread  # noqa: F401


def _spd(n: int, low: float, high: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.linspace(low, high, n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


# --------------------------------------------------------------------------- Neumann series
def test_neumann_series_matches_exact_inverse_on_a_quadratic():
    A = _spd(5, 0.5, 3.0)  # alpha * eigenvalues in (0, 2): the series converges
    v = torch.arange(1.0, 6.0, dtype=torch.float64)
    exact = torch.linalg.solve(A, v)
    approx = neumann_inverse_hvp(lambda x: A @ x, v, alpha=0.5, iterations=200)
    torch.testing.assert_close(approx, exact, rtol=1e-10, atol=1e-10)
    # a truncated series is exactly (I - (I - aA)^(n+1)) A^-1 v
    n, a = 3, 0.5
    M = torch.eye(5, dtype=torch.float64) - a * A
    partial = (torch.eye(5, dtype=torch.float64) - torch.linalg.matrix_power(M, n + 1)) @ exact
    torch.testing.assert_close(neumann_inverse_hvp(lambda x: A @ x, v, a, n), partial, rtol=1e-10, atol=1e-12)
    # zero extra terms: the first-order approximation alpha * v
    torch.testing.assert_close(neumann_inverse_hvp(lambda x: A @ x, v, a, 0), a * v)
    # damping inverts A + lambda I
    damped = neumann_inverse_hvp(lambda x: A @ x, v, alpha=0.4, iterations=300, damping=0.7)
    torch.testing.assert_close(damped, torch.linalg.solve(A + 0.7 * torch.eye(5, dtype=torch.float64), v))


def test_neumann_series_with_autograd_hessian_vector_products():
    A = _spd(4, 0.2, 1.5, seed=1)
    b = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * theta @ A @ theta + b @ theta + (theta ** 4).sum() * 0  # quadratic; Hessian = A
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)

    def hvp(x):
        return torch.autograd.grad(g, theta, grad_outputs=x, retain_graph=True)[0]

    v = torch.tensor([0.3, 0.1, -0.7, 2.0], dtype=torch.float64)
    torch.testing.assert_close(neumann_inverse_hvp(hvp, v, 1.0, 400), torch.linalg.solve(A, v), rtol=1e-8, atol=1e-8)


def test_neumann_series_bad_arguments():
    with pytest.raises(ConfigError):
        neumann_inverse_hvp(lambda x: x, torch.ones(2), alpha=0.0, iterations=1)
    with pytest.raises(ConfigError):
        neumann_inverse_hvp(lambda x: x, torch.ones(2), alpha=0.1, iterations=-1)


def test_implicit_hypergradient_on_a_bilevel_quadratic():
    """inner: min_θ ½θᵀAθ − θᵀBφ  ⇒ θ* = A⁻¹Bφ;  outer: J = cᵀθ*  ⇒ dJ/dφ = BᵀA⁻¹c."""
    A = _spd(4, 0.5, 2.0, seed=2)
    g = torch.Generator().manual_seed(3)
    B = torch.randn(4, 3, generator=g, dtype=torch.float64)
    c = torch.randn(4, generator=g, dtype=torch.float64)
    phi = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    theta = torch.linalg.solve(A, B @ phi.detach()).requires_grad_()  # the inner optimum

    def inner():
        return 0.5 * theta @ A @ theta - theta @ B @ phi

    (hyper,) = implicit_hypergradient(inner(), [theta], [phi], [c], alpha=0.8, iterations=300)
    torch.testing.assert_close(hyper, B.T @ torch.linalg.solve(A, c), rtol=1e-8, atol=1e-8)
    # first-order variant: H^-1 ~ alpha I
    (first,) = implicit_hypergradient(inner(), [theta], [phi], c, alpha=0.8, iterations=0)
    torch.testing.assert_close(first, 0.8 * B.T @ c)
    # and it agrees with differentiating J(θ*(φ)) directly
    phi2 = phi.detach().clone().requires_grad_()
    J = c @ torch.linalg.solve(A, B @ phi2)
    (direct,) = torch.autograd.grad(J, phi2)
    torch.testing.assert_close(hyper, direct, rtol=1e-8, atol=1e-8)


# --------------------------------------------------------------------------- pieces
def test_discounted_returns_closed_form_matches_loop():
    g = torch.Generator().manual_seed(0)
    T, N, gamma = 9, 3, 0.8
    r = torch.randn(T, N, generator=g, dtype=torch.float64)
    dones = torch.rand(T, N, generator=g) < 0.25
    out = discounted_returns(r, dones, gamma)
    exp = torch.zeros_like(r)
    nxt = torch.zeros(N, dtype=torch.float64)
    for t in reversed(range(T)):
        nxt = r[t] + gamma * (~dones[t]).double() * nxt
        exp[t] = nxt
    torch.testing.assert_close(out, exp)
    # differentiable in gamma: d/dγ of G_0 for a single 3-step episode r = 1 is 1 + 2γ
    gam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    G = discounted_returns(torch.ones(3, 1, dtype=torch.float64), torch.tensor([[False], [False], [True]]), gam)
    (d,) = torch.autograd.grad(G[0, 0], gam)
    assert float(d) == pytest.approx(1 + 2 * 0.5)


def test_blended_reward_starts_as_the_naive_sum():
    net = BlendedReward(obs_dim=3, n_aux=2, init_weights=(0.0, 1.0, 1.0), gamma_init=0.9)
    obs = torch.randn(5, 3)
    rp, ra = torch.randn(5), torch.randn(5, 2)
    torch.testing.assert_close(net(obs, rp, ra), rp + ra.sum(-1))
    assert float(net.gamma.detach()) == pytest.approx(0.9)
    net2 = BlendedReward(obs_dim=3, n_aux=1, init_weights=(0.5, 2.0, -1.0))
    torch.testing.assert_close(net2(obs, rp, ra[:, :1]), 0.5 + 2.0 * rp - ra[:, 0])


def test_config_errors():
    for bad in ({"n_steps": 0}, {"gamma_init": 1.0}, {"neumann_iterations": -1}, {"init_weights": [1, 2]},
                {"primary": "x", "aux_terms": ["x"]}, {"bogus": 1}, {"reward_lr": 0}):
        with pytest.raises(ConfigError):
            BARFIConfig.from_dict(bad)


# --------------------------------------------------------------------------- agent
class _UprightBonus(RewardPlugin):
    """CartPole: an auxiliary 'keep the pole upright' term (the env reward stays the primary)."""

    requires = frozenset({"next_obs"})
    name = "upright-test"

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        upright = 1.0 - np.abs(batch.next_obs[:, 2]) / 0.21
        return RewardOutput(upright.astype(np.float32), {"upright": upright.astype(np.float32)})


def _env(plugin=None, n=4):
    env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    return rr.VectorRewardWrapper(env, plugin if plugin is not None else _UprightBonus())


def test_barfi_runs_moves_phi_and_round_trips(tmp_path):
    log: list[dict] = []
    agent = BARFI(_env(), {"n_steps": 64, "neumann_iterations": 3, "reward_lr": 0.05}, seed=0, device="cpu",
                  metrics_hook=log.append)
    assert agent.aux_terms == ["upright"]
    phi0 = [p.detach().clone() for p in agent.phi]
    agent.learn(3 * 64 * 4, progress_bar=False)
    assert len(log) == 3 and log[-1]["timesteps"] == 768
    assert 0.0 < log[-1]["gamma_phi"] < 1.0 and len(log[-1]["phi_mean"]) == 3
    assert log[-1]["hypergradient_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(phi0, agent.phi))
    assert log[-1]["primary_return"] is not None
    path = agent.save(tmp_path / "barfi.pt")
    loaded = BARFI.load(path, _env(), device="cpu")
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    assert loaded.num_timesteps == agent.num_timesteps
    torch.testing.assert_close(loaded.reward.gamma, agent.reward.gamma)


def test_barfi_first_order_variant_and_errors():
    BARFI(_env(n=2), {"n_steps": 32, "neumann_iterations": 0}, seed=1, device="cpu").learn(64, progress_bar=False)
    plain = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ConfigError, match="reward_terms"):
        BARFI(plain, seed=0, device="cpu")
    with pytest.raises(ConfigError, match="vector env"):
        BARFI(gym.make("CartPole-v1"), seed=0, device="cpu")


class _HarmfulBonus(RewardPlugin):
    """CartPole: an auxiliary term that pays for *tilting* the pole (the paper's harmful-heuristic setting)."""

    requires = frozenset({"next_obs"})
    name = "harmful-test"

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        upright = (1.0 - np.abs(batch.next_obs[:, 2]) / 0.21).astype(np.float32)
        return RewardOutput(-2.0 * upright, {"aux": -2.0 * upright})


def test_barfi_learns_to_discount_a_harmful_heuristic():
    """Naively summed, this bonus makes the policy drop the pole (primary return ~10); BARFI turns its weight negative."""
    log: list[dict] = []
    BARFI(_env(_HarmfulBonus(), n=8), {"n_steps": 64, "neumann_iterations": 3, "reward_lr": 0.02}, seed=0,
          device="cpu", metrics_hook=log.append).learn(40_000, progress_bar=False)
    primary = [m["primary_return"] for m in log if m["primary_return"] is not None]
    assert log[-1]["phi_mean"][2] < 0.0  # the auxiliary weight phi_3 flipped sign
    first, last = np.mean(primary[:10]), np.mean(primary[-10:])
    assert first < 40 and last > 3 * first, (first, last)  # seed 0: ~23 -> ~160; naive summing: ~10

"""The built-in PPO: GAE, multi-critic (SLIM) advantage combination, checkpoints that resume, learning."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import robo_reward as rr
from robo_reward.agents.ppo import (
    PPO,
    PPOConfig,
    RunningMeanStd,
    combine_advantages,
    compute_gae,
    load_preset,
    make_agent,
    ppo_loss_grads,
)
from robo_reward.core.errors import ConfigError
from robo_reward.core.types import RewardOutput, RewardPlugin, TransitionBatch

from .toy_envs import CountEnv
from .fixtures import one_torch_thread  # noqa: F401

TINY = {"n_steps": 16, "batch_size": 16, "n_epochs": 2}


def _count_vec(n: int = 2, length: int = 3, truncate: bool = True, mode: AutoresetMode = AutoresetMode.NEXT_STEP):
    return SyncVectorEnv([lambda: CountEnv(length=length, truncate=truncate) for _ in range(n)], autoreset_mode=mode)


def _params(agent: PPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- GAE
def test_gae_hand_computed_with_termination_and_truncation():
    g, lam = 0.9, 0.8
    # env 0 terminates at t=1; env 1 is truncated at t=2, and the value of its real last
    # observation (10.0) must be the bootstrap, not the value of the reset observation (0.3)
    rewards = np.array([[1, 1], [2, 1], [3, 1], [4, 1]], dtype=np.float32)
    values = np.array([[0.5, 0.2], [0.6, 0.2], [0.7, 0.2], [0.8, 0.3]], dtype=np.float32)
    next_values = np.array([[0.6, 0.2], [123.0, 0.2], [0.8, 10.0], [0.9, 0.4]], dtype=np.float32)
    terminated = np.array([[0, 0], [1, 0], [0, 0], [0, 0]], dtype=bool)
    dones = np.array([[0, 0], [1, 0], [0, 1], [0, 0]], dtype=bool)
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, g, lam)

    a03 = 4 + g * 0.9 - 0.8
    a02 = (3 + g * 0.8 - 0.7) + g * lam * a03
    a01 = 2 - 0.6  # terminal: no bootstrap (the 123 is ignored), no carry from t=2
    a00 = (1 + g * 0.6 - 0.5) + g * lam * a01
    a13 = 1 + g * 0.4 - 0.3
    a12 = 1 + g * 10.0 - 0.2  # truncated: bootstrap on V(real last obs), no carry from t=3
    a11 = (1 + g * 0.2 - 0.2) + g * lam * a12
    a10 = (1 + g * 0.2 - 0.2) + g * lam * a11
    expected = np.array([[a00, a10], [a01, a11], [a02, a12], [a03, a13]])
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    assert a12 == pytest.approx(9.8) and a01 == pytest.approx(1.4)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-6)


def test_gae_per_term_columns_are_independent():
    rng = np.random.default_rng(0)
    T, N, K = 7, 3, 2
    r, v, nv = (rng.normal(size=(T, N, K)).astype(np.float32) for _ in range(3))
    term = rng.random((T, N)) < 0.2
    done = term | (rng.random((T, N)) < 0.2)
    adv, _ = compute_gae(r, v, nv, term, done, 0.99, 0.95)
    for k in range(K):
        adv_k, _ = compute_gae(r[..., k], v[..., k], nv[..., k], term, done, 0.99, 0.95)
        np.testing.assert_allclose(adv[..., k], adv_k, rtol=1e-6)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_rollout_bootstraps_truncation_on_real_last_observation(mode):
    """In both autoreset modes a time-limit end bootstraps with V(real last obs), and a terminal end does not."""
    env = _count_vec(n=2, length=3, truncate=True, mode=mode)
    agent = PPO(env, {"n_steps": 8, "batch_size": 8, "gamma": 0.9, "gae_lambda": 0.8}, seed=0, device="cpu")
    agent._reset_env()
    agent._collect_rollout()
    adv, _ = agent._advantages()
    critic = agent.policy.critic
    vals = agent._values.numpy()[..., 0]

    def v(obs):
        with torch.no_grad():
            return float(critic(torch.from_numpy(np.asarray(obs, dtype=np.float32)[None]))[0, 0])

    dones = agent._dones
    assert dones.any() and not agent._terminated.any()
    # recompute by hand: next value of a truncated step = V([episode, 3]) for the episode that ended
    obs = agent._obs.numpy()
    nv = vals[1:].copy()
    for t, i in zip(*np.nonzero(dones)):
        if mode == AutoresetMode.NEXT_STEP:
            final = obs[t + 1, i]  # the real last obs is the next stored obs
        else:
            final = np.array([obs[t, i, 0], 3.0], dtype=np.float32)  # same episode, t = length
            assert obs[t + 1, i, 1] == 0.0  # ... while the stored next obs is already the reset one
        assert final[1] == 3.0
        nv[t, i] = v(final)
    expected, _ = compute_gae(agent._rewards[..., 0], vals[:-1], nv, agent._terminated, dones, 0.9, 0.8)
    np.testing.assert_allclose(adv[..., 0], expected, rtol=1e-5, atol=1e-6)
    if mode == AutoresetMode.NEXT_STEP:
        # the step after each episode end only resets: it is masked out of training
        valid = agent._valid
        assert not valid[1:][dones[:-1]].any() and valid.sum() < valid.size
        stats = agent._update(1e-4)
        assert stats["batch_transitions"] == int(valid.sum())


def test_rollout_terminal_step_has_no_bootstrap():
    env = _count_vec(n=1, length=3, truncate=False, mode=AutoresetMode.SAME_STEP)
    agent = PPO(env, {"n_steps": 6, "batch_size": 6, "gamma": 0.9, "gae_lambda": 1.0}, seed=1, device="cpu")
    agent._reset_env()
    agent._collect_rollout()
    adv, _ = agent._advantages()
    vals = agent._values.numpy()[:, 0, 0]
    # CountEnv reward: 10 * t_next; the episode's steps are t = 0, 1, 2 then terminal
    r = agent._rewards[:3, 0, 0]
    np.testing.assert_allclose(r, [10, 20, 30])
    g = 0.9
    a2 = 30 - vals[2]
    a1 = 20 + g * vals[2] - vals[1] + g * a2
    a0 = 10 + g * vals[1] - vals[0] + g * a1
    np.testing.assert_allclose(adv[:3, 0, 0], [a0, a1, a2], rtol=1e-5)


# --------------------------------------------------------------------------- loss
@pytest.mark.parametrize("clip_vf", [None, 0.2])
def test_closed_form_loss_gradients_match_autograd(clip_vf):
    """The update back-propagates closed-form loss gradients; they must equal autograd's on CleanRL's loss."""
    g = torch.Generator().manual_seed(0)
    B, K = 256, 2
    old_logp = torch.randn(B, generator=g)
    new_logp = (old_logp + 0.4 * torch.randn(B, generator=g)).requires_grad_()  # many ratios outside 1 ± 0.2
    adv = torch.randn(B, generator=g)
    old_v = torch.randn(B, K, generator=g)
    new_v = (old_v + 0.5 * torch.randn(B, K, generator=g)).requires_grad_()
    ret = torch.randn(B, K, generator=g)
    clip, vf_coef = 0.2, 0.5

    ratio = (new_logp - old_logp).exp()
    pg = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    err = (new_v - ret).square()
    if clip_vf is not None:
        err = torch.max(err, (old_v + (new_v - old_v).clamp(-clip_vf, clip_vf) - ret).square())
    v_terms = 0.5 * err.mean(0)
    (pg + vf_coef * v_terms.sum()).backward()

    g_lp, g_v, pg2, v2, _, _ = ppo_loss_grads(new_logp, old_logp, adv, new_v, old_v, ret, clip, clip_vf, vf_coef)
    torch.testing.assert_close(g_lp, new_logp.grad)
    torch.testing.assert_close(g_v, new_v.grad)
    torch.testing.assert_close(pg2, pg.detach())
    torch.testing.assert_close(v2, v_terms.detach())
    assert (g_lp == 0).sum() > 10 and (g_lp != 0).sum() > 10  # both branches exercised
    if clip_vf is not None:
        assert (g_v == 0).sum() > 10


# --------------------------------------------------------------------------- multi-critic
def test_combine_advantages_normalises_each_term_then_weights():
    rng = np.random.default_rng(0)
    adv = np.stack([rng.normal(5.0, 100.0, 64), rng.normal(-2.0, 0.01, 64)], axis=1).astype(np.float32)
    w = np.array([0.25, 2.0], dtype=np.float32)
    out = combine_advantages(torch.from_numpy(adv), torch.from_numpy(w)).numpy()
    a64 = adv.astype(np.float64)
    norm = (a64 - a64.mean(0)) / (a64.std(0, ddof=1) + 1e-8)
    np.testing.assert_allclose(out, norm @ w, rtol=1e-4, atol=3e-4)  # float32 vs float64 reference
    # each term contributes on the same scale despite a 10^4 ratio of raw magnitudes
    assert np.std(out - w[0] * norm[:, 0], ddof=1) == pytest.approx(w[1], rel=1e-3)
    # without normalisation: just the weighted sum
    raw = combine_advantages(torch.from_numpy(adv), torch.from_numpy(w), normalize=False).numpy()
    np.testing.assert_allclose(raw, adv @ w, rtol=1e-5)
    # several minibatches at once (a leading axis) = each minibatch on its own
    mbs = combine_advantages(torch.from_numpy(adv).view(4, 16, 2), torch.from_numpy(w)).numpy()
    for j in range(4):
        one = combine_advantages(torch.from_numpy(adv[16 * j:16 * (j + 1)]), torch.from_numpy(w)).numpy()
        np.testing.assert_allclose(mbs[j], one, rtol=1e-5, atol=1e-6)


def test_combine_advantages_single_term_is_plain_ppo_normalisation():
    a = torch.randn(32, generator=torch.Generator().manual_seed(0)) * 7 + 3
    single = (a - a.mean()) / (a.std() + 1e-8)
    assert torch.equal(combine_advantages(a[:, None], torch.ones(1)), single)


class _TermPlugin(RewardPlugin):
    """reward = env reward, reported as the single term ``alive`` (optionally plus a second term)."""

    requires = frozenset({"env_reward"})
    name = "term-test"

    def __init__(self, second: bool = False):
        self.second = second

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        r = batch.env_reward
        terms = {"alive": r}
        if self.second:
            terms["bonus"] = np.full_like(r, 0.5)
            return RewardOutput(r + 0.5, terms)
        return RewardOutput(r, terms)


def _cartpole(n: int = 4, plugin: RewardPlugin | None = None, same_step: bool = False):
    kw = {"autoreset_mode": AutoresetMode.SAME_STEP} if same_step else {}
    env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", vector_kwargs=kw)
    return rr.VectorRewardWrapper(env, plugin) if plugin is not None else env


@pytest.mark.parametrize("norm", [False, True])
def test_multicritic_with_one_term_equals_single_critic_ppo(norm):
    cfg = {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "norm_obs": norm, "norm_reward": norm}
    single = PPO(_cartpole(plugin=_TermPlugin()), cfg, seed=3, device="cpu")
    multi = PPO(_cartpole(plugin=_TermPlugin()), {**cfg, "multi_critic": True}, seed=3, device="cpu")
    assert multi.term_names == ["alive"] and single.term_names == ["reward"]
    assert _same(_params(single), _params(multi))
    single.learn(384, progress_bar=False)
    multi.learn(384, progress_bar=False)
    assert multi.n_updates == single.n_updates == 3
    assert _same(_params(single), _params(multi))


def test_multicritic_two_terms_has_a_critic_each_and_weights():
    env = _cartpole(plugin=_TermPlugin(second=True))
    log = []
    # no gradient clipping: its global norm would couple the actor's step to the critics'
    agent = PPO(env, {**TINY, "multi_critic": True, "term_weights": {"bonus": 0.0}, "max_grad_norm": None}, seed=0, device="cpu",
                metrics_hook=log.append)
    assert agent.term_names == ["alive", "bonus"] and agent.term_weights == [1.0, 0.0]
    with torch.no_grad():
        assert agent.policy.critic(torch.zeros(5, 4)).shape == (5, 2)
    agent.learn(128, progress_bar=False)
    assert set(log[-1]["value_loss_terms"]) == {"alive", "bonus"}
    # the per-term rewards went into separate columns: the constant bonus has its own
    assert np.allclose(agent._rewards[..., 1][agent._valid], 0.5)
    # a bonus with weight 0 leaves the actor exactly as a single critic on 'alive' would (same seed)
    alone = PPO(_cartpole(plugin=_TermPlugin(second=True)), {**TINY, "multi_critic": True,
                "critic_terms": ["alive"], "max_grad_norm": None}, seed=0, device="cpu")
    alone.learn(128, progress_bar=False)
    # (close, not bit-equal: two critics run as one batched matmul, one as a plain matmul)
    for a, b in zip(agent.policy.actor.parameters(), alone.policy.actor.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # head 0 of two critics starts exactly as a lone critic (same seed)
    two = PPO(_cartpole(plugin=_TermPlugin(second=True)), {**TINY, "multi_critic": True}, seed=9, device="cpu")
    one = PPO(_cartpole(plugin=_TermPlugin(second=True)), {**TINY, "multi_critic": True, "critic_terms": ["alive"]},
              seed=9, device="cpu")
    for w2, w1 in zip(two.policy.critic.weights, one.policy.critic.weights):
        assert torch.equal(w2[0], w1.T)


def test_multicritic_config_errors():
    with pytest.raises(ConfigError, match="reward_terms"):
        PPO(_cartpole(), {"multi_critic": True}, seed=0, device="cpu")
    with pytest.raises(ConfigError, match="bogus"):
        PPO(_cartpole(plugin=_TermPlugin()), {**TINY, "multi_critic": True, "critic_terms": ["bogus"]},
            seed=0, device="cpu").learn(64, progress_bar=False)
    with pytest.raises(ConfigError, match="no critic"):
        PPO(_cartpole(plugin=_TermPlugin()), {"multi_critic": True, "term_weights": {"nope": 1.0}}, seed=0, device="cpu")
    with pytest.raises(ConfigError, match="only applies"):
        PPOConfig.from_dict({"critic_terms": ["a"]})


# --------------------------------------------------------------------------- checkpoints
def _pendulum(n: int = 2):
    return gym.make_vec("Pendulum-v1", num_envs=n, vectorization_mode="sync")


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    cfg = {"n_steps": 32, "batch_size": 16, "n_epochs": 2, "norm_obs": True, "norm_reward": True, "ent_coef": 0.01}
    full = PPO(_pendulum(), cfg, seed=5, device="cpu")
    full.learn(4 * 64, progress_bar=False)

    part = PPO(_pendulum(), cfg, seed=5, device="cpu")
    part.learn(4 * 64, progress_bar=False, metrics_hook=lambda m: m["updates"] < 2)  # "killed" after 2 updates
    assert part.num_timesteps == 128
    path = part.save(tmp_path / "ckpt.pt")
    resumed = PPO.load(path, env=part.env, device="cpu", reset_env=False)
    del part
    assert resumed.num_timesteps == 128 and resumed.n_updates == 2
    resumed.learn(2 * 64, progress_bar=False, reset_num_timesteps=False)

    assert resumed.num_timesteps == full.num_timesteps == 256
    assert _same(_params(resumed), _params(full))
    assert torch.equal(resumed._flat_grad, full._flat_grad)
    sa, sb = resumed.optimizer.state_dict()["state"], full.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k][n], sb[k][n]) for k in sb for n in ("exp_avg", "exp_avg_sq", "step"))
    np.testing.assert_array_equal(resumed.obs_rms.mean, full.obs_rms.mean)
    np.testing.assert_array_equal(resumed.ret_rms.var, full.ret_rms.var)
    assert resumed.obs_rms.count == full.obs_rms.count


def test_checkpoint_round_trip_and_fresh_env_resume_is_reproducible(tmp_path):
    cfg = {"n_steps": 32, "batch_size": 16, "n_epochs": 2, "norm_obs": True}
    agent = PPO(_pendulum(), cfg, seed=7, device="cpu")
    agent.learn(64, progress_bar=False)
    path = agent.save(tmp_path / "a.pt")
    loaded = PPO.load(path, device="cpu")  # predict-only
    assert _same(_params(agent), _params(loaded))
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    a, state = loaded.predict(obs[0])
    assert state is None and a.shape == (1,) and -2.0 <= a[0] <= 2.0
    with pytest.raises(ConfigError, match="no env"):
        loaded.learn(32, progress_bar=False)
    # resuming twice in fresh envs from the same checkpoint gives the same run
    runs = []
    for _ in range(2):
        r = PPO.load(path, env=_pendulum(), device="cpu")
        r.learn(64, progress_bar=False, reset_num_timesteps=False)
        runs.append(_params(r))
    assert _same(*runs)
    assert not _same(runs[0], _params(agent))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError):
        PPO.load(tmp_path / "junk.pt")


# --------------------------------------------------------------------------- learning
def test_cartpole_return_improves_clearly():
    env = _cartpole(n=8, same_step=True)
    log: list[dict] = []
    cfg = {"n_steps": 64, "batch_size": 128, "n_epochs": 8, "learning_rate": 1e-3, "gamma": 0.98, "gae_lambda": 0.9}
    agent = PPO(env, cfg, seed=0, device="cpu", metrics_hook=log.append)
    agent.learn(30_000, progress_bar=False)
    first = np.mean([e["return"] for e in log[0]["episodes"]])
    last = log[-1]["learned_return"]  # mean of the last 100 episodes
    assert first < 40
    assert last > 100 and last > 4 * first, (first, last)
    assert log[-1]["timesteps"] >= 30_000 and log[-1]["fps"] > 0
    assert log[-1]["learning_rate"] < 0.02 * 1e-3  # annealed to ~0


def test_env_reward_and_success_are_tracked():
    env = rr.VectorRewardWrapper(_count_vec(n=2, length=3, truncate=False), "constant:value=1")
    log: list[dict] = []
    PPO(env, TINY, seed=0, device="cpu", metrics_hook=log.append).learn(32, progress_bar=False)
    eps = log[0]["episodes"]
    assert eps and all(e["return"] == 3.0 and e["env_return"] == 60.0 and e["length"] == 3 for e in eps)
    assert log[0]["success_rate"] == 1.0 and log[0]["env_return"] == 60.0


# --------------------------------------------------------------------------- config, predict, presets
def test_bad_config_raises_config_error():
    for bad in ({"n_steps": 0}, {"batch_size": 1}, {"gamma": 1.5}, {"learning_rate": -1}, {"activation": "swish"},
                {"net_arch": {"pi": [64]}}, {"clip_range_vf": 0}, {"anneal_lr": "yes"}, {"n_stepz": 3}):
        with pytest.raises(ConfigError):
            PPOConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="vector env"):
        PPO(gym.make("CartPole-v1"))
    with pytest.raises(ConfigError, match="autoreset"):
        PPO(_count_vec(mode=AutoresetMode.DISABLED))
    with pytest.raises(ConfigError, match="seed"):
        PPO(_cartpole(), seed=-1)
    with pytest.raises(ConfigError, match="total_timesteps"):
        PPO(_cartpole(), TINY, device="cpu").learn(-5)


def test_predict_discrete_single_and_batch():
    agent = PPO(_cartpole(), TINY, seed=0, device="cpu")
    a, _ = agent.predict(np.zeros(4, dtype=np.float32))
    assert np.ndim(a) == 0 and a in (0, 1)
    b, _ = agent.predict(np.zeros((3, 4), dtype=np.float32), deterministic=False)
    assert b.shape == (3,)
    with pytest.raises(ConfigError):
        agent.predict(np.zeros(5))


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(100, 3))
    rms = RunningMeanStd((3,), epsilon=0.0)
    rms.count = 0.0
    for chunk in (x[:1], x[1:40], x[40:41], x[41:]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, x.var(0), rtol=1e-10)


def test_presets_and_make_agent():
    mj = load_preset("mujoco")
    assert mj["norm_obs"] is True and not mj.get("multi_critic")
    mc = load_preset("mujoco", {"n_steps": 64}, agent="ppo-multicritic")
    assert mc["multi_critic"] is True and mc["n_steps"] == 64
    with pytest.raises(ConfigError):
        load_preset(None, {"bogus": 1})
    with pytest.raises(ConfigError):
        load_preset(None, agent="sac")
    agent = make_agent("ppo", _cartpole(), family="classic", overrides={"n_steps": 8}, seed=0, device="cpu")
    assert agent.config.n_steps == 8 and agent.config.ent_coef == 0.01
    assert math.isclose(agent.config.learning_rate, 2.5e-4)

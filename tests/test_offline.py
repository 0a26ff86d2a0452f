"""Tests of offline datasets (collection, files, Minari, relabelling), IQL losses and a tiny IQL run, demos."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from robo_reward.core.errors import ConfigError
from robo_reward.offline.dataset import OfflineDataset, collect_dataset, load_dataset, relabel
from robo_reward.offline.iql import IQL, IQLConfig, awr_weights, expectile_loss, q_target

warnings.filterwarnings("ignore", category=UserWarning)


# ----------------------------------------------------------------------------- IQL losses


def test_expectile_loss_hand_computed():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    # tau=0.7: positive diffs weigh 0.7, negative 0.3 -> [0.7*4, 0.3*1, 0.7*0.25, 0.3*9] / 4
    expected = (2.8 + 0.3 + 0.175 + 2.7) / 4
    assert float(expectile_loss(diff, 0.7)) == pytest.approx(expected)
    assert float(expectile_loss(diff, 0.5)) == pytest.approx(0.5 * float((diff**2).mean()))


def test_awr_weights_clip_at_max():
    adv = torch.tensor([0.0, 1.0, -1.0, 2.0])
    w = awr_weights(adv, beta=3.0, max_weight=100.0)
    np.testing.assert_allclose(w.numpy(), [1.0, np.exp(3.0), np.exp(-3.0), 100.0], rtol=1e-6)  # e^6 > 100


def test_twin_q_target():
    r = torch.tensor([1.0, 0.5])
    term = torch.tensor([0.0, 1.0])
    next_v = torch.tensor([2.0, 10.0])
    np.testing.assert_allclose(q_target(r, term, next_v, 0.9).numpy(), [1.0 + 0.9 * 2.0, 0.5])
    # the value target takes the smaller of the two target Qs
    agent = IQL(3, 1, IQLConfig(hidden=(8,)), device="cpu")
    s, a = torch.zeros(4, 3), torch.zeros(4, 1)
    q1, q2 = agent.q_target(s, a)
    assert torch.equal(torch.min(q1, q2), torch.min(*agent.q_target(s, a)))


def _bandit_dataset(n=2000, seed=0):
    """One-step task: reward = -(a - 0.5 s)^2, actions uniform; the best action is a = 0.5 s."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    r = -((a - 0.5 * s) ** 2).sum(1).astype(np.float32)
    return OfflineDataset(s, a, r, s.copy(), np.ones(n, bool), np.zeros(n, bool), np.arange(n), r.copy())


def test_tiny_iql_run_improves_over_start(tmp_path):
    ds = _bandit_dataset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: thread start-up costs more than it saves on shared cores
    try:
        agent = IQL.for_dataset(ds, IQLConfig(hidden=(32, 32), batch_size=128, lr=3e-3, beta=10.0), device="cpu")
        probe = np.linspace(-1, 1, 21, dtype=np.float32)[:, None]

        def regret():
            return float(((agent.act(probe) - 0.5 * probe) ** 2).mean())

        before = regret()
        hist = agent.fit(steps=500, log_every=250)
        after = regret()
    finally:
        torch.set_num_threads(threads)
    assert len(hist) == 2 and all(np.isfinite(list(h.values())).all() for h in hist)
    assert after < 0.5 * before and after < 0.02
    path = agent.save(tmp_path / "iql.pt")
    again = IQL.load(path, device="cpu")
    np.testing.assert_allclose(again.act(probe), agent.act(probe), rtol=1e-6)


def _ref_q(weights, biases, s, a):
    """The twin Q written member by member (a reference for the batched ensemble)."""
    out = []
    for k in range(weights[0].shape[0]):
        h = torch.cat([s, a], -1)
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w[k] + b[k]
            if i < len(weights) - 1:
                h = h.relu()
        out.append(h.squeeze(-1))
    return out


def test_fused_update_matches_three_separate_optimisers():
    """One backward of the summed losses and one Adam equal IQL's three separate updates, step by step."""
    import copy

    ds = _bandit_dataset(n=500)
    agent = IQL.for_dataset(ds, IQLConfig(hidden=(16, 16), batch_size=64, lr=1e-3), device="cpu")
    cfg = agent.config
    v_ref, pi_ref = copy.deepcopy(agent.v), copy.deepcopy(agent.policy)
    qw = [w.detach().clone().requires_grad_() for w in agent.q.weights]
    qb = [b.detach().clone().requires_grad_() for b in agent.q.biases]
    tw = [w.detach().clone() for w in agent.q_target.weights]
    tb = [b.detach().clone() for b in agent.q_target.biases]
    v_opt = torch.optim.Adam(v_ref.parameters(), lr=cfg.lr, foreach=False)
    q_opt = torch.optim.Adam(qw + qb, lr=cfg.lr, foreach=False)
    pi_opt = torch.optim.Adam(pi_ref.parameters(), lr=cfg.lr, foreach=False)
    for _ in range(5):
        batch = agent.sample()
        s, a, r, s2, d = (batch[k] for k in ("obs", "act", "rew", "next_obs", "term"))
        with torch.no_grad():
            tq = torch.min(*_ref_q(tw, tb, s, a))
            next_v = v_ref(s2).squeeze(-1)
        v = v_ref(s).squeeze(-1)
        v_loss = expectile_loss(tq - v, cfg.expectile)
        v_opt.zero_grad()
        v_loss.backward()
        v_opt.step()
        target = q_target(r, d, next_v, cfg.gamma)
        q_loss = sum((q - target).pow(2).mean() for q in _ref_q(qw, qb, s, a))
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        w = awr_weights(tq - v.detach(), cfg.beta, cfg.max_weight)
        dist = torch.distributions.Normal(torch.tanh(pi_ref.mean(s)), pi_ref.log_std.clamp(-5, 2).exp())
        pi_loss = -(w * dist.log_prob(a).sum(-1)).mean()
        pi_opt.zero_grad()
        pi_loss.backward()
        pi_opt.step()
        with torch.no_grad():
            for t, p in zip(tw + tb, qw + qb):
                t.lerp_(p, cfg.polyak)
        got = agent.update(batch)
        np.testing.assert_allclose([got["v_loss"], got["q_loss"], got["pi_loss"]],
                                   [v_loss.item(), q_loss.item(), pi_loss.item()], rtol=1e-5, atol=1e-6)
    for ours, ref in [(agent.v, v_ref), (agent.policy, pi_ref)]:
        for (k, x), y in zip(ours.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)
    for x, y in zip([*agent.q.weights, *agent.q.biases, *agent.q_target.weights, *agent.q_target.biases],
                    qw + qb + tw + tb):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-5, atol=1e-6)


def test_twin_q_loads_the_per_member_layout():
    """Checkpoints with one nn.Sequential per Q-network load into the batched ensemble."""
    from robo_reward.offline.iql import _mlp, build_twin_q

    torch.manual_seed(0)
    q1, q2 = _mlp(5, 1, (8, 8)), _mlp(5, 1, (8, 8))
    old = {**{f"q1.{k}": v for k, v in q1.state_dict().items()}, **{f"q2.{k}": v for k, v in q2.state_dict().items()}}
    ens = build_twin_q(3, 2, (8, 8))
    ens.load_state_dict(old)
    s, a = torch.randn(7, 3), torch.randn(7, 2)
    x = torch.cat([s, a], -1)
    o1, o2 = ens(s, a)
    torch.testing.assert_close(o1, q1(x).squeeze(-1))
    torch.testing.assert_close(o2, q2(x).squeeze(-1))


def test_checkpoint_continues_training_identically(tmp_path):
    """Optimiser state and the sampling generator are saved: a reloaded agent trains on exactly as the original."""
    ds = _bandit_dataset(n=300)
    agent = IQL.for_dataset(ds, IQLConfig(hidden=(8,), batch_size=32, seed=3), device="cpu")
    agent.train_steps(20)
    path = agent.save(tmp_path / "a.pt")
    again = IQL.load(path, device="cpu")
    again.load_data(ds)
    assert again.steps == 20
    torch.testing.assert_close(again.obs_mean, agent.obs_mean)
    la, lb = agent.train_steps(15), again.train_steps(15)
    assert la == lb
    for x, y in zip(agent.policy.parameters(), again.policy.parameters()):
        assert torch.equal(x, y)


def test_action_bounds_scale_to_the_policy_range():
    ds = _bandit_dataset(n=200)
    ds.actions = ds.actions * 3.0
    agent = IQL(1, 1, IQLConfig(hidden=(8,)), device="cpu")
    agent.set_action_bounds([-3.0], [3.0])
    agent.load_data(ds)
    stored = agent.sample(256)["act"]
    assert float(stored.abs().max()) <= 1.0
    a = agent.act(np.zeros(1, np.float32))
    assert a.shape == (1,) and abs(float(a[0])) <= 3.0
    with pytest.raises(ConfigError, match="bounds"):
        agent.set_action_bounds([1.0], [0.0])


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def small_dataset():
    return collect_dataset("metaworld-reach-v3", n_episodes=3, policy="expert@0.5+noisy:0.3@0.25+random@0.25",
                           seed=0, max_steps=20, frames=True, render_overrides={"width": 32, "height": 32})


def test_collect_and_file_round_trip(small_dataset, tmp_path):
    ds = small_dataset
    assert len(ds) == 60 and ds.n_episodes == 3
    assert ds.frames.shape == (60, 32, 32, 3) and ds.frames.dtype == np.uint8
    assert {"near_object", "grasp_success", "is_success"} <= set(ds.infos)
    assert ds.truncations.reshape(3, 20)[:, -1].all()
    np.testing.assert_array_equal(ds.observations[1:20], ds.next_observations[:19])
    again = load_dataset(ds.save(tmp_path / "d.npz"))
    for k in ("observations", "actions", "rewards", "frames", "episode_ids"):
        np.testing.assert_array_equal(getattr(again, k), getattr(ds, k))
    assert again.metadata["task"] == "metaworld-reach-v3"


def test_relabel_round_trip(small_dataset, tmp_path):
    ds = small_dataset
    spec = {"name": "python", "code": "def reward(obs, action, next_obs):\n    return -abs(action).sum(-1)\n"}
    try:
        out = relabel(ds, spec, batch_size=7)
    except ConfigError:
        out = relabel(ds, "constant:value=2.0", batch_size=7)
        np.testing.assert_allclose(out.rewards, 2.0)
    else:
        np.testing.assert_allclose(out.rewards, -np.abs(ds.actions).sum(-1), rtol=1e-5)
    np.testing.assert_array_equal(out.env_rewards, ds.env_rewards)
    again = load_dataset(out.save(tmp_path / "r.npz"))
    np.testing.assert_array_equal(again.rewards, out.rewards)
    # the task card is taken from the dataset: sparse-success reads its success signal
    succ = relabel(ds, "sparse-success")
    np.testing.assert_array_equal(succ.rewards, ds.infos["success"])


def test_relabel_with_frames_plugin_needs_frames(small_dataset, tmp_path):
    pytest.importorskip("torchvision", reason="needs torchvision (the vlm extra); scripts/setup.sh leaves it out in its CPU-only torch mode")
    from dataclasses import replace

    from robo_reward.rewards.perceptual import BackboneSpec, fit_perceptual_reward

    spec = BackboneSpec(pretrained=None, image_size=32)
    model = fit_perceptual_reward([small_dataset.frames[:20]], n_steps=2, min_length=3, top_k=8, backbone=spec,
                                  device="cpu").save(tmp_path / "pp.npz")
    out = relabel(small_dataset, f"perceptual:model_path={model},device=cpu", batch_size=16)
    assert out.rewards.shape == (60,) and "term/stage" in out.infos
    with pytest.raises(ConfigError, match="frames"):
        relabel(replace(small_dataset, frames=None), f"perceptual:model_path={model},device=cpu")


def test_minari_round_trip(small_dataset, tmp_path):
    pytest.importorskip("minari")
    pytest.importorskip("h5py")
    from robo_reward.offline.dataset import from_minari, to_minari

    to_minari(small_dataset, "robo_reward/reach/mixed-v0", data_path=tmp_path)
    back = from_minari("robo_reward/reach/mixed-v0", data_path=tmp_path)
    for k in ("observations", "next_observations", "actions", "rewards", "terminations", "truncations"):
        np.testing.assert_allclose(getattr(back, k), getattr(small_dataset, k), rtol=1e-6)
    np.testing.assert_array_equal(back.infos["near_object"], small_dataset.infos["near_object"])


def test_bad_policy_name():
    with pytest.raises(ConfigError, match="unknown policy"):
        collect_dataset("metaworld-reach-v3", 1, policy="greedy")


def test_demos_have_monotone_phases(tmp_path):
    from robo_reward.offline.demos import Demo, collect_demos

    (demo,) = collect_demos("metaworld-pick-place-v3", n=1, max_steps=80, render_overrides={"width": 32, "height": 32})
    assert demo.frames.shape[1:] == (32, 32, 3) and len(demo.frames) == len(demo.phases)
    assert np.all(np.diff(demo.phases) >= 0) and demo.phases.max() >= 2  # the expert at least grasps
    again = Demo.load(demo.save(tmp_path / "demo.npz"))
    assert again.phase_boundaries == demo.phase_boundaries

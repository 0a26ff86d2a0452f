"""Preference-learned rewards: Bradley–Terry, active queries, B-Pref teachers, HERON, VPL, the plugin, relabelling."""

from __future__ import annotations

import math
import sys

import gymnasium as gym
import numpy as np
import pytest

import robo_reward as rr
from robo_reward.core.errors import ConfigError
from robo_reward.rewards.preference import PreferencePairs, SegmentBatch
from robo_reward.rewards.preference import plugin as pref_plugin  # registers "preference"
from robo_reward.rewards.preference.bt import (
    RewardEnsemble,
    RewardModelConfig,
    query_scores,
    select_queries,
    train_bradley_terry,
)
from robo_reward.rewards.preference.heron import HERONTeacher, heron_decisions, heron_labels, heron_margins
from robo_reward.rewards.preference.plugin import PreferenceReward, PreferenceTrainer, collect_segments
from robo_reward.rewards.preference.teachers import (
    BPREF_PRESETS,
    BPrefTeacher,
    HumanTeacher,
    RegretTeacher,
    bpref_margin,
)

from tests.toy_envs import CountEnv

D = 6
W_TRUE = np.array([1.0, -0.8, 0.5, 0.0, 1.5, -0.3])


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small nets on a shared CPU: one torch thread is several times faster than two that wait for each other."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _segments(rng: np.random.Generator, n: int, length: int = 5, d: int = D) -> SegmentBatch:
    return SegmentBatch(obs=rng.normal(size=(n, length, d)).astype(np.float32))


def _linear_reward(w: np.ndarray):
    return lambda obs, action, next_obs: obs @ w


def _rewards_seg(r1: list[float], r2: list[float]) -> tuple[SegmentBatch, SegmentBatch]:
    """Two single-pair batches with the given per-step env rewards."""
    r1a, r2a = np.asarray([r1], dtype=float), np.asarray([r2], dtype=float)
    obs = np.zeros((1, r1a.shape[1], 1), np.float32)
    return SegmentBatch(obs=obs, rewards=r1a), SegmentBatch(obs=obs.copy(), rewards=r2a)


# ============================================================================ imports


def test_importing_the_package_does_not_import_torch_or_regret():
    import subprocess

    code = (
        "import sys; import robo_reward.rewards.preference as p; import robo_reward.rewards.preference.plugin; "
        "print('torch' in sys.modules, 'robo_reward.rewards.preference.regret' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# ============================================================================ Bradley–Terry


@pytest.fixture(scope="module")
def linear_pairs() -> PreferencePairs:
    rng = np.random.default_rng(0)
    s1, s2 = _segments(rng, 1200), _segments(rng, 1200)
    teacher = BPrefTeacher(beta=1.0, reward_fn=_linear_reward(W_TRUE), seed=1)
    return teacher.query(s1, s2)


def test_bradley_terry_linear_model_recovers_the_true_weights(linear_pairs):
    model = RewardEnsemble(RewardModelConfig(obs_shape=D, use_action=False, hidden=(), ensemble_size=1))
    result = train_bradley_terry(model, linear_pairs, epochs=250, batch_size=len(linear_pairs), lr=0.05)
    w = model.members[0].body[0].weight.detach().numpy().ravel()
    assert np.corrcoef(w, W_TRUE)[0, 1] > 0.98
    # stochastic teacher with beta = 1: the maximum-likelihood weights are the true ones (not just their direction)
    assert np.allclose(w, W_TRUE, atol=0.25)
    assert result.losses[-1] < result.losses[0]


def test_bradley_terry_mlp_ensemble_recovers_the_reward(linear_pairs):
    model = RewardEnsemble(RewardModelConfig(obs_shape=D, use_action=False, hidden=(32, 32), ensemble_size=2, seed=3))
    result = train_bradley_terry(model, linear_pairs, epochs=60, batch_size=200, lr=3e-3, weight_decay=1e-4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, D)).astype(np.float32)
    assert np.corrcoef(model.predict(x), x @ W_TRUE)[0, 1] > 0.95
    members = model.predict_members(x)
    assert members.shape == (2, 3000) and not np.allclose(members[0], members[1])  # independent members
    assert min(result.accuracy) > 0.85
    # held-out pairs ranked like the true reward
    h1, h2 = _segments(rng, 500), _segments(rng, 500)
    p = model.preference_probabilities(h1, h2).mean(0)
    truth = (h1.obs @ W_TRUE).sum(1) > (h2.obs @ W_TRUE).sum(1)
    assert np.mean((p > 0.5) == truth) > 0.9


def test_reward_model_uses_obs_action_and_next_obs_features():
    cfg = RewardModelConfig(obs_shape=(2,), action_shape=(1,), use_next_obs=True, hidden=(), ensemble_size=1)
    model = RewardEnsemble(cfg)
    lin = model.members[0].body[0]
    with __import__("torch").no_grad():
        lin.weight[:] = __import__("torch").tensor([[1.0, 2.0, 10.0, 100.0, 1000.0]])
        lin.bias.zero_()
    r = model.predict(np.array([[1.0, 1.0]]), np.array([[1.0]]), np.array([[0.0, 1.0]]))
    assert r.tolist() == [1.0 + 2.0 + 10.0 + 0.0 + 1000.0]
    assert model.requires == {"obs", "action", "next_obs"}
    with pytest.raises(ConfigError, match="next_obs"):
        model.predict(np.zeros((1, 2)), np.zeros((1, 1)))
    with pytest.raises(ConfigError, match="shape"):
        model.predict(np.zeros((1, 3)), np.zeros((1, 1)), np.zeros((1, 2)))


@pytest.mark.parametrize(
    "kwargs",
    [{"obs_shape": 3, "hidden": (0,)}, {"obs_shape": 3, "activation": "nope"}, {"obs_shape": 3, "ensemble_size": 0},
     {"obs_shape": 3, "use_action": True}, {"obs_shape": 3, "use_obs": False, "use_action": False}],
)
def test_reward_model_config_rejects_bad_input(kwargs):
    kwargs.setdefault("use_action", False)
    with pytest.raises(ConfigError):
        RewardModelConfig(**kwargs)


def test_train_bradley_terry_rejects_bad_input(linear_pairs):
    model = RewardEnsemble(RewardModelConfig(obs_shape=D, use_action=False, hidden=()))
    with pytest.raises(ConfigError):
        train_bradley_terry(model, linear_pairs, epochs=0)
    with pytest.raises(ConfigError):
        train_bradley_terry("not a model", linear_pairs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PreferencePairs(linear_pairs.seg1[[0, 1]], linear_pairs.seg2[[0, 1]], np.array([0.0, 1.5]))


def test_save_and_load_round_trip(tmp_path, linear_pairs):
    model = RewardEnsemble(RewardModelConfig(obs_shape=D, use_action=False, hidden=(8,), ensemble_size=2, normalize=True))
    train_bradley_terry(model, linear_pairs[np.arange(50)], epochs=2)
    path = model.save(tmp_path / "m.pt")
    loaded = pref_plugin.load_reward_model(path)
    x = np.random.default_rng(0).normal(size=(7, D))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert bool(loaded.normalizer_fitted)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="could not read"):
        pref_plugin.load_reward_model(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        pref_plugin.load_reward_model(tmp_path / "missing.pt")


# ============================================================================ active queries


def _hand_built_ensemble() -> RewardEnsemble:
    """Three linear members r_k(x) = w_k x on a 1-d observation, w = (1, 2, -1)."""
    import torch

    model = RewardEnsemble(RewardModelConfig(obs_shape=1, use_action=False, hidden=(), ensemble_size=3))
    with torch.no_grad():
        for member, w in zip(model.members, (1.0, 2.0, -1.0)):
            member.body[0].weight.fill_(w)
            member.body[0].bias.zero_()
    return model


def test_disagreement_picks_the_pairs_with_the_highest_variance_and_entropy_the_most_uncertain():
    model = _hand_built_ensemble()
    diffs = np.array([0.0, 0.3, 3.0, -1.2, 0.05, 8.0, 1.0])  # x1 - x2 of each candidate (segments of one step)
    seg1 = SegmentBatch(obs=diffs.reshape(-1, 1, 1).astype(np.float32))
    seg2 = SegmentBatch(obs=np.zeros((len(diffs), 1, 1), np.float32))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    probs = np.stack([sig(w * diffs) for w in (1.0, 2.0, -1.0)])
    np.testing.assert_allclose(model.preference_probabilities(seg1, seg2), probs, rtol=1e-5)
    var = probs.var(0)
    picked = select_queries(model, seg1, seg2, 3, "disagreement")
    assert list(picked) == list(np.argsort(-var)[:3])
    assert 0 not in picked and 4 not in picked  # members agree (P = 0.5) when the segments are alike
    # entropy: the mean member entropy is largest where every member is unsure, i.e. diff = 0
    ent_pick = select_queries(model, seg1, seg2, 2, "entropy")
    assert list(ent_pick) == [0, 4]
    np.testing.assert_allclose(query_scores(probs, "disagreement"), var)
    # uniform: n distinct indices, reproducible by seed
    u = select_queries(None, seg1, seg2, 4, "uniform", seed=3)
    assert len(set(u.tolist())) == 4 and list(u) == list(select_queries(None, seg1, seg2, 4, "uniform", seed=3))
    with pytest.raises(ConfigError):
        select_queries(model, seg1, seg2, 3, "random-ish")
    with pytest.raises(ConfigError):
        select_queries(model, seg1, seg2, 99, "disagreement")


# ============================================================================ B-Pref teachers


def test_bpref_rational_teacher_is_deterministic_and_prefers_higher_return():
    rng = np.random.default_rng(0)
    s1, s2 = _segments(rng, 400), _segments(rng, 400)
    fn = _linear_reward(W_TRUE)
    a = BPrefTeacher(reward_fn=fn, seed=0).label(s1, s2)
    b = BPrefTeacher(reward_fn=fn, seed=123).label(s1, s2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ((s1.obs @ W_TRUE).sum(1) > (s2.obs @ W_TRUE).sum(1)).astype(float))
    # a very large beta behaves like the perfectly rational teacher
    c = BPrefTeacher(beta=1e6, reward_fn=fn, seed=5).label(s1, s2)
    np.testing.assert_array_equal(a, c)


def test_bpref_stochastic_teacher_follows_the_bradley_terry_probability():
    s1, s2 = _rewards_seg([1.0, 1.0], [0.0, 0.0])  # return difference 2
    many = lambda s: s[np.zeros(20000, dtype=int)]  # noqa: E731
    labels = BPrefTeacher(beta=0.5, seed=0).label(many(s1), many(s2))
    assert abs(labels.mean() - 1 / (1 + math.exp(-1.0))) < 0.015  # sigma(beta * 2)
    random = BPrefTeacher(beta=0.0, seed=0).label(many(s1), many(s2))
    assert abs(random.mean() - 0.5) < 0.015


def test_bpref_mistake_rate_flips_about_eps_of_the_labels():
    rng = np.random.default_rng(1)
    s1, s2 = _segments(rng, 20000, length=2), _segments(rng, 20000, length=2)
    fn = _linear_reward(W_TRUE)
    oracle = BPrefTeacher(reward_fn=fn).label(s1, s2)
    noisy = BPrefTeacher(eps_mistake=0.2, reward_fn=fn, seed=2).label(s1, s2)
    assert abs(np.mean(noisy != oracle) - 0.2) < 0.012


def test_bpref_equal_threshold_gives_half_labels_and_skip_drops_pairs():
    obs = np.zeros((4, 3, 1), np.float32)
    r1 = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.1], [-5.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    r2 = np.array([[1.0, 1.0, 0.9], [1.0, 1.0, 1.0], [-5.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    s1, s2 = SegmentBatch(obs=obs, rewards=r1), SegmentBatch(obs=obs, rewards=r2)
    # |ΔR| = 0.1, 2.9, 1, 6
    equal = BPrefTeacher(equal_threshold=1.5).label(s1, s2)
    np.testing.assert_array_equal(equal, [0.5, 0.0, 0.5, 1.0])
    # max(R1, R2) = 3, 3, -5, 6: skip where both segments are worse than 0
    skip = BPrefTeacher(skip_threshold=0.0)
    labels = skip.label(s1, s2)
    assert np.isnan(labels[2]) and not np.isnan(labels[[0, 1, 3]]).any()
    answered = skip.query(s1, s2)
    assert len(answered) == 3 and answered.labels.tolist() == [1.0, 0.0, 1.0]
    # mistakes never touch "equal" labels
    flips = BPrefTeacher(equal_threshold=1.5, eps_mistake=1.0).label(s1, s2)
    np.testing.assert_array_equal(flips, [0.5, 1.0, 0.5, 0.0])


def test_bpref_myopic_teacher_weighs_later_steps_more():
    early, late = _rewards_seg([1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.9])
    assert BPrefTeacher(gamma=1.0).label(early, late).tolist() == [1.0]  # total 1 > 0.9
    myopic = BPrefTeacher(gamma=0.9)
    np.testing.assert_allclose(myopic.myopic_weights(5), [0.9**4, 0.9**3, 0.9**2, 0.9, 1.0])
    assert myopic.label(early, late).tolist() == [0.0]  # 0.9^4 = 0.66 < 0.9: the late reward wins


def test_bpref_presets_and_bad_parameters():
    assert set(BPREF_PRESETS) == {"oracle", "stoc", "mistake", "skip", "equal", "myopic"}
    margin = bpref_margin(mean_episode_return=500.0, segment_length=50, episode_length=1000)
    assert margin == 25.0
    t = BPrefTeacher.preset("equal", margin)
    assert t.equal_threshold == pytest.approx(2.5) and t.skip_threshold is None and math.isinf(t.beta)
    assert BPrefTeacher.preset("myopic").gamma == 0.9 and BPrefTeacher.preset("stoc").beta == 1.0
    with pytest.raises(ConfigError, match="margin"):
        BPrefTeacher.preset("skip")
    for bad in ({"beta": -1.0}, {"gamma": 0.0}, {"gamma": 1.5}, {"eps_mistake": 2.0}, {"equal_threshold": -1.0}):
        with pytest.raises(ConfigError):
            BPrefTeacher(**bad)
    s1, _ = _rewards_seg([1.0], [0.0])
    with pytest.raises(ConfigError, match="true reward"):
        BPrefTeacher().label(SegmentBatch(obs=s1.obs), SegmentBatch(obs=s1.obs))


def test_regret_teacher_matches_the_regret_model():
    from robo_reward.rewards.preference.regret import label_preferences, segment_regret
    from robo_reward.tabular import random_gridworld, sample_segments

    world = random_gridworld(5, seed=0)
    mdp = world.mdp
    s1 = sample_segments(mdp, 200, 3, seed=1)
    s2 = sample_segments(mdp, 200, 3, seed=2)
    teacher = RegretTeacher(mdp, noiseless=True)
    labels = teacher.label(s1, s2)
    np.testing.assert_array_equal(labels, label_preferences(mdp, s1, s2, noiseless=True))
    reg1, reg2 = segment_regret(mdp, s1), segment_regret(mdp, s2)
    decided = np.abs(reg1 - reg2) > 1e-9
    assert decided.sum() > 50
    np.testing.assert_array_equal(labels[decided], (reg1 < reg2)[decided].astype(float))
    # the same segments as a SegmentBatch of integer states/actions (all steps live)
    live = s1.mask.all(1) & s2.mask.all(1)
    as_batch = lambda s: SegmentBatch(obs=s.states[live], action=s.actions[live], next_obs=s.next_states[live])  # noqa: E731
    np.testing.assert_array_equal(teacher.label(as_batch(s1), as_batch(s2)), labels[live])
    with pytest.raises(ConfigError):
        RegretTeacher(mdp, model="vibes")


def test_human_teacher_writes_two_clips_and_reads_the_answer(tmp_path):
    import imageio.v2 as imageio

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 4, 16, 16, 3), dtype=np.uint8)
    seg1 = SegmentBatch(obs=np.zeros((3, 4, 1)), frames=frames)
    seg2 = SegmentBatch(obs=np.zeros((3, 4, 1)), frames=frames[::-1].copy())
    answers = iter(["what?", "1", "2", "s"])
    shown: list[str] = []
    teacher = HumanTeacher(tmp_path / "clips", input_fn=lambda prompt: next(answers), print_fn=shown.append)
    pairs = teacher.query(seg1, seg2)
    assert pairs.labels.tolist() == [1.0, 0.0]  # the third pair was skipped
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        f"pair000{i}_{k}.gif" for i in range(3) for k in (1, 2)
    ]
    assert len(imageio.mimread(tmp_path / "clips" / "pair0000_1.gif")) == 4
    assert any("pair0000_1.gif" in line for line in shown) and any("please answer" in line for line in shown)
    mp4 = HumanTeacher(tmp_path / "mp4", fmt="mp4", input_fn=lambda prompt: "e", print_fn=lambda s: None)
    assert mp4.label(seg1[[0]], seg2[[0]]).tolist() == [0.5]
    assert (tmp_path / "mp4" / "pair0000_1.mp4").stat().st_size > 0
    with pytest.raises(ConfigError, match="render=True"):
        teacher.label(SegmentBatch(obs=np.zeros((1, 4, 1))), SegmentBatch(obs=np.zeros((1, 4, 1))))
    never = HumanTeacher(tmp_path, input_fn=lambda prompt: "maybe", print_fn=lambda s: None, max_attempts=2)
    with pytest.raises(ConfigError, match="no valid answer"):
        never.label(seg1[[0]], seg2[[0]])


# ============================================================================ HERON


def test_heron_first_factor_decides_ties_fall_through_and_full_ties_are_dropped():
    margins = np.array([1.0, 1.0])
    z1 = np.array([[3.0, 0.0], [0.5, 5.0], [0.5, 0.0], [0.2, 0.1]])
    z2 = np.array([[0.0, 9.0], [0.0, 0.0], [0.0, 5.0], [0.0, 0.0]])
    labels, level = heron_decisions(z1, z2, margins)
    # 0: factor 0 decides (3 > 1) for the first although factor 1 favours the second
    # 1, 2: factor 0 ties (0.5 <= 1), factor 1 decides for the first / the second
    # 3: ties at every level -> dropped (NaN)
    np.testing.assert_array_equal(labels[:3], [1.0, 1.0, 0.0])
    assert np.isnan(labels[3])
    assert level.tolist() == [0, 1, 1, -1]
    # "lower is better" for factor 0 flips the first decision
    flipped = heron_labels(z1, z2, margins, higher_is_better=[False, True])
    assert flipped[0] == 0.0
    # margins: sigma_mult * std over the data
    z = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    np.testing.assert_allclose(heron_margins(z, 2.0), [2.0 * np.std([0, 2, 4]), 0.0])
    with pytest.raises(ConfigError):
        heron_labels(z1, z2, np.array([1.0]))


def test_heron_teacher_labels_segments_and_bradley_terry_learns_the_ranking():
    rng = np.random.default_rng(0)
    s1, s2 = _segments(rng, 600, length=3, d=3), _segments(rng, 600, length=3, d=3)
    teacher = HERONTeacher(
        {"speed": lambda o, a, n: o[:, 1], "goal": lambda o, a, n: o[:, 0], "noise": lambda o, a, n: o[:, 2]},
        ranking=["goal", "speed"],
        sigma_mult=0.5,
    )
    teacher.fit_margins(SegmentBatch.concatenate([s1, s2]))
    z1, z2 = teacher.factor_values(s1), teacher.factor_values(s2)
    np.testing.assert_allclose(z1[:, 0], s1.obs[:, :, 0].sum(1), atol=1e-5)
    pairs = teacher.query(s1, s2)
    tied = (np.abs(z1 - z2) <= teacher.margins).all(1)
    assert len(pairs) == 600 - tied.sum() and tied.sum() > 0
    decided_by_goal = np.abs(z1[:, 0] - z2[:, 0]) > teacher.margins[0]
    all_labels = teacher.label(s1, s2)
    np.testing.assert_array_equal(all_labels[decided_by_goal], (z1[decided_by_goal, 0] > z2[decided_by_goal, 0]))
    model = RewardEnsemble(RewardModelConfig(obs_shape=3, use_action=False, hidden=(), ensemble_size=1))
    train_bradley_terry(model, pairs, epochs=200, batch_size=len(pairs), lr=0.05)
    w = model.members[0].body[0].weight.detach().numpy().ravel()
    assert w[0] > w[1] > 0 and abs(w[2]) < 0.5 * w[1]  # goal > speed, the unranked factor ignored
    with pytest.raises(ConfigError):
        HERONTeacher({"a": lambda o, a, n: o[:, 0]}, ranking=["b"])


# ============================================================================ VPL


def test_vpl_separates_two_users_with_opposite_preferences():
    from robo_reward.rewards.preference.vpl import VPLConfig, VPLModel, train_vpl

    rng = np.random.default_rng(0)
    d, length = 4, 2
    w = np.array([1.0, -1.0, 0.5, 0.0])

    def user(sign: float, n: int) -> PreferencePairs:
        s1, s2 = _segments(rng, n, length, d), _segments(rng, n, length, d)
        return BPrefTeacher(reward_fn=_linear_reward(sign * w)).query(s1, s2)

    users = [user(+1.0, 48) for _ in range(8)] + [user(-1.0, 48) for _ in range(8)]
    model = VPLModel(VPLConfig(obs_shape=d, use_action=False, latent_dim=4, hidden=(32, 32), encoder_hidden=(32,)))
    result = train_vpl(model, users, steps=500, users_per_batch=8, context_size=12, kl_weight=0.01, lr=3e-3)
    assert result.bce[-1] < 0.35 < result.bce[0]
    held1, held2 = _segments(rng, 400, length, d), _segments(rng, 400, length, d)
    truth = (held1.obs @ w).sum(1) > (held2.obs @ w).sum(1)
    za = model.infer_latent(user(+1.0, 12))  # new users, only their 12 labelled pairs
    zb = model.infer_latent(user(-1.0, 12))
    pa = model.preference_probability(held1, held2, za)
    pb = model.preference_probability(held1, held2, zb)
    assert np.mean((pa > 0.5) == truth) > 0.9
    assert np.mean((pb > 0.5) == ~truth) > 0.9
    assert np.mean((pa > 0.5) != (pb > 0.5)) > 0.85  # the two users rank held-out pairs oppositely


def test_vpl_model_through_the_plugin_with_a_latent(tmp_path):
    from robo_reward.rewards.preference.vpl import VPLConfig, VPLModel

    model = VPLModel(VPLConfig(obs_shape=3, use_action=False, latent_dim=2, hidden=(8,)))
    path = model.save(tmp_path / "vpl.pt", latent=[0.5, -0.5])
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    plugin = rr.make_reward(f"preference:path={path}")
    np.testing.assert_allclose(plugin.rewards(x)[0], model.predict(x, latent=[0.5, -0.5]), rtol=1e-6)
    other = rr.make_reward({"name": "preference", "path": str(path), "latent": [1.0, 1.0]})
    np.testing.assert_allclose(other.rewards(x)[0], model.predict(x, latent=[1.0, 1.0]), rtol=1e-6)
    with pytest.raises(ConfigError, match="latent"):
        rr.make_reward({"name": "preference", "path": str(path), "latent": [1.0, 2.0, 3.0]})


# ============================================================================ plugin + wrappers


@pytest.fixture(scope="module")
def reacher_model(tmp_path_factory):
    env = gym.make("Reacher-v5")
    cfg = RewardModelConfig.for_spaces(env.observation_space, env.action_space, hidden=(16,), ensemble_size=3, seed=7)
    env.close()
    model = RewardEnsemble(cfg)
    return model, model.save(tmp_path_factory.mktemp("pref") / "reacher.pt")


def test_preference_plugin_through_reward_wrapper_on_reacher(reacher_model):
    model, path = reacher_model
    assert "preference" in rr.list_rewards()
    env = rr.RewardWrapper(gym.make("Reacher-v5"), f"preference:path={path}")
    assert env.plugin.requires == {"obs", "action"}
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action = env.action_space.sample()
        nxt, reward, terminated, truncated, info = env.step(action)
        members = model.predict_members(obs[None], action[None])
        assert reward == pytest.approx(float(members.mean()), rel=1e-5, abs=1e-6)
        assert info["reward_terms"]["preference_std"] == pytest.approx(float(members.std()), rel=1e-4, abs=1e-6)
        assert info["reward_terms"]["preference_std"] > 0
        assert "env_reward" in info
        obs = nxt
    env.close()


def test_preference_plugin_through_sb3_wrapper(reacher_model):
    from stable_baselines3.common.env_checker import check_env
    from stable_baselines3.common.env_util import make_vec_env

    model, path = reacher_model
    venv = rr.SB3RewardWrapper(make_vec_env("Reacher-v5", n_envs=2, seed=0), {"name": "preference", "path": str(path), "scale": 2.0})
    obs = venv.reset()
    actions = np.stack([venv.action_space.sample() for _ in range(2)])
    _, rewards, _, infos = venv.step(actions)
    np.testing.assert_allclose(rewards, 2.0 * model.predict(obs, actions), rtol=1e-5, atol=1e-6)
    assert all("env_reward" in i for i in infos)
    venv.close()
    check_env(rr.RewardWrapper(gym.make("Reacher-v5"), PreferenceReward(model=model)), warn=False)


def test_preference_plugin_rejects_bad_arguments(reacher_model, tmp_path):
    model, path = reacher_model
    with pytest.raises(ConfigError, match="exactly one"):
        rr.make_reward("preference")
    with pytest.raises(ConfigError, match="does not exist"):
        rr.make_reward(f"preference:path={tmp_path / 'nope.pt'}")
    with pytest.raises(ConfigError, match="latent"):
        PreferenceReward(model=model, latent=[1.0])
    with pytest.raises(ConfigError, match="scale"):
        PreferenceReward(model=model, scale="big")
    with pytest.raises(ConfigError, match="RewardEnsemble or VPLModel"):
        PreferenceReward(model=object())


def test_collect_segments_stay_inside_episodes_and_record_frames():
    env = CountEnv(length=5, render_mode="rgb_array")
    segs = collect_segments(env, policy=lambda obs: np.zeros(1, np.float32), n=6, length=2, render=True, seed=0)
    assert segs.obs.shape == (6, 2, 2) and segs.action.shape == (6, 2, 1) and segs.frames.shape == (6, 2, 4, 4, 3)
    t = segs.obs[:, :, 1]
    # windows [0, 1] and [2, 3] of each 5-step episode; step 4 is left over
    assert t.tolist() == [[0, 1], [2, 3]] * 3
    np.testing.assert_array_equal(segs.next_obs[:, :, 1], t + 1)
    np.testing.assert_array_equal(segs.rewards, 10.0 * (t + 1))
    np.testing.assert_array_equal(segs.frames[:, :, 0, 0, 0], t + 1)  # the frame after each step
    assert len(set(segs.obs[:, 0, 0].tolist())) == 3  # three different episodes
    with pytest.raises(ConfigError, match="shorter than the segment"):
        collect_segments(CountEnv(length=3), n=1, length=4, max_steps=50)
    with pytest.raises(ConfigError, match="rgb_array"):
        collect_segments(CountEnv(length=3), n=1, length=2, render=True)


def test_preference_trainer_loop_learns_with_disagreement_queries():
    rng = np.random.default_rng(0)
    model = RewardEnsemble(RewardModelConfig(obs_shape=D, use_action=False, hidden=(), ensemble_size=3))
    teacher = BPrefTeacher(reward_fn=_linear_reward(W_TRUE), seed=0)
    trainer = PreferenceTrainer(model, teacher, sampler="disagreement", candidate_factor=5, seed=0,
                                train_kwargs={"epochs": 100, "batch_size": 1000, "lr": 0.05})
    trainer.add_segments(_segments(rng, 300))
    for _ in range(3):
        stats = trainer.round(40)
    assert trainer.queries == 120 and len(trainer.pairs) == trainer.labels == 120
    assert len(trainer.history) == 3 and stats["accuracy"] > 0.85
    x = rng.normal(size=(2000, D)).astype(np.float32)
    assert np.corrcoef(model.predict(x), x @ W_TRUE)[0, 1] > 0.95
    with pytest.raises(ConfigError):
        PreferenceTrainer(model, teacher, sampler="best")


# ============================================================================ SAC replay-buffer relabelling


def _pendulum_sac(reward_model, mode="replace", buffer_class=None, steps=300):
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    from robo_reward.rewards.preference.relabel import PreferenceReplayBuffer

    venv = rr.SB3RewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0), PreferenceReward(model=reward_model), mode=mode)
    sac = SAC("MlpPolicy", venv, buffer_size=1000, learning_starts=10_000, seed=0, device="cpu",
              replay_buffer_class=buffer_class or PreferenceReplayBuffer)
    sac.learn(steps)
    return sac, venv


def _pendulum_models():
    env = gym.make("Pendulum-v1")
    cfgs = [RewardModelConfig.for_spaces(env.observation_space, env.action_space, use_next_obs=True, hidden=(16,),
                                         ensemble_size=2, seed=s) for s in (0, 10)]
    return RewardEnsemble(cfgs[0]), RewardEnsemble(cfgs[1])


def test_relabelling_a_sac_buffer_changes_exactly_the_stored_rewards():
    from robo_reward.rewards.preference.relabel import relabel_replay_buffer, segments_from_replay_buffer

    old, new = _pendulum_models()
    sac, venv = _pendulum_sac(old)
    buf = sac.replay_buffer
    pos = buf.pos  # 300 steps of 2 envs
    assert pos == 150 and not buf.full
    stored = buf.rewards.copy()
    before = {k: getattr(buf, k).copy() for k in ("observations", "next_observations", "actions", "dones")}
    # relabelling with the model that produced the rewards reproduces them: actions are un-scaled correctly
    assert relabel_replay_buffer(buf, old) == pos * 2
    np.testing.assert_allclose(buf.rewards, stored, rtol=1e-5, atol=1e-5)
    relabel_replay_buffer(buf, PreferenceReward(model=new), batch_size=64)
    low, high = venv.action_space.low, venv.action_space.high
    actions = low + 0.5 * (buf.actions[:pos] + 1.0) * (high - low)
    expected = new.predict(buf.observations[:pos], actions, buf.next_observations[:pos])
    np.testing.assert_allclose(buf.rewards[:pos], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(buf.rewards[:pos], stored[:pos], atol=1e-3)
    assert np.all(buf.rewards[pos:] == 0)  # empty rows untouched
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(buf, k), v)
    # segments cut from the buffer stay inside episodes and carry the env reward
    segs = segments_from_replay_buffer(buf, 20, 8, seed=0)
    np.testing.assert_allclose(segs.obs[:, 1:], segs.next_obs[:, :-1], atol=1e-6)
    assert np.all(segs.rewards <= 0) and np.all(segs.rewards > -17)  # Pendulum's own reward
    venv.close()


def test_relabelling_in_add_mode_uses_the_stored_env_rewards():
    from stable_baselines3.common.buffers import ReplayBuffer

    from robo_reward.rewards.preference.relabel import find_reward_mix, relabel_replay_buffer

    old, new = _pendulum_models()
    sac, venv = _pendulum_sac(old, mode="add", steps=100)
    buf, pos = sac.replay_buffer, sac.replay_buffer.pos
    mix = find_reward_mix(sac.get_env())
    assert (mix.plugin_weight, mix.env_weight) == (1.0, 1.0)
    relabel_replay_buffer(buf, old, mix=mix)
    low, high = venv.action_space.low, venv.action_space.high
    actions = low + 0.5 * (buf.actions[:pos] + 1.0) * (high - low)
    r_old = old.predict(buf.observations[:pos], actions, buf.next_observations[:pos])
    np.testing.assert_allclose(buf.rewards[:pos] - r_old, buf.env_rewards[:pos], rtol=1e-5, atol=1e-5)
    assert np.all(buf.env_rewards[:pos] <= 0)  # Pendulum's rewards, not the plugin's
    relabel_replay_buffer(buf, new, mix=mix)
    r_new = new.predict(buf.observations[:pos], actions, buf.next_observations[:pos])
    np.testing.assert_allclose(buf.rewards[:pos], r_new + buf.env_rewards[:pos], rtol=1e-5, atol=1e-5)
    venv.close()
    sac2, venv2 = _pendulum_sac(old, mode="add", buffer_class=ReplayBuffer, steps=20)
    with pytest.raises(ConfigError, match="PreferenceReplayBuffer"):
        relabel_replay_buffer(sac2.replay_buffer, new, mix=find_reward_mix(venv2))
    venv2.close()


def test_preference_callback_runs_the_online_loop_and_keeps_the_buffer_consistent():
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    from robo_reward.rewards.preference.relabel import PreferenceCallback, PreferenceReplayBuffer

    model, _ = _pendulum_models()
    trainer = PreferenceTrainer(model, BPrefTeacher(seed=0), train_kwargs={"epochs": 5, "batch_size": 64})
    venv = rr.SB3RewardWrapper(make_vec_env("Pendulum-v1", n_envs=1, seed=0), PreferenceReward(model=model))
    sac = SAC("MlpPolicy", venv, buffer_size=2000, learning_starts=200, gradient_steps=1, seed=0, device="cpu",
              replay_buffer_class=PreferenceReplayBuffer, policy_kwargs={"net_arch": [16, 16]})
    cb = PreferenceCallback(trainer, every=150, queries=10, segment_length=10, segments=30, max_queries=20)
    sac.learn(500, callback=cb)
    assert trainer.queries == 20 and trainer.trained and len(trainer.history) == 2
    buf, pos = sac.replay_buffer, sac.replay_buffer.pos
    low, high = venv.action_space.low, venv.action_space.high
    actions = low + 0.5 * (buf.actions[:pos] + 1.0) * (high - low)
    # every stored reward is the current model's: old rows were relabelled, new rows scored by the shared model
    expected = model.predict(buf.observations[:pos], actions, buf.next_observations[:pos])
    np.testing.assert_allclose(buf.rewards[:pos, 0], expected[:, 0], rtol=1e-4, atol=1e-5)
    venv.close()

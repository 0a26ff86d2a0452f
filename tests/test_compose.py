"""Tests of reward composition: sum, shaping, normalize, clip, progress-clip/-delta, delta_rewards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from robo_reward.core.errors import ConfigError, RewardComputationError
from robo_reward.core.registry import list_rewards, make_reward
from robo_reward.core.success import SuccessSignal
from robo_reward.core.types import RewardOutput, RewardPlugin, TransitionBatch
from robo_reward.rewards import compose
from robo_reward.rewards.builtin import ConstantReward
from robo_reward.rewards.compose import (
    Clip,
    PotentialShaping,
    ProgressClip,
    ProgressDelta,
    RunningNormalize,
    WeightedSum,
    delta_rewards,
)


def batch(
    env_reward=None,
    env_ids=None,
    terminated=None,
    truncated=None,
    obs=None,
    next_obs=None,
    infos=None,
    n=None,
) -> TransitionBatch:
    """Build a TransitionBatch by hand; missing flags are all-false, env_ids default to 0..n-1."""
    if n is None:
        for x in (env_reward, env_ids, terminated, truncated, obs, next_obs, infos):
            if x is not None:
                n = len(x)
                break
    assert n is not None
    return TransitionBatch(
        terminated=np.zeros(n, bool) if terminated is None else np.asarray(terminated, bool),
        truncated=np.zeros(n, bool) if truncated is None else np.asarray(truncated, bool),
        env_reward=np.zeros(n, np.float32) if env_reward is None else np.asarray(env_reward, np.float32),
        env_ids=np.arange(n, dtype=np.int64) if env_ids is None else np.asarray(env_ids, np.int64),
        obs=None if obs is None else np.asarray(obs, np.float64),
        next_obs=None if next_obs is None else np.asarray(next_obs, np.float64),
        infos=infos,
    )


class Recorder(RewardPlugin):
    """Test child: env reward, with a 'twice' term, recording reset masks."""

    requires = frozenset({"info", "env_reward"})

    def __init__(self):
        self.masks: list[np.ndarray] = []

    def compute(self, b: TransitionBatch) -> RewardOutput:
        return RewardOutput(b.env_reward, {"twice": 2 * b.env_reward})

    def reset(self, mask):
        self.masks.append(np.asarray(mask, bool).copy())


# --------------------------------------------------------------------------- sum


def test_weighted_sum_values_and_terms():
    rec = Recorder()
    s = WeightedSum([ConstantReward(3.0), rec, "env"], weights=[0.5, -2.0, 1.0])
    out = s(batch(env_reward=[1.0, -4.0]))
    # 0.5*3 - 2*r + r = 1.5 - r
    np.testing.assert_allclose(out.reward, [0.5, 5.5])
    assert set(out.terms) == {"0:constant", "1:Recorder", "1:Recorder/twice", "2:env"}
    np.testing.assert_allclose(out.terms["0:constant"], [3.0, 3.0])  # unweighted
    np.testing.assert_allclose(out.terms["1:Recorder/twice"], [2.0, -8.0])
    np.testing.assert_allclose(out.terms["2:env"], [1.0, -4.0])
    assert s.requires == frozenset({"info", "env_reward"})
    mask = np.array([True, False])
    s.reset(mask)
    assert len(rec.masks) == 1 and rec.masks[0].tolist() == [True, False]


def test_weighted_sum_default_weights_and_names():
    s = WeightedSum(["constant:value=1", {"name": "constant", "value": 2.5}], names=["a", "b"])
    out = s(batch(n=3))
    np.testing.assert_allclose(out.reward, [3.5, 3.5, 3.5])
    assert set(out.terms) == {"a", "b"}
    np.testing.assert_allclose(out.terms["b"], [2.5] * 3)


def test_sum_from_spec_dict_through_make_reward():
    r = make_reward({"name": "sum", "rewards": ["constant:value=1", "constant:value=2"], "weights": [0.5, 2]})
    assert isinstance(r, WeightedSum)
    np.testing.assert_allclose(r(batch(n=2)).reward, [4.5, 4.5])


def test_sum_from_spec_string():
    r = make_reward("sum:rewards=[constant:value=1, constant:value=2],weights=[0.5, 2]")
    np.testing.assert_allclose(r(batch(n=1)).reward, [4.5])


def test_sum_requires_is_union_of_children():
    r = make_reward({"name": "sum", "rewards": ["constant", "python:fn=numpy:zeros_like"]})
    assert r.requires == frozenset({"obs", "action", "next_obs", "info"})
    assert type(r).requires == frozenset()  # set per instance, not on the class


def test_sum_passes_task_to_children():
    task = SimpleNamespace(success=True, success_signal=lambda: SuccessSignal(info_key="ok"))
    r = make_reward({"name": "sum", "rewards": ["sparse-success:value=2", "constant:value=1"]}, task=task)
    out = r(batch(n=2, infos=[{"ok": 1}, {"ok": 0}]))
    np.testing.assert_allclose(out.reward, [3.0, 1.0])
    np.testing.assert_allclose(out.terms["0:sparse-success/success"], [1.0, 0.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rewards": []}, "empty"),
        ({"rewards": "constant"}, "list"),
        ({"rewards": ["constant", "constant"], "weights": [1.0]}, "one weight per reward"),
        ({"rewards": ["constant"], "weights": [float("nan")]}, "finite"),
        ({"rewards": ["constant", "constant"], "names": ["a", "a"]}, "unique"),
        ({"rewards": ["no-such-reward"]}, "unknown reward"),
    ],
)
def test_sum_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WeightedSum(**kwargs)


# --------------------------------------------------------------------------- shaping


def phi_first(obs):
    return 2.0 * np.asarray(obs)[:, 0]


def test_shaping_values_by_hand_with_terminal_convention():
    obs = [[1.0], [2.0], [3.0], [4.0]]
    nxt = [[2.0], [5.0], [0.5], [1.0]]
    term = [False, True, False, False]
    trunc = [False, False, False, True]
    b = batch(obs=obs, next_obs=nxt, terminated=term, truncated=trunc)
    sh = PotentialShaping(phi_first, reward="constant:value=1", gamma=0.9)
    out = sh(b)
    # F = 0.9 * 2 s' - 2 s ; terminal row: Φ(s') = 0 ; truncated row keeps Φ(s')
    expected_f = [0.9 * 4 - 2, 0.0 - 4, 0.9 * 1 - 6, 0.9 * 2 - 8]
    np.testing.assert_allclose(out.terms["shaping"], expected_f, rtol=1e-6)
    np.testing.assert_allclose(out.terms["base"], [1, 1, 1, 1])
    np.testing.assert_allclose(out.reward, np.add(expected_f, 1.0), rtol=1e-6)
    assert {"obs", "next_obs"} <= sh.requires

    no_zero = PotentialShaping(phi_first, gamma=0.9, terminal_potential_zero=False)
    out2 = no_zero(b)
    np.testing.assert_allclose(out2.reward[1], 0.9 * 10 - 4, rtol=1e-6)
    np.testing.assert_allclose(out2.terms["base"], [0, 0, 0, 0])


def test_shaping_from_spec_string_with_module_function():
    sh = make_reward("shaping:potential=numpy:ravel,gamma=0.5")
    assert isinstance(sh, PotentialShaping)
    out = sh(batch(obs=[[1.0], [3.0]], next_obs=[[4.0], [2.0]]))
    np.testing.assert_allclose(out.reward, [0.5 * 4 - 1, 0.5 * 2 - 3])


def test_shaping_learned_potential_object():
    class Net:
        def __init__(self):
            self.w = np.array([1.0, -1.0])

        def __call__(self, obs):
            return obs @ self.w

    sh = PotentialShaping(Net(), gamma=1.0)
    out = sh(batch(obs=[[1.0, 0.0]], next_obs=[[3.0, 1.0]]))
    np.testing.assert_allclose(out.reward, [(3 - 1) - 1])


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_shaping_telescopes_over_episode(gamma):
    rng = np.random.default_rng(0)
    T = 12
    states = rng.normal(size=(T + 1, 3))

    def phi(o):
        return np.sin(o).sum(axis=1)

    sh = PotentialShaping(phi, gamma=gamma)
    fs = []
    for t in range(T):
        out = sh(batch(obs=states[t : t + 1], next_obs=states[t + 1 : t + 2], terminated=[False]))
        fs.append(float(out.terms["shaping"][0]))
    disc = sum(gamma**t * f for t, f in enumerate(fs))
    expected = gamma**T * phi(states[T : T + 1])[0] - phi(states[:1])[0]
    assert disc == pytest.approx(expected, abs=1e-4)
    if gamma == 1.0:
        assert sum(fs) == pytest.approx(phi(states[T:])[0] - phi(states[:1])[0], abs=1e-4)

    # Ending in a terminal state: Φ(s_T) counts as 0, so the discounted sum is -Φ(s_0).
    last = sh(batch(obs=states[T - 1 : T], next_obs=states[T:], terminated=[True]))
    disc_term = sum(gamma**t * f for t, f in enumerate(fs[:-1])) + gamma ** (T - 1) * float(last.terms["shaping"][0])
    assert disc_term == pytest.approx(-phi(states[:1])[0], abs=1e-4)


def test_shaping_errors():
    with pytest.raises(ConfigError, match="not callable"):
        PotentialShaping(42)
    with pytest.raises(ConfigError, match="RewardPlugin"):
        PotentialShaping(ConstantReward(1.0))
    with pytest.raises(ConfigError, match="gamma"):
        PotentialShaping(phi_first, gamma=1.5)
    with pytest.raises(ConfigError, match="cannot import"):
        PotentialShaping("no_such_module_xyz:phi")
    bad = PotentialShaping(lambda o: np.zeros(5))
    with pytest.raises(RewardComputationError, match="shape"):
        bad(batch(obs=[[1.0], [2.0]], next_obs=[[1.0], [2.0]]))
    with pytest.raises(RewardComputationError, match="obs"):
        PotentialShaping(phi_first)(batch(n=1))


# --------------------------------------------------------------------------- normalize


def reference_return_normalize(steps, gamma, eps, num_envs):
    """Independent reference: explicit loops, np.var over every return collected so far."""
    G = [0.0] * num_envs
    seen: list[float] = []
    outs = []
    for kind, payload in steps:
        if kind == "reset":
            for e, m in enumerate(payload):
                if m:
                    G[e] = 0.0
            continue
        ids, rs, dones = payload
        for e, r in zip(ids, rs):
            G[e] = gamma * G[e] + float(r)
            seen.append(G[e])
        var = np.var(np.array(seen))
        outs.append([float(r) / np.sqrt(var + eps) for r in rs])
        for e, d in zip(ids, dones):
            if d:
                G[e] = 0.0
    return outs


def run_steps(plugin, steps):
    outs = []
    for kind, payload in steps:
        if kind == "reset":
            plugin.reset(np.asarray(payload, bool))
            continue
        ids, rs, dones = payload
        outs.append(plugin(batch(env_reward=rs, env_ids=ids, terminated=dones)).reward)
    return outs


def test_normalize_matches_numpy_reference():
    rng = np.random.default_rng(1)
    steps = []
    for t in range(40):
        rs = rng.normal(1.0, 2.0, size=3).astype(np.float32)
        dones = rng.random(3) < 0.15
        steps.append(("step", (np.arange(3), rs, dones)))
    norm = RunningNormalize("env", gamma=0.9, epsilon=1e-8)
    got = run_steps(norm, steps)
    ref = reference_return_normalize(steps, 0.9, 1e-8, 3)
    for t in range(40):
        np.testing.assert_allclose(got[t], ref[t], rtol=1e-4)
    # first step: the three returns are the rewards themselves
    rs0 = steps[0][1][1].astype(np.float64)
    np.testing.assert_allclose(got[0], rs0 / np.sqrt(np.var(rs0) + 1e-8), rtol=1e-5)
    assert norm.count == 120


def test_normalize_env_id_subsets_and_reset_masks():
    norm = RunningNormalize("env", gamma=0.5, epsilon=1e-8)
    norm.reset(np.ones(5, bool))  # sizes per-env state lazily from the mask
    assert norm.returns.shape == (5,)
    steps = [
        ("step", ([0, 2], [1.0, 2.0], [False, False])),
        ("step", ([1], [4.0], [False])),
        ("reset", [False, False, True, False, False]),
        ("step", ([2, 0], [1.0, 1.0], [False, True])),
        ("step", ([0, 7], [3.0, -1.0], [False, False])),
    ]
    got = run_steps(norm, steps)
    ref = reference_return_normalize(steps, 0.5, 1e-8, 8)
    for g, r in zip(got[1:], ref[1:]):
        np.testing.assert_allclose(g, r, rtol=1e-5)
    # Hand-computed returns: G0: 1 -> 0.5+1=1.5 (done, zeroed) -> 3 ; G1 = 4 ; G2: 2 -> reset -> 1 ; G7 = -1
    np.testing.assert_allclose(norm.returns, [3.0, 4.0, 1.0, 0, 0, 0, 0, -1.0])
    seen = [1.0, 2.0, 4.0, 1.0, 1.5, 3.0, -1.0]
    assert norm.var == pytest.approx(np.var(seen))
    np.testing.assert_allclose(got[-1], np.array([3.0, -1.0]) / np.sqrt(np.var(seen) + 1e-8), rtol=1e-6)


def test_normalize_reward_kind_and_freeze():
    rng = np.random.default_rng(2)
    norm = RunningNormalize("env", kind="reward")
    seen = []
    for _ in range(10):
        rs = rng.normal(3.0, 0.5, size=4).astype(np.float32)
        out = norm(batch(env_reward=rs))
        seen.extend(rs.astype(np.float64).tolist())
        expected = (rs - np.mean(seen)) / np.sqrt(np.var(seen) + 1e-8)
        np.testing.assert_allclose(out.reward, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.terms["raw"], rs)
    norm.update = False
    mean, var, count = norm.mean, norm.var, norm.count
    out = norm(batch(env_reward=[100.0]))
    assert (norm.mean, norm.var, norm.count) == (mean, var, count)
    np.testing.assert_allclose(out.reward, [(100.0 - mean) / np.sqrt(var + 1e-8)], rtol=1e-5)


def test_normalize_state_dict_roundtrip():
    a = RunningNormalize("env", gamma=0.9)
    for rs in ([1.0, 2.0], [0.5, -1.0], [2.0, 2.0]):
        a(batch(env_reward=rs))
    b = RunningNormalize("env", gamma=0.9)
    b.load_state_dict(a.state_dict())
    nxt = batch(env_reward=[1.0, 3.0])
    np.testing.assert_array_equal(a(nxt).reward, b(nxt).reward)
    np.testing.assert_array_equal(a.returns, b.returns)
    with pytest.raises(ConfigError, match="kind"):
        RunningNormalize("env", kind="reward").load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="lacks"):
        b.load_state_dict({"kind": "return"})


def test_normalize_frozen_without_stats_passes_through_and_bad_config():
    norm = make_reward({"name": "normalize", "reward": "constant:value=2", "update": False})
    np.testing.assert_allclose(norm(batch(n=2)).reward, [2.0, 2.0], rtol=1e-6)  # var starts at 1
    with pytest.raises(ConfigError, match="kind"):
        RunningNormalize("env", kind="advantage")
    with pytest.raises(ConfigError, match="epsilon"):
        RunningNormalize("env", epsilon=0)
    with pytest.raises(ConfigError, match="child reward"):
        RunningNormalize(None)


# --------------------------------------------------------------------------- clip


def test_clip_bounds_and_errors():
    c = Clip("env", low=-0.5, high=2.0)
    out = c(batch(env_reward=[-3.0, 0.25, 5.0]))
    np.testing.assert_allclose(out.reward, [-0.5, 0.25, 2.0])
    np.testing.assert_allclose(out.terms["raw"], [-3.0, 0.25, 5.0])
    upper_only = make_reward("clip:reward=env,low=null,high=1")
    np.testing.assert_allclose(upper_only(batch(env_reward=[-7.0, 3.0])).reward, [-7.0, 1.0])
    np.testing.assert_allclose(Clip("env")(batch(env_reward=[-7.0, 0.5, 3.0])).reward, [-1.0, 0.5, 1.0])
    with pytest.raises(ConfigError, match="greater than high"):
        Clip("env", low=1.0, high=0.0)
    with pytest.raises(ConfigError, match="low=|high="):
        Clip("env", low=None, high=None)


# --------------------------------------------------------------------------- progress


def test_progress_clip_hand_values():
    pc = ProgressClip("env", eta=0.5)
    out = pc(batch(env_reward=[1.0, 0.5, 0.0, -1.0]))
    np.testing.assert_allclose(out.reward, [0.0, 0.0, -0.5, -1.5])
    default = make_reward({"name": "progress-clip", "reward": "env"})
    np.testing.assert_allclose(default(batch(env_reward=[2.0, -0.25])).reward, [0.0, -0.25])


def test_delta_rewards_hand_and_telescoping():
    np.testing.assert_allclose(delta_rewards(np.array([1.0, 3.0, 2.0])), [-2.0, 1.0, 2.0])
    np.testing.assert_allclose(delta_rewards([4]), [4.0])
    assert delta_rewards(np.array([])).shape == (0,)
    rng = np.random.default_rng(3)
    for T in (1, 2, 7, 50):
        r = rng.normal(size=T)
        d = delta_rewards(r)
        suffix = np.cumsum(d[::-1])[::-1]  # suffix[k] = Σ_{t≥k} d_t
        np.testing.assert_allclose(suffix, r, atol=1e-12)


def test_delta_rewards_episode_ends_and_errors():
    r = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    ends = np.array([False, False, True, False, False])
    np.testing.assert_allclose(delta_rewards(r, episode_ends=ends), [-2.0, 1.0, 2.0, 1.0, 4.0])
    with pytest.raises(ConfigError, match="1-D"):
        delta_rewards(np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="episode_ends"):
        delta_rewards(r, episode_ends=[True])


def test_progress_delta_hand_values():
    pd = ProgressDelta("env")
    outs = [pd(batch(env_reward=[x])).reward[0] for x in (0.5, 0.75, 0.25)]
    np.testing.assert_allclose(outs, [0.5, 0.25, -0.5])


def test_progress_delta_online_telescoping_with_interleaved_resets():
    rng = np.random.default_rng(4)
    num_envs = 3
    pd = make_reward({"name": "progress-delta", "reward": "env"})
    assert isinstance(pd, ProgressDelta)
    pd.reset(np.ones(num_envs, bool))
    cum = np.zeros(num_envs)
    checked = 0
    for t in range(60):
        ids = np.flatnonzero(rng.random(num_envs) < 0.7)  # a subset of the sub-envs, in random order
        rng.shuffle(ids)
        if ids.size == 0:
            continue
        r = rng.normal(size=ids.size).astype(np.float32)
        done = rng.random(ids.size) < 0.1
        out = pd(batch(env_reward=r, env_ids=ids, truncated=done))
        cum[ids] += out.reward
        # Return over steps 0..k of the episode telescopes to r_k.
        np.testing.assert_allclose(cum[ids], r, atol=1e-5)
        checked += ids.size
        cum[ids[done]] = 0.0  # episode over; the plugin forgets by itself
        if t % 7 == 3:  # an external reset of some envs (e.g. env.reset or wrapper autoreset)
            mask = rng.random(num_envs) < 0.5
            pd.reset(mask)
            cum[mask] = 0.0
    assert checked > 50


def test_repeated_env_ids_in_one_batch_are_consecutive_steps():
    pd = ProgressDelta("env")
    out = pd(batch(env_reward=[1.0, 3.0, 2.0], env_ids=[0, 0, 1], terminated=[False, True, False]))
    np.testing.assert_allclose(out.reward, [1.0, 2.0, 2.0])
    np.testing.assert_allclose(pd(batch(env_reward=[5.0], env_ids=[0])).reward, [5.0])  # env 0 ended: r_{-1} = 0
    norm = RunningNormalize("env", gamma=0.5)
    out = norm(batch(env_reward=[1.0, 3.0, 2.0], env_ids=[0, 0, 1], terminated=[False, True, False]))
    seen = [1.0, 0.5 * 1.0 + 3.0, 2.0]
    np.testing.assert_allclose(out.reward, np.array([1.0, 3.0, 2.0]) / np.sqrt(np.var(seen) + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(norm.returns, [0.0, 2.0])


def test_progress_delta_reset_forwards_to_child_and_terms():
    rec = Recorder()
    pd = ProgressDelta(rec)
    pd(batch(env_reward=[1.0, 2.0]))
    pd.reset(np.array([False, True]))
    out = pd(batch(env_reward=[1.5, 3.0]))
    np.testing.assert_allclose(out.reward, [0.5, 3.0])  # env 1 restarted: r_{-1} = 0
    np.testing.assert_allclose(out.terms["raw/twice"], [3.0, 6.0])
    assert rec.masks[-1].tolist() == [False, True]
    assert pd.requires == frozenset({"info", "env_reward"})


# --------------------------------------------------------------------------- registry / docs


def test_registered_and_documented():
    names = list_rewards()
    for name in ("sum", "shaping", "normalize", "clip", "progress-clip", "progress-delta"):
        assert name in names and names[name], name
    for public in compose.__all__:
        obj = getattr(compose, public)
        assert obj.__doc__ and obj.__doc__.strip(), public
    nested = make_reward(
        {"name": "clip", "low": -1, "high": 1, "reward": {"name": "sum", "rewards": ["constant:value=2", "env"]}}
    )
    out = nested(batch(env_reward=[-5.0, 0.5]))
    np.testing.assert_allclose(out.reward, [-1.0, 1.0])
    np.testing.assert_allclose(out.terms["raw/1:env"], [-5.0, 0.5])

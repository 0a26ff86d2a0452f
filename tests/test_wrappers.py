"""Episode boundaries, modes and batching of the three reward wrappers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import robo_reward as rr
from robo_reward.core.errors import ConfigError, RewardComputationError
from robo_reward.core.types import RewardOutput, RewardPlugin
from robo_reward.wrappers import FinalFrameWrapper
from tests.toy_envs import CountEnv, FramePlugin, StepCounter, TransitionPlugin, expected_reward

LENGTHS = (2, 3, 4)
STEPS = 13


def _actions(n: int) -> np.ndarray:
    return (0.1 * (np.arange(n, dtype=np.float32) + 1)).reshape(n, 1)


def _expected_sequence(length: int, action: float, steps: int, reset_step: bool) -> list[float | None]:
    """Per-step rewards for one sub-env; ``None`` marks a NEXT_STEP reset step (reward must be 0)."""
    out: list[float | None] = []
    t = 0
    while len(out) < steps:
        out.append(expected_reward(t, t + 1, action))
        t += 1
        if t == length:
            t = 0
            if reset_step and len(out) < steps:
                out.append(None)
    return out


def _single_rewards(length: int, action: float, steps: int, truncate: bool = False) -> list[float]:
    env = rr.RewardWrapper(CountEnv(length, truncate=truncate), TransitionPlugin())
    env.reset(seed=0)
    out = []
    for _ in range(steps):
        _, r, term, trunc, info = env.step(np.array([action], dtype=np.float32))
        out.append(r)
        assert info["env_reward"] == 10.0 * info["t"]
        if term or trunc:
            env.reset()
    return out


@pytest.mark.parametrize("truncate", [False, True])
def test_single_env_rewards_and_info(truncate):
    env = rr.RewardWrapper(CountEnv(3, truncate=truncate), TransitionPlugin())
    env.reset(seed=0)
    seen = []
    for _ in range(7):
        _, r, term, trunc, info = env.step(np.array([0.5], dtype=np.float32))
        assert isinstance(r, float)
        seen.append((r, info["reward_terms"]["next_t"], term, trunc))
        if term or trunc:
            env.reset()
    want = _expected_sequence(3, 0.5, 7, reset_step=False)
    assert [s[0] for s in seen] == pytest.approx(want)
    assert [s[1] for s in seen] == [1, 2, 3, 1, 2, 3, 1]
    ends = [s[2] or s[3] for s in seen]
    assert ends == [False, False, True, False, False, True, False]
    assert all(s[3] == (truncate and s[2] is False and ends[i]) or not ends[i] for i, s in enumerate(seen))


def test_single_env_needs_reset_first():
    env = rr.RewardWrapper(CountEnv(3), TransitionPlugin())
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(1, np.float32))


@pytest.mark.parametrize("truncate", [False, True])
def test_vector_next_step_skips_reset_step(truncate):
    plugin = TransitionPlugin()
    venv = SyncVectorEnv([lambda L=L: CountEnv(L, truncate=truncate) for L in LENGTHS])
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    env = rr.VectorRewardWrapper(venv, plugin)
    env.reset(seed=0)
    acts = _actions(len(LENGTHS))
    rewards, valid = [], []
    for _ in range(STEPS):
        _, r, term, trunc, infos = env.step(acts)
        rewards.append(r.copy())
        valid.append(infos["_reward_terms"].copy())
        np.testing.assert_array_equal(infos["env_reward"], r * 0 + infos["env_reward"])
    rewards, valid = np.array(rewards), np.array(valid)
    for i, L in enumerate(LENGTHS):
        want = _expected_sequence(L, float(acts[i, 0]), STEPS, reset_step=True)
        for k, w in enumerate(want):
            if w is None:
                assert not valid[k, i] and rewards[k, i] == 0.0
            else:
                assert valid[k, i]
                assert rewards[k, i] == pytest.approx(w)
        # the rewards on real transitions equal the single-env wrapper's rewards
        single = _single_rewards(L, float(acts[i, 0]), STEPS, truncate)
        real = [rewards[k, i] for k, w in enumerate(want) if w is not None]
        assert real == pytest.approx(single[: len(real)])
    # reset-step rows never reach the plugin
    for b in plugin.batches:
        assert all(b.obs[j, 1] < LENGTHS[e] for j, e in enumerate(b.env_ids))
    # the plugin was reset for exactly the sub-envs starting a new episode
    first_reset_of_len2 = [m for m in plugin.resets[1:] if m[0]]
    assert first_reset_of_len2 and not first_reset_of_len2[0][1:].any()


def test_vector_same_step_uses_final_obs_and_final_info():
    plugin = TransitionPlugin()
    venv = SyncVectorEnv([lambda L=L: CountEnv(L) for L in LENGTHS], autoreset_mode=AutoresetMode.SAME_STEP)
    env = rr.VectorRewardWrapper(venv, plugin)
    env.reset(seed=0)
    acts = _actions(len(LENGTHS))
    rewards, next_t = [], []
    for _ in range(STEPS):
        obs, r, term, trunc, infos = env.step(acts)
        rewards.append(r.copy())
        next_t.append(infos["reward_terms"]["info_t"].copy())
        assert infos["_reward_terms"].all()
        # returned obs of a finished sub-env is already the reset one
        assert (obs[term, 1] == 0).all()
    rewards = np.array(rewards)
    for i, L in enumerate(LENGTHS):
        want = _expected_sequence(L, float(acts[i, 0]), STEPS, reset_step=False)
        assert rewards[:, i] == pytest.approx(want)
        assert list(np.array(next_t)[:, i]) == [((k % L) + 1) for k in range(STEPS)]


class _Needs(RewardPlugin):
    """A plugin that asks for the given fields and returns zeros."""

    def __init__(self, requires):
        self.requires = frozenset(requires)

    def compute(self, batch):
        return RewardOutput(np.zeros(len(batch), np.float32))


@pytest.mark.parametrize("requires", [(), ("obs",), ("env_reward",), ("info",), ("next_obs",), ("obs", "next_obs")])
def test_vector_same_step_returns_the_reset_observation_whatever_the_plugin_needs(requires):
    """The wrapper never writes the final observation into what it returns (it did for plugins without next_obs)."""
    def make():
        return SyncVectorEnv([lambda L=L: CountEnv(L) for L in LENGTHS], autoreset_mode=AutoresetMode.SAME_STEP)

    raw, env = make(), rr.VectorRewardWrapper(make(), _Needs(requires))
    raw.reset(seed=0)
    env.reset(seed=0)
    acts = _actions(len(LENGTHS))
    ended = 0
    for _ in range(STEPS):
        o_raw, *_, trunc_raw, info_raw = raw.step(acts)
        o, _, term, trunc, info = env.step(acts)
        np.testing.assert_array_equal(o, o_raw)
        ended += int((term | trunc).sum())
    assert ended > 0


def test_vector_disabled_autoreset_with_reset_mask():
    plugin = StepCounter()
    venv = SyncVectorEnv([lambda L=L: CountEnv(L) for L in LENGTHS], autoreset_mode=AutoresetMode.DISABLED)
    env = rr.VectorRewardWrapper(venv, plugin)
    env.reset(seed=0)
    acts = _actions(3)
    _, r1, *_ = env.step(acts)
    _, r2, term, _, _ = env.step(acts)
    np.testing.assert_array_equal(r1, [1, 1, 1])
    np.testing.assert_array_equal(r2, [2, 2, 2])
    assert term.tolist() == [True, False, False]
    env.reset(options={"reset_mask": np.array([True, False, False])})
    _, r3, *_ = env.step(acts)
    np.testing.assert_array_equal(r3, [1, 3, 3])


@pytest.mark.parametrize("truncate", [False, True])
def test_sb3_vecenv_uses_terminal_observation(truncate):
    from stable_baselines3.common.vec_env import DummyVecEnv

    plugin = TransitionPlugin()
    venv = DummyVecEnv([lambda L=L: gym.wrappers.TimeLimit(CountEnv(L + (5 if truncate else 0)), L) for L in LENGTHS])
    env = rr.SB3RewardWrapper(venv, plugin)
    env.reset()
    acts = _actions(3)
    rewards = []
    for _ in range(STEPS):
        env.step_async(acts)
        obs, r, dones, infos = env.step_wait()
        rewards.append(r.copy())
        for i, info in enumerate(infos):
            assert info["env_reward"] == 10.0 * info["t"]
            if dones[i]:
                assert info["TimeLimit.truncated"] == truncate
                assert obs[i, 1] == 0
    rewards = np.array(rewards)
    for i, L in enumerate(LENGTHS):
        assert rewards[:, i] == pytest.approx(_expected_sequence(L, float(acts[i, 0]), STEPS, reset_step=False))
    ends = [b for b in plugin.batches if b.done.any()]
    assert ends and all((b.terminated == (b.done & (not truncate))).all() for b in ends)


def test_stateful_plugin_same_in_all_wrappers():
    from stable_baselines3.common.vec_env import DummyVecEnv

    acts = _actions(3)
    gym_env = rr.VectorRewardWrapper(
        SyncVectorEnv([lambda L=L: CountEnv(L) for L in LENGTHS], autoreset_mode=AutoresetMode.SAME_STEP), StepCounter()
    )
    sb3_env = rr.SB3RewardWrapper(DummyVecEnv([lambda L=L: CountEnv(L) for L in LENGTHS]), StepCounter())
    gym_env.reset(seed=0)
    sb3_env.reset()
    for _ in range(STEPS):
        r_g = gym_env.step(acts)[1]
        sb3_env.step_async(acts)
        r_s = sb3_env.step_wait()[1]
        np.testing.assert_array_equal(r_g, r_s)


@pytest.mark.parametrize("where", ["next_step", "same_step", "sb3"])
def test_frames_rendered_in_batch_and_terminal_frame_kept(where):
    acts = _actions(3)
    if where == "sb3":
        from stable_baselines3.common.vec_env import DummyVecEnv

        env = rr.SB3RewardWrapper(
            DummyVecEnv([lambda L=L: FinalFrameWrapper(CountEnv(L, render_mode="rgb_array")) for L in LENGTHS]),
            FramePlugin(),
        )
        env.reset()
        step = lambda: (env.step_async(acts), env.step_wait())[1][1]  # noqa: E731
    else:
        mode = AutoresetMode.NEXT_STEP if where == "next_step" else AutoresetMode.SAME_STEP
        env = rr.VectorRewardWrapper(
            SyncVectorEnv(
                [lambda L=L: FinalFrameWrapper(CountEnv(L, render_mode="rgb_array")) for L in LENGTHS],
                autoreset_mode=mode,
            ),
            FramePlugin(),
        )
        env.reset(seed=0)
        step = lambda: env.step(acts)[1]  # noqa: E731
    rewards = np.array([step() for _ in range(STEPS)])
    for i, L in enumerate(LENGTHS):
        # frame value = step count after the transition, including the terminal step's L
        want = [float(t) for t in _frame_sequence(L, STEPS, where == "next_step")]
        assert list(rewards[:, i]) == want


def _frame_sequence(L: int, steps: int, reset_step: bool) -> list[int]:
    out, t = [], 0
    while len(out) < steps:
        t += 1
        out.append(t)
        if t == L:
            t = 0
            if reset_step and len(out) < steps:
                out.append(0)
    return out[:steps]


def test_missing_final_frame_wrapper_is_an_error():
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = rr.SB3RewardWrapper(DummyVecEnv([lambda: CountEnv(1, render_mode="rgb_array")]), FramePlugin())
    env.reset()
    env.step_async(_actions(1))
    with pytest.raises(ConfigError, match="FinalFrameWrapper"):
        env.step_wait()


def test_frames_need_rgb_array():
    with pytest.raises(ConfigError, match="rgb_array"):
        rr.RewardWrapper(CountEnv(3), FramePlugin())


@pytest.mark.parametrize(
    "mode,kwargs,want",
    [
        ("replace", {}, 7.0),
        ("add", {}, 7.0 + 10.0),
        ("blend", {"alpha": 0.25}, 0.25 * 7.0 + 0.75 * 10.0),
        ("weighted", {"weights": (2.0, -1.0)}, 2.0 * 7.0 - 10.0),
    ],
)
def test_modes(mode, kwargs, want):
    env = rr.RewardWrapper(CountEnv(3), "constant:value=7", mode=mode, **kwargs)
    env.reset(seed=0)
    _, r, *_ = env.step(np.zeros(1, np.float32))  # env reward 10 * 1
    assert r == pytest.approx(want)
    venv = rr.VectorRewardWrapper(SyncVectorEnv([lambda: CountEnv(3)] * 2), "constant:value=7", mode=mode, **kwargs)
    venv.reset(seed=0)
    _, rv, *_ = venv.step(np.zeros((2, 1), np.float32))
    assert rv.dtype == np.float32
    np.testing.assert_allclose(rv, [want, want], rtol=1e-6)


@pytest.mark.parametrize(
    "mode,kwargs,match",
    [
        ("bogus", {}, "unknown reward mode"),
        ("blend", {"alpha": 1.5}, r"\[0, 1\]"),
        ("replace", {"alpha": 0.3}, "only applies"),
        ("weighted", {}, "weights="),
        ("weighted", {"weights": (1.0, float("nan"))}, "finite"),
    ],
)
def test_bad_modes(mode, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        rr.RewardWrapper(CountEnv(3), "constant", mode=mode, **kwargs)


class _NaNPlugin(RewardPlugin):
    requires = frozenset()

    def compute(self, batch):
        return RewardOutput(np.full(len(batch), np.nan, np.float32))


def test_nan_reward_is_an_error_everywhere():
    env = rr.RewardWrapper(CountEnv(3), _NaNPlugin())
    env.reset()
    with pytest.raises(RewardComputationError, match="non-finite"):
        env.step(np.zeros(1, np.float32))
    venv = rr.VectorRewardWrapper(SyncVectorEnv([lambda: CountEnv(3)] * 2), _NaNPlugin())
    venv.reset()
    with pytest.raises(RewardComputationError, match="not finite in rows"):
        venv.step(np.zeros((2, 1), np.float32))


def test_wrong_shape_is_an_error():
    class Bad(RewardPlugin):
        def compute(self, batch):
            return RewardOutput(np.zeros(len(batch) + 1, np.float32))

    venv = rr.VectorRewardWrapper(SyncVectorEnv([lambda: CountEnv(3)] * 2), Bad())
    venv.reset()
    with pytest.raises(RewardComputationError, match="shape"):
        venv.step(np.zeros((2, 1), np.float32))


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_wrapped_toy_env_passes_checkers():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    gym_check(rr.RewardWrapper(CountEnv(5), TransitionPlugin()), skip_render_check=True)
    sb3_check(rr.RewardWrapper(CountEnv(5), "constant:value=1"), warn=False)


def test_only_required_fields_are_filled():
    seen = {}

    class Minimal(RewardPlugin):
        requires = frozenset({"next_obs"})

        def compute(self, batch):
            seen.update(obs=batch.obs, action=batch.action, infos=batch.infos, frames=batch.frames)
            return RewardOutput(batch.next_obs[:, 1])

    env = rr.RewardWrapper(CountEnv(3), Minimal())
    env.reset()
    env.step(np.zeros(1, np.float32))
    assert seen == {"obs": None, "action": None, "infos": None, "frames": None}


def _env_reward_seen(requires):
    """Which batch.env_reward each wrapper hands a plugin with ``requires``."""
    seen = []

    class Probe(RewardPlugin):
        def compute(self, batch):
            seen.append(None if batch.env_reward is None else batch.env_reward.copy())
            return RewardOutput(np.zeros(len(batch), np.float32))

    Probe.requires = frozenset(requires)
    single = rr.RewardWrapper(CountEnv(3), Probe())
    single.reset()
    single.step(np.zeros(1, np.float32))
    venv = rr.VectorRewardWrapper(SyncVectorEnv([lambda: CountEnv(3)] * 2), Probe())
    venv.reset(seed=0)
    venv.step(np.zeros((2, 1), np.float32))
    from stable_baselines3.common.vec_env import DummyVecEnv

    sb3 = rr.SB3RewardWrapper(DummyVecEnv([lambda: CountEnv(3)] * 2), Probe())
    sb3.reset()
    sb3.step(np.zeros((2, 1), np.float32))
    return seen


def test_env_reward_only_when_required():
    assert _env_reward_seen(set()) == [None, None, None]
    got = _env_reward_seen({"env_reward"})
    # CountEnv's own reward is 10 * t: 10 after the first step, in every wrapper
    assert [g.tolist() for g in got] == [[10.0], [10.0, 10.0], [10.0, 10.0]]
    assert all(g.dtype == np.float32 for g in got)


def test_unknown_requirement_rejected():
    with pytest.raises(ConfigError, match="allowed"):

        class Bad(RewardPlugin):  # noqa: F841
            requires = frozenset({"pixels"})

            def compute(self, batch):
                return RewardOutput(np.zeros(len(batch)))

"""``MJXVectorEnv`` (MuJoCo MJX backend) against native Gymnasium MuJoCo, and under the reward wrapper.

Needs ``jax`` and ``mujoco-mjx`` (the ``mjx`` extra); CI does not install them, so
these tests are skipped there with the reason. The first ``reset()`` compiles the
batched step with XLA, which takes tens of seconds on a CPU: every test uses the same
task and the same number of sub-envs, so the compiled step is shared (it is cached per
task spec, and ``max_episode_steps`` is an argument of the compiled function, not a
constant in it). Hopper and Walker2d compile their own steps and are marked ``slow``.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.passive_env_checker import check_obs
from gymnasium.vector import AutoresetMode

import robo_reward as rr
from robo_reward.core.errors import ConfigError, MissingDependencyError, TaskCardError
from robo_reward.envs.mjx_backend import mjx_problem


MJX_PROBLEM = mjx_problem()
requires_mjx = pytest.mark.skipif(MJX_PROBLEM is not None, reason=MJX_PROBLEM or "")

#: Sub-envs in every HalfCheetah test (one compiled step for the whole module).
N = 2
#: Steps compared against native MuJoCo.
PARITY_STEPS = 20
# MJX computes in float32, native MuJoCo in float64. Measured over 20 HalfCheetah steps
# with uniform random actions: max |obs difference| ~5e-4, max |reward difference| ~4e-5.
OBS_ATOL, OBS_RTOL = 5e-3, 1e-3
REWARD_ATOL = 1e-3


def test_missing_jax_raises_missing_dependency(monkeypatch):
    """Without jax the constructor says which extra to install (runs where jax is absent too)."""
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(MissingDependencyError, match=r"robo-reward\[mjx\]"):
        MJXVectorEnv("HalfCheetah-v5", 2)


@pytest.fixture(scope="module")
def cheetah():
    """A 2-env HalfCheetah MJXVectorEnv, reset once (this compiles the step)."""
    if MJX_PROBLEM is not None:
        pytest.skip(MJX_PROBLEM)
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    env = MJXVectorEnv("HalfCheetah-v5", N, seed=0)
    env.reset(seed=0)
    yield env
    env.close()


def _native_from_mjx(env_id: str, state, row: int) -> gym.Env:
    """A native Gymnasium env set to sub-env ``row``'s state of an MJX env."""
    native = gym.make(env_id)
    native.reset(seed=0)
    qpos = np.asarray(state.data.qpos[row], dtype=np.float64)
    qvel = np.asarray(state.data.qvel[row], dtype=np.float64)
    native.unwrapped.set_state(qpos, qvel)
    return native


def _parity(env, env_id: str, steps: int, seed: int) -> dict[str, float]:
    """Step the MJX env and one native env per sub-env with the same actions; assert they agree.

    A sub-env is compared until its native episode terminates. Returns the largest
    differences seen and the number of terminations.
    """
    obs, _ = env.reset(seed=seed)
    state = env.device_state()
    natives = [_native_from_mjx(env_id, state, i) for i in range(env.num_envs)]
    for i, native in enumerate(natives):
        np.testing.assert_allclose(obs[i], native.unwrapped._get_obs(), atol=1e-6, rtol=0)
    rng = np.random.default_rng(seed)
    worst = {"obs": 0.0, "reward": 0.0, "terminations": 0}
    alive = np.ones(env.num_envs, dtype=bool)
    for t in range(steps):
        actions = rng.uniform(-1, 1, size=(env.num_envs, *env.single_action_space.shape)).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(actions)
        assert not truncated.any()
        for i, native in enumerate(natives):
            if not alive[i]:
                continue
            n_obs, n_rew, n_term, n_trunc, n_info = native.step(actions[i])
            where = f"{env_id} sub-env {i}, step {t}"
            np.testing.assert_allclose(obs[i], n_obs, atol=OBS_ATOL, rtol=OBS_RTOL, err_msg=where)
            np.testing.assert_allclose(reward[i], n_rew, atol=REWARD_ATOL, rtol=0, err_msg=where)
            assert bool(terminated[i]) == n_term, where
            for key in ("x_position", "x_velocity", "reward_forward", "reward_ctrl"):
                np.testing.assert_allclose(
                    info[key][i], n_info[key], atol=OBS_ATOL, rtol=OBS_RTOL, err_msg=f"{where}: {key}"
                )
            worst["obs"] = max(worst["obs"], float(np.abs(obs[i] - n_obs).max()))
            worst["reward"] = max(worst["reward"], abs(float(reward[i]) - n_rew))
            if n_term:
                alive[i] = False
                worst["terminations"] += 1
    for native in natives:
        native.close()
    return worst


@requires_mjx
def test_reset_matches_native_observation_layout(cheetah):
    """Reset observations are qpos[1:] and qvel of the device state, with HalfCheetah's reset noise."""
    obs, info = cheetah.reset(seed=1)
    state = cheetah.device_state()
    qpos, qvel = np.asarray(state.data.qpos), np.asarray(state.data.qvel)
    np.testing.assert_array_equal(obs, np.concatenate([qpos[:, 1:], qvel], axis=1))
    native = gym.make("HalfCheetah-v5").unwrapped
    assert np.all(np.abs(qpos - native.init_qpos) <= 0.1 + 1e-6)  # uniform(-0.1, 0.1) position noise
    assert np.any(np.abs(qvel) > 1e-3)  # 0.1 * standard normal velocity noise
    np.testing.assert_array_equal(info["x_position"], qpos[:, 0])
    assert info["_x_position"].all()
    assert obs.shape == (N, 17) and np.isfinite(obs).all()
    native.close()


@requires_mjx
def test_halfcheetah_trajectory_and_rewards_match_native(cheetah):
    """(a) and (b): same start state and actions give native MuJoCo's observations, rewards and info."""
    worst = _parity(cheetah, "HalfCheetah-v5", PARITY_STEPS, seed=0)
    assert worst["obs"] < OBS_ATOL


@requires_mjx
def test_vector_reward_wrapper_constant_plugin_and_truncation(cheetah):
    """(c) Under VectorRewardWrapper: plugin rewards, the env's reward in info, truncation and NEXT_STEP autoreset."""
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    env = MJXVectorEnv("mujoco-half-cheetah-v5", N, seed=3, max_episode_steps=3)  # a card name; same compiled step
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    venv = rr.VectorRewardWrapper(env, "constant:value=1")
    venv.reset(seed=3)
    actions = np.zeros((N, 6), dtype=np.float32)
    for t in (1, 2, 3):
        obs, reward, terminated, truncated, info = venv.step(actions)
        np.testing.assert_array_equal(reward, np.ones(N, np.float32))
        assert info["_reward_terms"].all()
        assert info["env_reward"].dtype == np.float32 and np.isfinite(info["env_reward"]).all()
        assert not terminated.any()
        assert truncated.all() == (t == 3) and truncated.any() == (t == 3)
    # the step after truncation only resets: reward 0, no plugin call for those rows, reset info only
    obs, reward, terminated, truncated, info = venv.step(np.ones((N, 6), np.float32))
    np.testing.assert_array_equal(reward, np.zeros(N, np.float32))
    assert not info["_reward_terms"].any()
    assert not (terminated.any() or truncated.any())
    assert info["_x_position"].all() and not info["_x_velocity"].any()
    state = env.device_state()
    assert np.asarray(state.autoreset).all() and (np.asarray(state.steps) == 0).all()
    np.testing.assert_array_equal(obs[:, :8], np.asarray(state.data.qpos)[:, 1:])
    # and the new episode runs for 3 steps again
    for t in (1, 2, 3):
        _, reward, _, truncated, info = venv.step(actions)
        np.testing.assert_array_equal(reward, np.ones(N, np.float32))
        assert truncated.all() == (t == 3)
    venv.close()


@requires_mjx
def test_vector_reward_wrapper_env_plugin_reproduces_env_reward(cheetah):
    """(c) The ``env`` plugin in ``replace`` mode returns the MJX env's own reward (HalfCheetah's)."""
    venv = rr.VectorRewardWrapper(cheetah, "env")
    venv.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(5):
        a = rng.uniform(-1, 1, size=(N, 6)).astype(np.float32)
        _, reward, _, _, info = venv.step(a)
        np.testing.assert_allclose(reward, info["env_reward"], rtol=0, atol=0)
        expected = info["x_velocity"] - 0.1 * np.square(a).sum(axis=1)
        np.testing.assert_allclose(reward, expected, atol=1e-5, rtol=1e-5)


@requires_mjx
def test_partial_autoreset_resets_only_the_done_row(cheetah):
    """A sub-env whose episode ended is reset on the next step; the others keep running."""
    cheetah.reset(seed=7)
    a = np.full((N, 6), 0.5, np.float32)
    cheetah.step(a)
    state = cheetah.device_state()
    before_qpos = np.asarray(state.data.qpos)
    # mark sub-env 0 as truncated on the device (as the time limit would)
    cheetah._state = state._replace(truncated=state.truncated.at[0].set(True))
    obs, reward, terminated, truncated, info = cheetah.step(a)
    after = cheetah.device_state()
    auto = np.asarray(after.autoreset)
    assert auto.tolist() == [True, False]
    assert reward[0] == 0 and reward[1] != 0
    assert np.asarray(after.steps).tolist() == [0, 2]
    assert info["_x_velocity"].tolist() == [False, True]
    assert not np.allclose(np.asarray(after.data.qpos)[1], before_qpos[1])  # row 1 moved on
    row0 = np.concatenate([np.asarray(after.data.qpos)[0, 1:], np.asarray(after.data.qvel)[0]])
    np.testing.assert_array_equal(obs[0], row0)


@requires_mjx
def test_vector_env_checks(cheetah):
    """(d) Gymnasium has no vector-env checker; these are its single-env checks that carry over to vector envs."""
    native = gym.make_vec("HalfCheetah-v5", num_envs=N, vectorization_mode="sync")
    assert cheetah.single_action_space == native.single_action_space
    assert cheetah.action_space == native.action_space
    assert cheetah.single_observation_space.shape == native.single_observation_space.shape
    native.close()

    # observations lie in the declared spaces, with the declared dtype
    obs, info = cheetah.reset(seed=11)
    check_obs(obs, cheetah.observation_space, "reset")
    obs2, reward, terminated, truncated, info = cheetah.step(cheetah.action_space.sample())
    check_obs(obs2, cheetah.observation_space, "step")
    assert reward.shape == (N,) and terminated.dtype == bool and truncated.dtype == bool
    for k, v in info.items():
        assert isinstance(v, np.ndarray) and v.shape == (N,), k

    # reset seed determinism, and different seeds give different starts
    a, _ = cheetah.reset(seed=123)
    b, _ = cheetah.reset(seed=123)
    c, _ = cheetah.reset(seed=124)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[0], a[1])  # sub-envs start from different states
    d, _ = cheetah.reset(seed=[123, 124])
    assert not np.allclose(d[0], d[1])

    # step determinism
    acts = np.random.default_rng(0).uniform(-1, 1, size=(4, N, 6)).astype(np.float32)
    runs = []
    for _ in range(2):
        cheetah.reset(seed=9)
        runs.append([cheetah.step(x)[0] for x in acts])
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)

    # returned data is not reused: earlier observations stay as they were, and are writable copies
    cheetah.reset(seed=9)
    first = cheetah.step(acts[0])[0]
    kept = first.copy()
    cheetah.step(acts[1])
    np.testing.assert_array_equal(first, kept)
    first[:] = 0.0

    # wrong action shape, no renderer
    with pytest.raises(ValueError, match="shape"):
        cheetah.step(np.zeros((N + 1, 6), np.float32))
    with pytest.raises(NotImplementedError, match="render"):
        cheetah.render()


@requires_mjx
def test_step_before_reset_and_unsupported_tasks():
    """Clear errors for stepping before reset, unsupported ids, non-MuJoCo cards and unknown names."""
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    env = MJXVectorEnv("HalfCheetah-v5", N)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros((N, 6), np.float32))
    with pytest.raises(gym.error.ResetNeeded):
        env.device_state()
    with pytest.raises(ConfigError, match="HalfCheetah-v5"):
        MJXVectorEnv("mujoco-ant-v5", 2)
    with pytest.raises(ConfigError, match="'mujoco' task card"):
        MJXVectorEnv("metaworld-reach-v3", 2)
    with pytest.raises(TaskCardError):
        MJXVectorEnv("no-such-card-v1", 2)


@requires_mjx
@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5"])
def test_hopper_walker_match_native_including_termination(env_id):
    """Hopper and Walker2d: observations (clipped qvel), healthy reward and termination match native MuJoCo."""
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    env = MJXVectorEnv(env_id, N, seed=0)
    # seed 1 with uniform random actions makes the robots fall within 80 steps
    worst = _parity(env, env_id, 80, seed=1)
    assert worst["obs"] < OBS_ATOL
    assert worst["terminations"] >= 1, "no sub-env fell: termination was not compared"
    env.close()


@requires_mjx
def test_make_vec_env_simulator_vectorization_builds_mjx(cheetah):
    """``make_vec_env(..., vectorization="simulator")`` on a supported MuJoCo card is MJX under the reward wrapper."""
    from robo_reward.envs.make import make_vec_env
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    venv = make_vec_env("mujoco-half-cheetah-v5", N, reward="constant:value=2", vectorization="simulator", seed=4)
    assert isinstance(venv, rr.VectorRewardWrapper) and isinstance(venv.env, MJXVectorEnv)
    assert venv.num_envs == N
    venv.reset()
    _, reward, _, _, info = venv.step(np.zeros((N, 6), np.float32))
    np.testing.assert_array_equal(reward, np.full(N, 2, np.float32))
    assert np.isfinite(info["env_reward"]).all()
    with pytest.raises(ConfigError, match="NEXT_STEP mode only"):
        make_vec_env("mujoco-half-cheetah-v5", N, vectorization="simulator", autoreset_mode="same_step")
    venv.close()


@requires_mjx
def test_train_ppo_native_on_mjx(cheetah, tmp_path):
    """`robo-reward train --agent ppo-native --vectorization simulator` trains on the MJX batch, evaluates on MuJoCo."""
    import json

    from robo_reward.train.config import make_run_config
    from robo_reward.train.runner import Runner

    cfg = make_run_config({
        "task": "mujoco-half-cheetah-v5", "agent": "ppo-native", "vectorization": "simulator", "n_envs": N,
        "steps": 128, "agent_overrides": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
        "eval_episodes": 1, "checkpoint_freq": 0, "log_freq": 64, "video": False, "out": str(tmp_path / "run"),
        "device": "cpu",
    })
    runner = Runner(cfg, progress=False).setup()
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    assert isinstance(runner.venv.env, MJXVectorEnv) and runner.venv.num_envs == N
    summary = runner.run()
    assert summary["timesteps"] >= 128
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert lines and all(np.isfinite(line.get("rollout/env_reward_mean", 0.0)) for line in lines)
    assert (tmp_path / "run" / "final_model.pt").is_file()
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["episodes"] == 1

"""The PyBullet KUKA reach env and its task card: env checkers, rendering, success, seeding, errors."""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

pytest.importorskip("pybullet", reason="pybullet is not installed: pip install 'robo-reward[pybullet]'")

import robo_reward as rr  # noqa: E402
from robo_reward.core.errors import MissingDependencyError  # noqa: E402
from robo_reward.envs.cards import load_card  # noqa: E402
from robo_reward.envs.make import SUCCESS_INFO_KEY, make_env, make_vec_env, simulator_problem  # noqa: E402
from robo_reward.envs.pybullet_envs import (  # noqa: E402
    KUKA_CAMERAS,
    KUKA_REACH_ID,
    KUKA_REACH_SUCCESS_RADIUS,
    KukaReachEnv,
)

CARD = "pybullet-kuka-reach-v1"

def reach_distance(batch) -> dict[str, np.ndarray]:
    """A batched ``python`` reward from the card's observation fields: minus the distance to the goal."""
    nxt = np.asarray(batch.next_obs, dtype=np.float64).reshape(len(batch), -1)
    return {"distance": -np.linalg.norm(nxt[:, 20:23], axis=1)}


PLUGINS = {
    "env": "env",
    "sparse-success": "sparse-success",
    "constant": "constant:value=1",
    "python": {"name": "python", "fn": reach_distance},
}


def _quiet_checks(env: gym.Env, *, render: bool) -> None:
    """Gymnasium's and Stable-Baselines3's env checkers, without their by-design warnings (a wrapped env, ...)."""
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(env, skip_render_check=not render, skip_close_check=True)
        sb3_checker.check_env(env, warn=True, skip_render_check=not render)


def test_raw_env_passes_gymnasium_check_env_including_render_and_close():
    env = KukaReachEnv(render_mode="rgb_array", width=64, height=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(env)  # render, determinism of reset(seed), close twice
    env.close()
    assert KUKA_REACH_ID in gym.envs.registry


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_card_env_passes_gymnasium_and_sb3_checkers_with_builtin_plugins(plugin):
    card = load_card(CARD)
    env = make_env(CARD, reward=PLUGINS[plugin], seed=0, render_mode="rgb_array",
                   render_overrides={"width": 48, "height": 48})
    try:
        _quiet_checks(env, render=True)
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(env.action_space.sample())
        assert isinstance(reward, float) and np.isfinite(reward) and terminated is False
        assert isinstance(info[SUCCESS_INFO_KEY], bool) and "env_reward" in info
        assert info["env_reward"] == pytest.approx(-info["distance"])
        if plugin == "env":
            assert reward == pytest.approx(info["env_reward"])
        elif plugin == "constant":
            assert reward == 1.0
        elif plugin == "python":  # the card's end_effector_to_goal field has the env's own distance
            assert reward == pytest.approx(info["env_reward"], abs=1e-5)
    finally:
        env.close()
    assert card.family == "pybullet" and card.obs_dim == env.observation_space.shape[0] == 23


def test_frames_have_the_cards_size_and_cameras_differ():
    card = load_card(CARD)
    env = make_env(CARD, render_mode="rgb_array", seed=0)
    try:
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (card.render.height, card.render.width, 3) == (224, 224, 3)
        assert frame.dtype == np.uint8 and frame.std() > 10  # a scene, not a blank image
        red = (frame[..., 0] > 150) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
        assert red.sum() > 5, "the red goal ball should be visible from the card's camera"
    finally:
        env.close()
    small = make_env(CARD, render_mode="rgb_array", render_overrides={"width": 96, "height": 64, "camera": "top"})
    try:
        small.reset(seed=0)
        top = small.render()
        assert top.shape == (64, 96, 3)
        small.unwrapped.camera_name = "side"
        assert np.abs(small.render().astype(int) - top.astype(int)).mean() > 5
    finally:
        small.close()
    plain = make_env(CARD)
    plain.reset(seed=0)
    assert plain.render() is None  # no render_mode: nothing rendered
    plain.close()
    assert set(KUKA_CAMERAS) == {"front", "side", "top"}


def test_observation_fields_agree_with_the_card():
    card = load_card(CARD)
    env = make_env(CARD, seed=1)
    try:
        obs, _ = env.reset(seed=1)
        for _ in range(5):
            obs, *_ = env.step(env.action_space.sample())
        base = env.unwrapped
        ee, goal = base.end_effector_position(), base.goal
        np.testing.assert_allclose(obs[card.field("end_effector_position").slice], ee, atol=1e-6)
        np.testing.assert_allclose(obs[card.field("goal_position").slice], goal, atol=1e-6)
        np.testing.assert_allclose(obs[card.field("end_effector_to_goal").slice], goal - ee, atol=1e-6)
        q = obs[card.field("joint_positions").slice]
        assert np.all(q >= base._q_low - 1e-3) and np.all(q <= base._q_high + 1e-3)
        assert np.all((goal >= base.goal_low) & (goal <= base.goal_high))
    finally:
        env.close()


def test_scripted_expert_reaches_the_goal_and_success_is_reported():
    env = make_env(CARD, reward="sparse-success", seed=2)
    try:
        for episode in range(3):
            env.reset(seed=10 + episode)
            steps = 0
            while True:
                _, reward, _, truncated, info = env.step(env.unwrapped.expert_action())
                steps += 1
                assert info[SUCCESS_INFO_KEY] == info["success"] == (info["distance"] < KUKA_REACH_SUCCESS_RADIUS)
                assert reward == float(info[SUCCESS_INFO_KEY])
                if info[SUCCESS_INFO_KEY] or truncated:
                    break
            assert info[SUCCESS_INFO_KEY], f"episode {episode}: the scripted expert ended {info['distance']:.3f} m away"
            assert steps <= 100
    finally:
        env.close()


def test_episodes_are_cut_by_the_cards_time_limit_and_the_seed_repeats_them():
    def rollout(seed: int) -> np.ndarray:
        env = make_env(CARD, seed=seed)
        obs = [env.reset()[0]]
        truncated, steps = False, 0
        while not truncated:
            o, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert not terminated
            obs.append(o)
            steps += 1
        env.close()
        assert steps == load_card(CARD).max_episode_steps
        return np.stack(obs)

    a, b = rollout(4), rollout(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], rollout(5)[0])


def test_vector_env_sub_envs_have_their_own_physics():
    venv = make_vec_env(CARD, 3, reward="constant:value=1", seed=0)
    try:
        obs, _ = venv.reset()
        assert obs.shape == (3, 23)
        assert len({tuple(np.round(o[17:20], 5)) for o in obs}) == 3  # each sub-env drew its own goal
        obs, reward, _, _, info = venv.step(venv.action_space.sample())
        np.testing.assert_array_equal(reward, np.ones(3, dtype=np.float32))
        assert info[SUCCESS_INFO_KEY].shape == (3,)
    finally:
        venv.close()
    env = gym.make(f"robo_reward/{CARD}", reward="sparse-success")
    try:
        env.reset(seed=0)
        assert env.step(env.action_space.sample())[1] in (0.0, 1.0)
    finally:
        env.close()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown camera 'nope'.*front"):
        KukaReachEnv(camera_name="nope")
    with pytest.raises(ValueError, match="render_mode"):
        KukaReachEnv(render_mode="human")
    env = KukaReachEnv()
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="7 entries"):
            env.step(np.zeros(3))
        with pytest.raises(ValueError, match="NaN"):
            env.step(np.full(7, np.nan))
    finally:
        env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.step(np.zeros(7))


def test_without_pybullet_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pybullet", None)  # `import pybullet` now fails
    monkeypatch.delitem(sys.modules, "robo_reward.envs.pybullet_envs")
    with pytest.raises(MissingDependencyError, match=r"'pybullet'.*robo-reward\[pybullet\]"):
        make_env(CARD)
    assert "pip install 'robo-reward[pybullet]'" in simulator_problem(CARD)


def test_reward_wrapper_on_the_raw_env():
    env = rr.RewardWrapper(gym.make(KUKA_REACH_ID, max_episode_steps=10), "constant:value=2", mode="add")
    try:
        env.reset(seed=0)
        _, reward, _, _, info = env.step(np.zeros(7, dtype=np.float32))
        assert reward == pytest.approx(info["env_reward"] + 2.0)
    finally:
        env.close()

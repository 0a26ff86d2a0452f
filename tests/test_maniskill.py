"""The ManiSkill 3 task card (PickCube-v1, state observations, on the CPU).

ManiSkill is not installed by CI (it is heavy, and SAPIEN needs a Vulkan driver with
``VK_KHR_external_semaphore_fd``); these tests skip with the precise reason when it or
the driver is missing. With ``mani-skill`` installed and a suitable driver (on a
CPU-only machine, Mesa's lavapipe 23+ selected with ``VK_ICD_FILENAMES``; see the README)
they build the card's env and check it like every other card.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from robo_reward.core.errors import MissingDependencyError
from robo_reward.envs.cards import load_card
from robo_reward.envs.make import SUCCESS_INFO_KEY, make_env, simulator_problem

CARD = "maniskill-pick-cube-v1"
HAVE_MANISKILL = importlib.util.find_spec("mani_skill") is not None
NOT_INSTALLED = "mani_skill is not installed: pip install 'robo-reward[maniskill]' (CI does not install it: heavy)"


@pytest.fixture(scope="module")
def maniskill_ready():
    """Skip unless ManiSkill and a Vulkan driver it can use are present."""
    if not HAVE_MANISKILL:
        pytest.skip(NOT_INSTALLED)
    from robo_reward.envs.make import maniskill_render_problem

    problem = maniskill_render_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def env(maniskill_ready):
    """The card's env, made once for the module (building a ManiSkill scene takes seconds)."""
    e = make_env(CARD, seed=0)
    yield e
    e.close()


def test_the_card_is_valid_without_maniskill():
    card = load_card(CARD)
    assert card.family == "maniskill" and card.env_id == "PickCube-v1"
    assert card.env_kwargs["obs_mode"] == "state" and card.obs_dim == 42
    assert card.success.info_key == "success"


@pytest.mark.skipif(HAVE_MANISKILL, reason="mani_skill is installed here; this checks the error without it")
def test_without_maniskill_the_error_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"robo-reward\[maniskill\]"):
        make_env(CARD)
    assert "pip install 'robo-reward[maniskill]'" in simulator_problem(CARD)


def test_env_is_pick_cube_with_state_observations(env):
    base = env.unwrapped
    assert type(base).__name__ == "PickCubeEnv"
    assert base.obs_mode == "state" and base.control_mode == "pd_ee_delta_pos" and base.num_envs == 1
    assert env.observation_space.shape == (42,) and env.action_space.shape == (4,)
    assert env.spec.id == f"robo_reward/{CARD}" and env.spec.max_episode_steps == 50


def test_observation_fields_agree_with_maniskill_state(env):
    card = load_card(CARD)
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(env.action_space.sample())
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (42,)
    base = env.unwrapped
    qpos = base.agent.robot.get_qpos()[0].cpu().numpy()
    tcp = base.agent.tcp_pose.raw_pose[0].cpu().numpy()
    goal = base.goal_site.pose.p[0].cpu().numpy()
    cube = base.cube.pose.raw_pose[0].cpu().numpy()
    f = card.field
    np.testing.assert_allclose(obs[f("joint_positions").slice], qpos, atol=1e-5)
    np.testing.assert_allclose(obs[f("tcp_pose").slice], tcp, atol=1e-5)
    np.testing.assert_allclose(obs[f("goal_position").slice], goal, atol=1e-5)
    np.testing.assert_allclose(obs[f("cube_pose").slice], cube, atol=1e-5)
    np.testing.assert_allclose(obs[f("tcp_to_cube").slice], cube[:3] - tcp[:3], atol=1e-5)
    np.testing.assert_allclose(obs[f("cube_to_goal").slice], goal - cube[:3], atol=1e-5)


def test_time_limit_success_flag_and_seeding(env):
    a = env.reset(seed=3)[0]
    steps, truncated = 0, False
    while not truncated:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert isinstance(reward, float) and isinstance(info[SUCCESS_INFO_KEY], bool)
        assert info[SUCCESS_INFO_KEY] == bool(info["success"])
        if terminated:
            break
    assert steps <= 50
    np.testing.assert_array_equal(env.reset(seed=3)[0], a)


@pytest.mark.parametrize("plugin", ["env", "sparse-success", "constant:value=1"])
def test_gymnasium_and_sb3_env_checkers(env, plugin):
    import robo_reward as rr
    from gymnasium.utils.env_checker import check_env as gym_check_env

    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    wrapped = rr.RewardWrapper(env, plugin, task=load_card(CARD))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(wrapped, skip_render_check=True, skip_close_check=True)
        sb3_checker.check_env(wrapped, warn=True, skip_render_check=True)


def test_frames_have_the_cards_size(maniskill_ready):
    e = make_env(CARD, seed=0, render_mode="rgb_array")
    try:
        e.reset(seed=0)
        frame = e.render()
        assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8 and frame.std() > 5
    finally:
        e.close()


def test_a_missing_vulkan_driver_is_explained():
    if not HAVE_MANISKILL:
        pytest.skip(NOT_INSTALLED)
    code = (
        "from robo_reward.envs.make import make_env\n"
        "try:\n    make_env('maniskill-pick-cube-v1')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300).stdout
    assert "RoboRewardError" in out and "VK_KHR_external_semaphore_fd" in out and "VK_ICD_FILENAMES" in out, out

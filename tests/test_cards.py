"""Task cards: schema, loading and error messages, success predicates, env factory, rendering, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import robo_reward.envs as rre
from robo_reward.core.errors import ConfigError, TaskCardError
from robo_reward.core.success import SuccessSignal
from robo_reward.envs import success_predicates as sp
from robo_reward.envs.cards import card_from_dict, list_cards, load_card
from robo_reward.envs.make import SUCCESS_INFO_KEY, make_env, make_vec_env
from robo_reward.envs.render import apply_render_options, configure_headless_gl, render_options_of

CARD_NAMES = rre.card_names()
MUJOCO_CARDS = [n for n in CARD_NAMES if n.startswith("mujoco-")]
METAWORLD_CARDS = [n for n in CARD_NAMES if n.startswith("metaworld-")]

EXPECTED_CARDS = {
    "mujoco-reacher-v5", "mujoco-pusher-v5", "mujoco-half-cheetah-v5", "mujoco-hopper-v5",
    "mujoco-walker2d-v5", "mujoco-ant-v5", "mujoco-humanoid-v5", "mujoco-inverted-pendulum-v5",
    "metaworld-drawer-open-v3", "metaworld-drawer-close-v3", "metaworld-window-open-v3",
    "metaworld-window-close-v3", "metaworld-button-press-v3", "metaworld-sweep-into-v3",
    "metaworld-door-unlock-v3", "metaworld-door-close-v3", "metaworld-handle-pull-v3",
    "metaworld-handle-press-v3", "metaworld-handle-press-side-v3", "metaworld-reach-v3",
    "metaworld-push-v3", "metaworld-pick-place-v3", "pybullet-kuka-reach-v1", "maniskill-pick-cube-v1",
}  # fmt: skip

GOOD_CARD = """\
name: test-reacher-v1
family: mujoco
env_id: Reacher-v5
max_episode_steps: 20
obs_dim: 10
success:
  predicate: robo_reward.envs.success_predicates:reacher_fingertip_near_target
render: {width: 32, height: 24}
vlm: {goal: [an arm touching a dot], baseline: [an arm]}
observation:
  - {name: a, start: 0, stop: 4, meaning: joint cos/sin, units: "-"}
  - {name: b, start: 4, stop: 10, meaning: the rest, units: "-"}
description: a small copy of the Reacher card
"""


def _write(tmp_path: Path, text: str, name: str = "card.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


# ----------------------------------------------------------------------------- shipped cards


def test_the_expected_cards_ship():
    assert EXPECTED_CARDS <= set(CARD_NAMES)


@pytest.mark.parametrize("name", CARD_NAMES)
def test_every_shipped_card_loads_and_is_complete(name):
    card = load_card(name)
    assert card.name == name and card.source is not None and card.source.stem == name
    assert isinstance(card.success_signal(), SuccessSignal)
    assert card.success.description, "say in words what success means"
    assert card.vlm is not None and card.vlm.goal and card.vlm.baseline
    assert card.description.strip()
    assert (card.render.width, card.render.height) == (224, 224)
    assert not card.render.shadows and not card.render.reflections
    # the observation fields describe every entry of the observation, in order, without gaps
    assert card.obs_dim is not None and card.observation
    fields = sorted(card.observation, key=lambda f: f.start)
    assert fields[0].start == 0 and fields[-1].stop == card.obs_dim
    assert all(a.stop == b.start for a, b in zip(fields, fields[1:]))
    assert all(f.meaning.strip() and f.units.strip() for f in fields)
    if card.family == "metaworld":
        assert card.success.info_key == "success" and card.obs_dim == 39
        assert card.render.camera == "corner" and card.max_episode_steps <= 500
    if card.success.predicate:
        card.success_signal()._fn()  # the predicate imports


def test_list_cards_and_the_gym_ids():
    cards = list_cards()
    assert [c.name for c in cards] == sorted(CARD_NAMES)
    ids = rre.register_gym_envs()  # idempotent
    assert ids == [f"robo_reward/{n}" for n in CARD_NAMES]
    assert all(i in gym.envs.registry for i in ids)
    assert cards[0].gym_id == ids[0]


def test_load_card_accepts_a_card_a_path_and_the_gym_id(tmp_path):
    card = load_card("mujoco-reacher-v5")
    assert load_card(card) is card
    assert load_card("robo_reward/mujoco-reacher-v5") is card  # cached
    assert load_card(card.source).name == card.name
    path = _write(tmp_path, GOOD_CARD)
    own = load_card(path)
    assert own.name == "test-reacher-v1" and own.field("b").slice == slice(4, 10)
    assert load_card(str(path)).name == "test-reacher-v1"


def test_card_model_is_frozen():
    card = load_card("mujoco-reacher-v5")
    with pytest.raises(Exception):
        card.max_episode_steps = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- bad cards


@pytest.mark.parametrize(
    "change, expected",
    [
        (("max_episode_steps: 20", "max_episode_step: 20"), ["max_episode_step", "unknown field"]),
        (("render: {width: 32, height: 24}", "render: {width: 32, heigth: 24}"), ["render.heigth", "unknown field"]),
        (("stop: 10, meaning: the rest", "stop: 11, meaning: the rest"), ["'b'", "outside the observation", "obs_dim is 10"]),
        (("start: 4, stop: 10", "start: 3, stop: 10"), ["'a'", "'b'", "overlap"]),
        (("start: 4, stop: 10", "start: 4, stop: 4"), ["stop (4) must be greater than start (4)"]),
        (("name: b,", "name: a,"), ["'a'", "used twice"]),
        (("name: test-reacher-v1", "name: test-reacher"), ["test-reacher", "version", "-v1"]),
        (("name: test-reacher-v1", "name: Test_Reacher-v1"), ["Test_Reacher-v1", "lower-case"]),
        (("family: mujoco", "family: mujuco"), ["family", "mujoco"]),
        (("max_episode_steps: 20", "max_episode_steps: 0"), ["max_episode_steps", "greater than 0"]),
        (
            ("  predicate: robo_reward.envs.success_predicates:reacher_fingertip_near_target", "  info_key: success\n  predicate: a.b:c"),
            ["success", "exactly one"],
        ),
        (("  predicate: robo_reward.envs.success_predicates:reacher_fingertip_near_target", "  threshold: 1.0"), ["success", "exactly one"]),
        (("  predicate: robo_reward.envs.success_predicates:reacher_fingertip_near_target", "  predicate: not-a-path"), ["package.module:function"]),
        (("vlm: {goal: [an arm touching a dot], baseline: [an arm]}", "vlm: {goal: [], baseline: [an arm]}"), ["vlm.goal"]),
    ],
)
def test_bad_cards_raise_task_card_error_naming_file_and_problem(tmp_path, change, expected):
    old, new = change
    assert old in GOOD_CARD
    path = _write(tmp_path, GOOD_CARD.replace(old, new), "bad-card.yaml")
    with pytest.raises(TaskCardError) as info:
        load_card(path)
    msg = str(info.value)
    assert "bad-card.yaml" in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_missing_success_is_an_error(tmp_path):
    text = GOOD_CARD.replace(
        "success:\n  predicate: robo_reward.envs.success_predicates:reacher_fingertip_near_target\n", ""
    )
    with pytest.raises(TaskCardError, match=r"(?s)card\.yaml.*success: Field required"):
        load_card(_write(tmp_path, text))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a YAML mapping, got list"),
        ("", "must be a YAML mapping, got NoneType"),
    ],
)
def test_unreadable_cards(tmp_path, text, expected):
    with pytest.raises(TaskCardError, match=expected):
        load_card(_write(tmp_path, text))


def test_missing_file_and_bad_argument(tmp_path):
    with pytest.raises(TaskCardError, match="does not exist"):
        load_card(tmp_path / "nope.yaml")
    with pytest.raises(TaskCardError):
        load_card("")


def test_unknown_card_name_lists_close_matches_and_known_cards():
    with pytest.raises(TaskCardError) as info:
        load_card("metaworld-rech-v3")
    msg = str(info.value)
    assert "Did you mean 'metaworld-reach-v3'" in msg
    assert "Known cards:" in msg and "mujoco-humanoid-v5" in msg
    with pytest.raises(TaskCardError, match="Known cards"):
        load_card("zzz-nothing-like-it-v1")


def test_card_from_dict_and_errors_without_a_file():
    card = card_from_dict(
        {
            "name": "x-v1",
            "family": "other",
            "env_id": "CartPole-v1",
            "max_episode_steps": 10,
            "success": {"info_key": "x", "threshold": 1, "below": True},
        }
    )
    assert card.source is None and card.vlm is None and card.observation == []
    assert card.success.summary() == "info['x'] <= 1"
    sig = card.success_signal()
    assert sig.evaluate(None, [{"x": 0.5}, {"x": 2.0}]).tolist() == [True, False]
    with pytest.raises(TaskCardError, match="<task card>"):
        card_from_dict({"name": "x-v1"})
    with pytest.raises(TaskCardError, match="no observation field 'q'"):
        card.field("q")


# ----------------------------------------------------------------------------- success predicates


def test_reacher_predicate():
    obs = np.zeros((3, 10))
    obs[0, 8:10] = [0.01, 0.02]  # 2.2 cm: success
    obs[1, 8:10] = [0.04, 0.04]  # 5.7 cm: no
    obs[2, 8:10] = [-0.049, 0.0]  # 4.9 cm: success
    assert sp.reacher_fingertip_near_target(obs, [{}] * 3).tolist() == [True, False, True]
    assert sp.reacher_fingertip_near_target(obs[1]).tolist() == [False]  # a single observation


def test_pusher_predicate_uses_the_table_plane():
    obs = np.zeros((3, 23))
    obs[:, 20:23] = [0.45, -0.05, -0.323]
    obs[0, 17:20] = [0.46, -0.04, -0.275]  # 1.4 cm away on the plane, 4.8 cm above: success
    obs[1, 17:20] = [0.52, -0.05, -0.275]  # 7 cm away
    obs[2, 17:20] = [0.45, 0.0, -0.275]  # 5 cm away: not strictly within
    assert sp.pusher_object_at_goal(obs, [{}] * 3).tolist() == [True, False, False]


def test_inverted_pendulum_predicate():
    obs = np.zeros((4, 4))
    obs[:, 1] = [0.0, 0.049, -0.06, 0.3]
    assert sp.inverted_pendulum_upright(obs, [{}] * 4).tolist() == [True, True, False, False]


def test_predicates_reject_mismatched_batches():
    with pytest.raises(ValueError, match="2 observations but 3 infos"):
        sp.reacher_fingertip_near_target(np.zeros((2, 10)), [{}] * 3)


@pytest.mark.parametrize(
    "card_name, field, index",
    [
        ("mujoco-reacher-v5", "fingertip_to_target", sp.REACHER_FINGERTIP_TO_TARGET),
        ("mujoco-pusher-v5", "object_position", sp.PUSHER_OBJECT_POS),
        ("mujoco-pusher-v5", "goal_position", sp.PUSHER_GOAL_POS),
        ("mujoco-inverted-pendulum-v5", "pole_angle", slice(sp.PENDULUM_ANGLE, sp.PENDULUM_ANGLE + 1)),
    ],
)
def test_predicate_indices_agree_with_the_cards(card_name, field, index):
    assert load_card(card_name).field(field).slice == index


# ----------------------------------------------------------------------------- make_env


def test_make_env_puts_is_success_on_every_step():
    env = make_env("mujoco-inverted-pendulum-v5", seed=0)
    try:
        assert env.spec is not None and env.spec.max_episode_steps == 1000
        obs, _ = env.reset(seed=0)
        for _ in range(5):
            obs, _, terminated, truncated, info = env.step(np.zeros(1, dtype=np.float32))
            assert isinstance(info[SUCCESS_INFO_KEY], bool)
            assert info[SUCCESS_INFO_KEY] == bool(sp.inverted_pendulum_upright(obs)[0])
        assert info[SUCCESS_INFO_KEY]  # zero force keeps the pole near upright for a few steps
    finally:
        env.close()


def test_make_env_seed_makes_episodes_repeatable():
    def rollout():
        env = make_env("mujoco-reacher-v5", seed=7)
        obs = [env.reset()[0]]
        for _ in range(3):
            obs.append(env.step(env.action_space.sample())[0])
        env.close()
        return np.stack(obs)

    np.testing.assert_array_equal(rollout(), rollout())


def test_make_env_time_limit_and_env_kwargs_override():
    env = make_env("mujoco-reacher-v5", reward_dist_weight=2.0)
    try:
        assert env.unwrapped._reward_dist_weight == 2.0
        env.reset(seed=0)
        steps = 0
        truncated = False
        while not truncated:
            _, _, _, truncated, _ = env.step(env.action_space.sample())
            steps += 1
        assert steps == 50
    finally:
        env.close()


def test_max_episode_steps_can_be_overridden():
    env = make_env("metaworld-reach-v3", max_episode_steps=3)
    try:
        env.reset(seed=0)
        assert [env.step(env.action_space.sample())[3] for _ in range(3)] == [False, False, True]
    finally:
        env.close()
    with pytest.raises(TaskCardError, match="max_path_length=500"):
        make_env("metaworld-reach-v3", max_episode_steps=501)


def test_make_env_with_reward_wraps_and_reports_terms():
    env = make_env("mujoco-reacher-v5", reward="sparse-success:value=2", mode="add", seed=0)
    try:
        env.reset()
        _, r, _, _, info = env.step(env.action_space.sample())
        assert r == pytest.approx(info["env_reward"] + 2.0 * info[SUCCESS_INFO_KEY])
        assert info["reward_terms"]["success"] == float(info[SUCCESS_INFO_KEY])
    finally:
        env.close()
    with pytest.raises(ConfigError, match="only when a reward"):
        make_env("mujoco-reacher-v5", alpha=0.5)


@pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high:UserWarning")
def test_metaworld_is_success_follows_info_success_with_a_scripted_policy():
    from metaworld.policies import SawyerReachV3Policy

    env = make_env("metaworld-reach-v3", seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        policy = SawyerReachV3Policy()
        hit = False
        for _ in range(150):
            obs, _, _, _, info = env.step(policy.get_action(obs).astype(np.float32))
            assert info[SUCCESS_INFO_KEY] == bool(info["success"])
            assert env.observation_space.contains(obs)
            if info[SUCCESS_INFO_KEY]:
                hit = True
                break
        assert hit, "the scripted reach policy should succeed within 150 steps"
    finally:
        env.close()


def test_metaworld_reset_seed_picks_the_same_task():
    env = make_env("metaworld-push-v3", seed=1)
    try:
        a = env.reset(seed=5)[0]
        env.reset()
        b = env.reset(seed=5)[0]
        goals = {tuple(env.reset()[0][36:39].round(4)) for _ in range(6)}
        np.testing.assert_array_equal(a, b)
        assert len(goals) > 1  # resets without a seed draw other tasks
    finally:
        env.close()


def test_bad_render_override_is_a_config_error():
    with pytest.raises(ConfigError, match="widht"):
        make_env("mujoco-reacher-v5", render_overrides={"widht": 3})
    with pytest.raises(ConfigError, match="width"):
        make_env("mujoco-reacher-v5", render_overrides={"width": -3})


def test_unknown_env_id_is_a_task_card_error(tmp_path):
    path = _write(tmp_path, GOOD_CARD.replace("env_id: Reacher-v5", "env_id: Reachr-v5"))
    with pytest.raises(TaskCardError, match="Reachr-v5"):
        make_env(path)


# ----------------------------------------------------------------------------- gym ids


def test_gym_make_with_a_reward_keyword():
    env = gym.make("robo_reward/mujoco-reacher-v5", reward="sparse-success")
    try:
        env.reset(seed=0)
        _, r, _, _, info = env.step(env.action_space.sample())
        assert r == float(info[SUCCESS_INFO_KEY])
        assert "env_reward" in info and "success" in info["reward_terms"]
        assert env.spec.id == "robo_reward/mujoco-reacher-v5" and env.spec.kwargs["reward"] == "sparse-success"
    finally:
        env.close()


def test_gym_make_without_reward_and_with_mode():
    env = gym.make("robo_reward/mujoco-hopper-v5", reward="constant:value=1", mode="add", seed=0)
    try:
        env.reset()
        _, r, _, _, info = env.step(env.action_space.sample())
        assert r == pytest.approx(info["env_reward"] + 1.0)
        assert isinstance(info[SUCCESS_INFO_KEY], bool)
    finally:
        env.close()
    plain = gym.make("robo_reward/mujoco-hopper-v5")
    try:
        plain.reset(seed=0)
        info = plain.step(plain.action_space.sample())[-1]
        assert "env_reward" not in info and SUCCESS_INFO_KEY in info
    finally:
        plain.close()


def test_gym_make_metaworld_with_reward():
    env = gym.make("robo_reward/metaworld-reach-v3", reward="sparse-success", seed=0)
    try:
        obs, _ = env.reset()
        assert obs.shape == (39,)
        _, r, _, _, info = env.step(env.action_space.sample())
        assert r == float(info["success"]) == float(info[SUCCESS_INFO_KEY])
    finally:
        env.close()


def test_env_spec_names_the_card_and_rebuilds_the_env(tmp_path):
    from gymnasium.utils.env_checker import check_env

    env = make_env("mujoco-reacher-v5", reward="constant:value=1", seed=3)
    try:
        assert env.spec.id == "robo_reward/mujoco-reacher-v5"
        assert env.spec.kwargs == {"task": "mujoco-reacher-v5", "reward": "constant:value=1", "mode": "replace", "seed": 3}
        with pytest.warns(UserWarning):  # "the env is wrapped" and similar notes
            check_env(env, skip_render_check=True)  # its close check rebuilds the env from env.spec
        again = env.spec.make()
        again.reset()
        assert again.step(again.action_space.sample())[1] == 1.0
        again.close()
    finally:
        env.close()
    path = _write(tmp_path, GOOD_CARD)
    own = make_env(path)
    try:
        assert own.spec.id == "robo_reward/test-reacher-v1" and own.spec.kwargs["task"] == str(path.resolve())
        rebuilt = own.spec.make()
        assert rebuilt.observation_space.shape == (10,)
        rebuilt.close()
    finally:
        own.close()


def test_make_vec_env_sync_with_reward():
    venv = make_vec_env("mujoco-reacher-v5", 3, reward="sparse-success", seed=0)
    try:
        obs, _ = venv.reset()
        assert obs.shape == (3, 10)
        _, r, _, _, info = venv.step(venv.action_space.sample())
        assert r.shape == (3,)
        np.testing.assert_array_equal(r, info[SUCCESS_INFO_KEY].astype(np.float32))
        assert info["env_reward"].shape == (3,)
    finally:
        venv.close()


def test_make_vec_env_async_same_step():
    venv = make_vec_env("mujoco-inverted-pendulum-v5", 2, seed=0, vectorization="async", autoreset_mode="same_step")
    try:
        obs, _ = venv.reset()
        assert obs.shape == (2, 4)
        _, _, _, _, info = venv.step(venv.action_space.sample())
        assert info[SUCCESS_INFO_KEY].dtype == bool
    finally:
        venv.close()


def test_make_vec_env_argument_errors():
    with pytest.raises(ConfigError, match="n_envs"):
        make_vec_env("mujoco-reacher-v5", 0)
    with pytest.raises(ConfigError, match="vectorization"):
        make_vec_env("mujoco-reacher-v5", 1, vectorization="threads")
    with pytest.raises(ConfigError, match="autoreset_mode"):
        make_vec_env("mujoco-reacher-v5", 1, autoreset_mode="sometimes")


# ----------------------------------------------------------------------------- rendering


def test_configure_headless_gl(monkeypatch):
    for var in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY", "PYOPENGL_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert configure_headless_gl() == "egl"
    assert os.environ["MUJOCO_GL"] == "egl" and os.environ["PYOPENGL_PLATFORM"] == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert configure_headless_gl() == "osmesa"  # an explicit choice is kept
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setenv("DISPLAY", ":0")
    assert configure_headless_gl() is None and "MUJOCO_GL" not in os.environ


@pytest.mark.parametrize("name", ["mujoco-half-cheetah-v5", "metaworld-drawer-open-v3"])
def test_render_options_change_the_model_and_frames_have_the_card_size(name):
    env = make_env(name, render_mode="rgb_array", seed=0)
    try:
        m = env.unwrapped.model
        assert m.vis.quality.shadowsize == 0
        assert not np.any(m.light_castshadow) and not np.any(m.mat_reflectance)
        frame = env.render()
        assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8
        assert frame.std() > 1  # not a blank image
        opts = render_options_of(env)
        assert opts["shadows"] is False and opts["reflections"] is False and opts["width"] == 224
        # turn shadows back on after a frame was rendered: the GL context is rebuilt
        apply_render_options(env, shadows=True, reflections=True)
        assert m.vis.quality.shadowsize > 0 and np.any(m.light_castshadow)
        assert env.render().shape == (224, 224, 3)
    finally:
        env.close()


def test_render_overrides_size_and_camera():
    env = make_env(
        "mujoco-hopper-v5", render_mode="rgb_array", render_overrides={"width": 64, "height": 48, "shadows": True}
    )
    try:
        env.reset(seed=0)
        assert env.unwrapped.model.vis.quality.shadowsize > 0
        assert env.render().shape == (48, 64, 3)
        apply_render_options(env, width=640, height=720)  # larger than the default offscreen buffer
        assert env.render().shape == (720, 640, 3)
        with pytest.raises(ConfigError, match="no camera named 'nope'.*track"):
            apply_render_options(env, camera="nope")
    finally:
        env.close()


def test_camera_roll_turns_the_metaworld_view_upright():
    frames = []
    for roll in (180.0, 0.0):
        env = make_env("metaworld-reach-v3", render_mode="rgb_array", seed=0, render_overrides={"camera_roll": roll})
        env.reset(seed=0)
        frames.append(env.render().astype(np.float32))
        env.close()
    upright, raw = frames
    # turning the camera by 180 degrees about its axis turns the picture by 180 degrees
    assert np.abs(upright - raw[::-1, ::-1]).mean() < 6.0
    assert np.abs(upright - raw).mean() > 20.0


def test_apply_render_options_ignores_non_mujoco_envs():
    env = gym.make("CartPole-v1")
    assert apply_render_options(env, width=10) is env
    assert render_options_of(env) == {}
    env.close()


# ----------------------------------------------------------------------------- CLI and import cost


def test_cli_tasks_and_task_show():
    import typer
    from typer.testing import CliRunner

    from robo_reward.envs.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["tasks", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == CARD_NAMES
    assert {r["obs_dim"] for r in rows if r["family"] == "metaworld"} == {39}
    res = runner.invoke(app, ["tasks", "--family", "mujoco"])
    assert res.exit_code == 0 and "Reacher-v5" in res.output and "metaworld" not in res.output
    res = runner.invoke(app, ["task-show", "mujoco-reacher-v5"])
    assert res.exit_code == 0 and "fingertip_to_target" in res.output
    res = runner.invoke(app, ["task-show", "metaworld-reach-v3", "--json"])
    assert json.loads(res.output)["env_kwargs"] == {"env_name": "reach-v3"}
    res = runner.invoke(app, ["task-show", "mujoco-reacher"])
    assert res.exit_code == 1 and "Did you mean" in res.output


def test_importing_the_envs_package_imports_no_simulator():
    code = (
        "import sys, robo_reward.envs as e; import gymnasium as gym; "
        "assert 'robo_reward/metaworld-reach-v3' in gym.envs.registry; "
        "print(sorted(m for m in ('mujoco', 'metaworld', 'pybullet', 'mani_skill', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_card_deploy_section_is_validated_and_read(tmp_path):
    from robo_reward.deploy.safety import load_deploy_settings

    good = _write(tmp_path, GOOD_CARD + "deploy:\n  rate_hz: 25\n  safety: {max_action_rate: 4.0}\n", "good.yaml")
    card = load_card(good)
    settings = load_deploy_settings(card)
    assert settings.rate_hz == 25 and settings.safety.max_action_rate == 4.0
    bad = _write(tmp_path, GOOD_CARD + "deploy:\n  safety: {max_speed: 4.0}\n", "bad.yaml")
    with pytest.raises(TaskCardError, match="max_speed"):
        load_card(bad)


def _near_goal(next_obs, infos):
    """A success predicate for the test below: first observation entry above 0.5."""
    return np.asarray(next_obs)[:, 0] > 0.5


def test_success_signal_on_a_vector_info():
    """evaluate_vector reads a batched info key directly and agrees with the per-row evaluate."""
    info = {"dist": np.array([0.01, 0.2, 0.04]), "_dist": np.ones(3, bool), "ok": np.array([1, 0, 1]),
            "_ok": np.ones(3, bool)}
    rows = [{"dist": 0.01, "ok": 1}, {"dist": 0.2, "ok": 0}, {"dist": 0.04, "ok": 1}]
    obs = np.array([[0.9], [0.1], [0.6]])
    for sig in (SuccessSignal(info_key="ok"), SuccessSignal(info_key="dist", threshold=0.05, below=True),
                SuccessSignal(predicate=f"{__name__}:_near_goal")):
        got = sig.evaluate_vector(obs, info, 3)
        np.testing.assert_array_equal(got, sig.evaluate(obs, rows))
    np.testing.assert_array_equal(SuccessSignal(info_key="ok").evaluate_vector(obs, info, 3), [True, False, True])
    # a key some rows lack goes through the per-row path, which says which key is missing
    partial = {"ok": np.array([1, 0, 1]), "_ok": np.array([True, False, True])}
    with pytest.raises(ConfigError, match="'ok' is missing"):
        SuccessSignal(info_key="ok").evaluate_vector(obs, partial, 3)

"""ManiSkillBatchEnv: ManiSkill's batched simulation as a numpy Gymnasium VectorEnv.

The conversion and the SAME_STEP autoreset are tested on a small torch env that speaks
ManiSkill's batched dialect (tensors with a leading num_envs dimension, partial resets
through ``options={"env_idx": ...}``), with several sub-envs ending on different steps:
ManiSkill itself batches several envs only on a CUDA GPU. The tests at the end build the
real ManiSkill PickCube card (one env, CPU simulation) when ManiSkill and a suitable
Vulkan driver are installed; CI installs neither, and they skip saying so.
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch

from robo_reward.core import RewardOutput, RewardPlugin
from robo_reward.core.errors import ConfigError
from robo_reward.envs.make import SUCCESS_INFO_KEY, make_vec_env
from robo_reward.envs.maniskill_backend import ManiSkillBatchEnv, resolve_sim_backend, vector_info
from robo_reward.wrappers import VectorRewardWrapper

N = 3


class FakeBatchedEnv(gym.Env):
    """ManiSkill-style batched env: row i's episode is truncated after ``2 + i`` steps.

    Observation of row i: ``[t, i, sum of last action, episode count]``; reward ``t``;
    ``info["success"]`` when ``t >= 2``; frames filled with ``10 * t + i``.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int = N, render_mode: str | None = None):
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.render_mode = render_mode
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.single_action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.t = torch.zeros(num_envs, dtype=torch.int64)
        self.episodes = torch.zeros(num_envs)
        self.last = torch.zeros(num_envs)
        self.limits = torch.arange(num_envs) + 2
        self.reset_calls: list[list[int]] = []

    def _obs(self):
        rows = torch.arange(self.num_envs, dtype=torch.float32)
        return torch.stack([self.t.float(), rows, self.last, self.episodes], dim=1)

    def _info(self):
        return {"success": self.t >= 2, "elapsed_steps": self.t.clone(), "reconfigure": False}

    def reset(self, *, seed=None, options=None):
        idx = torch.arange(self.num_envs) if not options or "env_idx" not in options else options["env_idx"]
        self.reset_calls.append([int(i) for i in idx])
        self.t[idx] = 0
        self.last[idx] = 0
        self.episodes[idx] += 1
        return self._obs(), self._info()

    def step(self, action):
        assert isinstance(action, torch.Tensor) and action.shape == (self.num_envs, 2)
        self.t += 1
        self.last = action.sum(dim=1).float()
        truncated = self.t >= self.limits
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        return self._obs(), self.t.float(), terminated, truncated, self._info()

    def render(self):
        val = (10 * self.t[:, None, None, None] + torch.arange(self.num_envs)[:, None, None, None]).to(torch.uint8)
        return val.expand(self.num_envs, 4, 4, 3).clone()


class NextObsReward(RewardPlugin):
    """Reward = first coordinate (the step counter) of the next observation."""

    requires = frozenset({"next_obs"})

    def compute(self, batch):
        return RewardOutput(np.asarray(batch.next_obs[:, 0], dtype=np.float32))


class FrameReward(RewardPlugin):
    """Reward = the value the frame is filled with."""

    requires = frozenset({"frames"})

    def compute(self, batch):
        return RewardOutput(batch.frames[:, 0, 0, 0].astype(np.float32))


def test_resolve_sim_backend():
    assert resolve_sim_backend("auto", 1, cuda_available=False) == "physx_cpu"
    assert resolve_sim_backend("auto", 64, cuda_available=True) == "physx_cuda"
    assert resolve_sim_backend("gpu", 8, cuda_available=False) == "physx_cuda"
    assert resolve_sim_backend("cpu", 1) == "physx_cpu"
    with pytest.raises(ConfigError, match="only on a CUDA GPU"):
        resolve_sim_backend("auto", 4, cuda_available=False)
    with pytest.raises(ConfigError, match="sim_backend must be one of"):
        resolve_sim_backend("warp", 1)
    with pytest.raises(ConfigError, match="at least 1"):
        resolve_sim_backend("cpu", 0)


def test_vector_info_keeps_rows_and_repeats_scalars():
    info = vector_info({"a": torch.tensor([1.0, 2.0]), "flag": True, "nested": {"b": torch.tensor([3, 4])}}, 2)
    np.testing.assert_array_equal(info["a"], [1.0, 2.0])
    np.testing.assert_array_equal(info["flag"], [True, True])
    np.testing.assert_array_equal(info["nested"]["b"], [3, 4])
    assert info["_a"].all() and info["_flag"].all() and info["_nested"].all()


def test_same_step_autoreset_keeps_the_real_last_observation():
    fake = FakeBatchedEnv()
    env = ManiSkillBatchEnv(fake, task="maniskill-pick-cube-v1")  # success: info["success"]
    assert env.metadata["autoreset_mode"] is gym.vector.AutoresetMode.SAME_STEP
    assert env.num_envs == N and env.observation_space.shape == (N, 4) and env.action_space.shape == (N, 2)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros((N, 2), np.float32))
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == (N, 4)
    actions = np.full((N, 2), 0.25, np.float32)
    obs, r, te, tr, info = env.step(actions)  # t = 1 everywhere: nothing ends
    assert "final_obs" not in info and not tr.any()
    np.testing.assert_array_equal(r, [1, 1, 1])
    obs, r, te, tr, info = env.step(actions)  # t = 2: row 0 is truncated and reset
    np.testing.assert_array_equal(tr, [True, False, False])
    np.testing.assert_array_equal(info["_final_obs"], [True, False, False])
    np.testing.assert_array_equal(info["final_obs"][0], [2, 0, 0.5, 1])  # the last state, episode 1
    np.testing.assert_array_equal(obs[0], [0, 0, 0, 2])  # the reset state, episode 2
    np.testing.assert_array_equal(obs[1], [2, 1, 0.5, 1])  # untouched
    assert fake.reset_calls[-1] == [0]
    assert info["final_info"]["success"][0] and not info["success"][0]
    np.testing.assert_array_equal(info["final_info"][SUCCESS_INFO_KEY], [True, True, True])
    np.testing.assert_array_equal(info[SUCCESS_INFO_KEY], [False, True, True])
    assert isinstance(r, np.ndarray) and r.dtype == np.float32


def test_reward_wrapper_scores_the_final_observation():
    env = VectorRewardWrapper(ManiSkillBatchEnv(FakeBatchedEnv()), NextObsReward())
    env.reset(seed=0)
    rewards, ends = [], []
    for _ in range(6):
        obs, r, te, tr, info = env.step(np.zeros((N, 2), np.float32))
        rewards.append(r.copy())
        ends.append(tr.copy())
    rewards, ends = np.array(rewards), np.array(ends)
    # Row i's steps count 1..(2+i) and restart: the reward is the real step count, never the reset's 0.
    expected = np.array([[1, 1, 1], [2, 2, 2], [1, 3, 3], [2, 1, 4], [1, 2, 1], [2, 3, 2]], np.float32)
    np.testing.assert_array_equal(rewards, expected)
    np.testing.assert_array_equal(ends, expected == np.arange(N) + 2)


def test_frames_of_finished_episodes_are_the_last_frames():
    fake = FakeBatchedEnv(render_mode="rgb_array")
    env = VectorRewardWrapper(ManiSkillBatchEnv(fake), FrameReward())
    env.reset(seed=0)
    env.step(np.zeros((N, 2), np.float32))
    _, r, _, tr, info = env.step(np.zeros((N, 2), np.float32))
    # row 0 ended at t = 2: its frame is 10*2 + 0, not the reset frame 0; rows 1, 2 are at t = 2
    np.testing.assert_array_equal(r, [20, 21, 22])
    assert info["final_info"]["final_frame"].shape == (N, 4, 4, 3)


def test_make_vec_env_simulator_errors():
    with pytest.raises(ConfigError, match="batches envs itself"):
        make_vec_env("metaworld-reach-v3", 2, vectorization="simulator")
    with pytest.raises(ConfigError, match="MJX"):
        make_vec_env("mujoco-reacher-v5", 2, vectorization="simulator")
    with pytest.raises(ConfigError, match="SAME_STEP mode only"):
        make_vec_env("maniskill-pick-cube-v1", 1, vectorization="simulator", autoreset_mode="next_step")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="only on a CUDA GPU"):
            make_vec_env("maniskill-pick-cube-v1", 4, vectorization="simulator")
    with pytest.raises(ConfigError, match="runs 'maniskill' task cards"):
        ManiSkillBatchEnv("mujoco-reacher-v5", 1)


HAVE_MANISKILL = importlib.util.find_spec("mani_skill") is not None


@pytest.fixture(scope="module")
def maniskill_ready():
    """Skip unless ManiSkill and a Vulkan driver it can use are present."""
    if not HAVE_MANISKILL:
        pytest.skip("mani_skill is not installed: pip install 'robo-reward[maniskill]' (CI does not install it: heavy)")
    from robo_reward.envs.make import maniskill_render_problem

    problem = maniskill_render_problem()
    if problem is not None:
        pytest.skip(problem)


def test_real_maniskill_one_env_matches_the_cpu_card(maniskill_ready):
    from robo_reward.envs.make import make_env

    single = make_env("maniskill-pick-cube-v1", max_episode_steps=4)
    batch = make_vec_env("maniskill-pick-cube-v1", 1, vectorization="simulator", seed=5, reward="env")
    try:
        o1, _ = single.reset(seed=5)
        ob, _ = batch.reset(seed=5)
        np.testing.assert_allclose(ob[0], o1, atol=1e-5)
        rng = np.random.default_rng(0)
        for _ in range(4):
            a = rng.uniform(-1, 1, 4).astype(np.float32)
            o1, r1, _, _, i1 = single.step(a)
            ob, rb, _, tb, ib = batch.step(a[None])
            np.testing.assert_allclose(ob[0], o1, atol=1e-4)
            np.testing.assert_allclose(rb[0], r1, atol=1e-5)
            assert ib[SUCCESS_INFO_KEY][0] == i1[SUCCESS_INFO_KEY]
        # the single env's time limit is 4; the card's (50) runs on in the batch env
        assert not tb[0]
    finally:
        single.close()
        batch.close()


def test_real_maniskill_truncation_resets_in_the_same_step(maniskill_ready):
    env = ManiSkillBatchEnv("maniskill-pick-cube-v1", 1, max_episode_steps=3, seed=1)
    try:
        env.reset()
        for _ in range(3):
            obs, _, _, tr, info = env.step(np.zeros((1, 4), np.float32))
        assert tr[0] and info["_final_obs"][0]
        assert not np.allclose(info["final_obs"][0], obs[0])
        obs2, _, _, tr2, _ = env.step(np.zeros((1, 4), np.float32))
        assert not tr2[0]
    finally:
        env.close()


def test_real_maniskill_trains_ppo_native_on_the_batch(maniskill_ready, tmp_path):
    """`--vectorization simulator` on a ManiSkill card: PPO trains on ManiSkillBatchEnv, evaluates on the CPU card."""
    pytest.importorskip("tensorboard", reason="the run folder's TensorBoard events need tensorboard (the sb3 extra)")
    from robo_reward.train.config import make_run_config
    from robo_reward.train.runner import Runner

    cfg = make_run_config({
        "task": "maniskill-pick-cube-v1", "agent": "ppo-native", "vectorization": "simulator", "n_envs": 1,
        "steps": 64, "agent_overrides": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
        "eval_episodes": 1, "checkpoint_freq": 0, "log_freq": 32, "video": False, "out": str(tmp_path / "run"),
        "device": "cpu",
    })
    runner = Runner(cfg, progress=False).setup()
    assert isinstance(runner.venv.env, ManiSkillBatchEnv)
    summary = runner.run()
    assert summary["timesteps"] >= 64 and (tmp_path / "run" / "final_model.pt").is_file()


class FakeDictObsEnv(FakeBatchedEnv):
    """The same env with dict observations (as ManiSkill's ``state_dict`` and image modes give)."""

    def __init__(self, num_envs: int = N):
        super().__init__(num_envs)
        self.single_observation_space = gym.spaces.Dict({
            "state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "extra": gym.spaces.Dict({"t2": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)}),
        })

    def _obs(self):
        flat = super()._obs()
        return {"state": flat, "extra": {"t2": 2 * flat[:, :1]}}


class DictNextObsReward(RewardPlugin):
    """Reward = the step counter read from a dict observation."""

    requires = frozenset({"next_obs"})

    def compute(self, batch):
        return RewardOutput((batch.next_obs["extra"]["t2"][:, 0] / 2).astype(np.float32))


def test_dict_observations_keep_their_final_rows():
    env = ManiSkillBatchEnv(FakeDictObsEnv())
    assert isinstance(env.observation_space, gym.spaces.Dict)
    venv = VectorRewardWrapper(env, DictNextObsReward())
    venv.reset(seed=0)
    rewards = []
    for _ in range(4):
        obs, r, _, tr, info = venv.step(np.zeros((N, 2), np.float32))
        rewards.append(r.copy())
        assert set(obs) == {"state", "extra"} and obs["state"].shape == (N, 4)
    # row 0 ends at t = 2 and row 1 at t = 3: their rewards are 2 and 3, not the reset's 0
    np.testing.assert_array_equal(np.array(rewards), [[1, 1, 1], [2, 2, 2], [1, 3, 3], [2, 1, 4]])
    assert obs["state"][1, 0] == 1  # the returned observation is the new episode's


def test_real_maniskill_frames_reach_a_frame_reward(maniskill_ready):
    """Rendering: one uint8 [n, H, W, 3] batch at the card's size, and the last frame of a finished episode."""
    env = ManiSkillBatchEnv("maniskill-pick-cube-v1", 1, max_episode_steps=2, seed=0, render_mode="rgb_array",
                            env_kwargs={"human_render_camera_configs": {"width": 64, "height": 48}})
    try:
        venv = VectorRewardWrapper(env, FrameReward())
        venv.reset(seed=0)
        frames = env.render()
        assert frames.shape == (1, 48, 64, 3) and frames.dtype == np.uint8 and frames.std() > 0
        _, r, _, tr, info = venv.step(np.zeros((1, 4), np.float32))
        _, r, _, tr, info = venv.step(np.zeros((1, 4), np.float32))
        assert tr[0] and info["final_info"]["final_frame"].shape == (1, 48, 64, 3)
        assert r[0] == info["final_info"]["final_frame"][0, 0, 0, 0]  # the reward saw the last frame
    finally:
        env.close()

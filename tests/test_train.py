"""Agent presets, run configs, the SB3 runner (run folder, resume), evaluation and the train/eval CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")

pytest.importorskip("stable_baselines3")
pytest.importorskip("mujoco")
typer = pytest.importorskip("typer")
from typer.testing import CliRunner  # noqa: E402

from robo_reward.agents import load_preset, make_model, read_preset  # noqa: E402
from robo_reward.core.errors import ConfigError  # noqa: E402
from robo_reward.core.types import TransitionBatch  # noqa: E402
from robo_reward.rewards import examples  # noqa: E402
from robo_reward.train.config import load_run_config, make_run_config  # noqa: E402
from robo_reward.train.evaluate import evaluate, summarize_episodes, t_interval, wilson_interval  # noqa: E402
from robo_reward.train.runner import Runner, latest_checkpoint, list_checkpoints  # noqa: E402
from tests.cli_runs import read_jsonl as _read_jsonl  # noqa: E402
from tests.cli_runs import train_app as _app  # noqa: E402

TASK = "mujoco-inverted-pendulum-v5"
UPRIGHT = "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright"
TINY_PPO = {"n_steps": 256, "batch_size": 64, "n_epochs": 2}


# ----------------------------------------------------------------------------- config


def test_config_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        make_run_config({"task": TASK, "stpes": 10})
    msg = str(err.value)
    assert "stpes" in msg and "steps" in msg and "agent" in msg


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="ppo"):
        make_run_config({"task": TASK, "agent": "dqn"})
    with pytest.raises(ConfigError, match="steps"):
        make_run_config({"task": TASK, "steps": 0})
    with pytest.raises(ConfigError, match="unknown reward 'no-such-reward'"):
        make_run_config({"task": TASK, "reward": "no-such-reward:x=1"})
    with pytest.raises(ConfigError, match="alpha"):
        make_run_config({"task": TASK, "mode": "replace", "alpha": 0.3})
    with pytest.raises(ConfigError, match="task"):
        make_run_config({"steps": 10})
    with pytest.raises(ConfigError, match="built-in online agents"):
        make_run_config({"task": TASK, "agent": "ppo", "vectorization": "simulator"})
    with pytest.raises(ConfigError, match="more than 256 sub-envs need vectorization 'simulator'"):
        make_run_config({"task": TASK, "agent": "ppo-native", "n_envs": 1024})
    with pytest.raises(ConfigError, match="vectorization"):
        make_run_config({"task": TASK, "agent": "ppo-native", "vectorization": "gpu"})
    cfg = make_run_config({"task": TASK, "agent": "ppo-native", "n_envs": 4096, "vectorization": "simulator"})
    assert cfg.n_envs == 4096 and cfg.vectorization == "simulator"


def test_config_yaml_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {"task": TASK, "reward": UPRIGHT, "steps": 5000, "seed": 3, "overrides": {"n_steps": 128, "gamma": 0.9}}
        )
    )
    cfg = load_run_config(path, steps=777, seed=None, agent_overrides={"gamma": 0.95})
    assert cfg.steps == 777  # flag wins
    assert cfg.seed == 3  # flag not given: YAML value stays
    assert cfg.agent_overrides == {"n_steps": 128, "gamma": 0.95}  # merged key by key
    assert cfg.reward_spec == UPRIGHT
    assert make_run_config({"task": TASK, "reward": "env"}).uses_env_reward
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(path)


# ----------------------------------------------------------------------------- presets


def test_shipped_presets_validate_and_merge():
    for agent in ("ppo", "sac", "td3"):
        data = read_preset(agent)
        assert {"default", "mujoco", "metaworld"} <= set(data)
    base = load_preset("ppo")
    mj = load_preset("ppo", "mujoco")
    assert base["n_steps"] == 2048 and mj["n_steps"] == 1024
    assert load_preset("ppo", "no-such-family") == base  # unknown family: the defaults
    merged = load_preset("ppo", "mujoco", {"policy_kwargs": {"log_std_init": 0.0}, "n_epochs": 3})
    assert merged["n_epochs"] == 3
    assert merged["policy_kwargs"]["log_std_init"] == 0.0
    assert merged["policy_kwargs"]["net_arch"] == mj["policy_kwargs"]["net_arch"]  # kept, not replaced


def test_preset_errors_list_valid_names():
    with pytest.raises(ConfigError) as err:
        load_preset("dqn")
    assert "ppo" in str(err.value) and "sac" in str(err.value) and "td3" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_preset("sac", overrides={"n_epochs": 10})
    assert "n_epochs" in str(err.value) and "buffer_size" in str(err.value)
    with pytest.raises(ConfigError, match="net_arch"):
        load_preset("ppo", overrides={"policy_kwargs": {"netarch": [8]}})
    with pytest.raises(ConfigError, match="tanh"):
        load_preset("ppo", overrides={"policy_kwargs": {"activation_fn": "sigmoidish"}})
    with pytest.raises(ConfigError, match="lin_"):
        load_preset("ppo", overrides={"learning_rate": "fast"})


def test_make_model_converts_yaml_spellings():
    import gymnasium as gym
    import torch.nn as nn
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: gym.make("Pendulum-v1")])  # actions in [-2, 2]
    model = make_model("td3", venv, task_family="mujoco", overrides={"learning_starts": 10, "buffer_size": 100}, seed=1)
    assert np.allclose(model.action_noise._sigma, 0.1 * 2.0)  # sigma scaled by the half-range
    ppo = make_model("ppo", venv, task_family="mujoco", overrides={"learning_rate": "lin_1e-3"}, seed=1)
    assert ppo.policy.activation_fn is nn.Tanh
    assert ppo.lr_schedule(1.0) == pytest.approx(1e-3) and ppo.lr_schedule(0.5) == pytest.approx(5e-4)
    venv.close()


# ----------------------------------------------------------------------------- statistics


def test_wilson_interval_hand_value():
    # 8 of 10, z = 1.959964: centre 0.716744, half-width 0.226579 (worked by hand)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490160, abs=1e-5)
    assert hi == pytest.approx(0.943327, abs=1e-5)
    lo0, hi0 = wilson_interval(0, 10)
    assert lo0 == 0.0 and hi0 == pytest.approx(0.277533, abs=1e-5)
    with pytest.raises(ConfigError):
        wilson_interval(3, 0)


def test_t_interval_and_summary():
    # mean 3, s = 1.58114, sem = 0.707107, t(0.975, 4) = 2.776445 → half-width 1.963243
    lo, hi = t_interval([1, 2, 3, 4, 5])
    assert lo == pytest.approx(1.036757, abs=1e-5) and hi == pytest.approx(4.963243, abs=1e-5)
    assert t_interval([2.0]) is None
    s = summarize_episodes([1.0, 3.0], [True, False], [5, 7], final_successes=[False, False])
    assert s["success_rate"] == 0.5 and s["return_mean"] == 2.0 and s["length_mean"] == 6.0
    assert s["final_success_rate"] == 0.0 and s["final_success_ci"][0] == 0.0
    assert s["return_std"] == pytest.approx(math.sqrt(2.0))


# ----------------------------------------------------------------------------- example rewards


def test_example_rewards_from_observation_fields():
    obs = np.array([[0.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.0, 2.0]], dtype=np.float32)
    batch = TransitionBatch(
        terminated=np.zeros(2, bool), truncated=np.zeros(2, bool), env_reward=np.ones(2, np.float32),
        env_ids=np.arange(2), next_obs=obs,
    )
    terms = examples.inverted_pendulum_upright(batch)
    assert terms["upright"][0] == pytest.approx(1.0)
    assert terms["upright"][1] == pytest.approx(math.exp(-1.0), rel=1e-5)
    assert terms["centered"][1] == pytest.approx(-0.05 * 0.25)
    assert terms["still"][1] == pytest.approx(-0.01 * 4.0)
    r_obs = np.zeros((2, 10), dtype=np.float32)
    r_obs[1, 8:10] = [0.3, 0.4]  # 0.5 m from the target
    rb = TransitionBatch(
        terminated=np.zeros(2, bool), truncated=np.zeros(2, bool), env_reward=np.zeros(2, np.float32),
        env_ids=np.arange(2), next_obs=r_obs, action=np.array([[0.0, 0.0], [1.0, 1.0]]),
    )
    rt = examples.reacher_distance(rb)
    assert rt["reach"][0] == pytest.approx(1.0) and rt["bonus"][0] == 1.0
    assert rt["reach"][1] == pytest.approx(1 - math.tanh(5.0)) and rt["bonus"][1] == 0.0
    assert rt["control"][1] == pytest.approx(-0.4)
    with pytest.raises(Exception, match="shape"):
        examples.reacher_distance(batch)


# ----------------------------------------------------------------------------- a tiny run through the CLI


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 1024-step PPO run on the inverted pendulum with the upright reward, through the CLI."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "task": TASK,
                "reward": UPRIGHT,
                "agent": "ppo",
                "steps": 4096,  # the flag below wins
                "agent_overrides": TINY_PPO,
                "checkpoint_freq": 512,
                "log_freq": 256,
                "eval_episodes": 3,
                "video_max_steps": 15,
                "torch_threads": 1,
            }
        )
    )
    result = CliRunner().invoke(
        _app(),
        ["train", "--config", str(cfg), "--steps", "1024", "--seed", "7", "--out", str(run_dir), "--no-progress"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run_dir, result.output


def test_tiny_run_writes_run_folder(tiny_run):
    run_dir, output = tiny_run
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["seed"] == 7 and cfg["steps"] == 1024 and cfg["library_version"]
    assert cfg["resolved"]["hyperparameters"]["n_steps"] == 256  # preset merged with the overrides
    assert cfg["resolved"]["task_family"] == "mujoco"

    lines = _read_jsonl(run_dir / "metrics.jsonl")
    assert len(lines) >= 3 and lines[-1]["timesteps"] == 1024
    last = lines[-1]
    for key in ("learned_return", "env_return", "success_rate", "episodes"):
        assert key in last
    assert last["episodes"] > 0 and last["env_return"] > 0
    # the agent learns from the upright reward, not the env's +1 per step: the returns differ
    assert last["learned_return"] != pytest.approx(last["env_return"])

    ckpts = list_checkpoints(run_dir)
    assert [c.timesteps for c in ckpts] == [512]  # taken at the first rollout start >= 512 steps
    assert json.loads(ckpts[0].json_path.read_text())["timesteps"] == ckpts[0].timesteps
    assert (run_dir / "final_model.zip").is_file()
    events = list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"rollout/learned_return", "rollout/env_return", "rollout/success_rate"} <= tags

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timesteps"] == 1024 and summary["steps_per_s"] > 0 and summary["seed"] == 7
    ev = summary["final_eval"]
    assert ev["episodes"] == 3 and 0.0 <= ev["success_ci"][0] <= ev["success_rate"] <= ev["success_ci"][1] <= 1.0
    assert ev["return_ci"][0] <= ev["return_mean"] <= ev["return_ci"][1]

    assert summary["video_error"] is None, summary["video_error"]
    import imageio.v2 as imageio

    reader = imageio.get_reader(run_dir / "videos" / "eval.mp4")
    frames = [f for f in reader.iter_data()]
    reader.close()
    assert len(frames) == summary["video_frames"] and len(frames) >= 2
    assert frames[0].ndim == 3 and frames[0].shape[2] == 3 and frames[0].std() > 0  # not a blank image

    assert "ground-truth" in output and "success rate" in output


def test_eval_cli_writes_eval_json(tiny_run):
    run_dir, _ = tiny_run
    (run_dir / "eval.json").unlink()
    result = CliRunner().invoke(_app(), ["eval", str(run_dir), "--episodes", "4", "--seed", "5"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    ev = json.loads((run_dir / "eval.json").read_text())
    for key in ("task", "episodes", "seed", "success_rate", "success_ci", "return_mean", "return_std", "return_ci",
                "length_mean", "returns", "successes", "model_path"):
        assert key in ev, key
    assert ev["episodes"] == 4 and ev["seed"] == 5 and len(ev["returns"]) == 4
    assert ev["model_timesteps"] == 1024
    assert ev["return_mean"] == pytest.approx(np.mean(ev["returns"]))
    # deterministic: the same seed gives the same returns
    again = evaluate(run_dir, episodes=4, seed=5)
    assert again["returns"] == ev["returns"]
    with pytest.raises(ConfigError, match="task="):
        evaluate(object(), episodes=1)
    with pytest.raises(ConfigError, match="not a run folder"):
        evaluate(run_dir / "videos", episodes=1)


def test_cli_errors_are_reported_not_raised(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    runner = CliRunner()
    result = runner.invoke(_app(), ["train", "--task", TASK, "--out", str(run_dir), "--steps", "10", "--no-progress"])
    assert result.exit_code == 2 and "--resume" in result.output  # refuses to overwrite a run
    result = runner.invoke(_app(), ["train", "--resume", str(run_dir), "--steps", "10"])
    assert result.exit_code == 2 and "--steps" in result.output
    result = runner.invoke(_app(), ["train", "--task", TASK, "--agent", "dqn", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "td3" in result.output
    result = runner.invoke(_app(), ["train", "--task", TASK, "--agent", "ppo", "--vectorization", "simulator",
                                    "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "built-in online agents" in " ".join(result.output.split())
    result = runner.invoke(_app(), ["train", "--task", TASK, "--agent", "ppo-native", "--vectorization", "simulator",
                                    "--n-envs", "2", "--out", str(tmp_path / "z"), "--no-progress"])
    assert result.exit_code == 2 and "MJX" in " ".join(result.output.split())  # Reacher: no batched simulator


# ----------------------------------------------------------------------------- resume


class SimulatedKill(RuntimeError):
    """Raised from a callback to stop training the way a killed process would (no clean-up)."""


def _killer(at_steps: int):
    from stable_baselines3.common.callbacks import BaseCallback

    class Kill(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= at_steps:
                raise SimulatedKill(f"killed at {self.num_timesteps}")
            return True

    return Kill()


def test_resume_after_kill(tmp_path, monkeypatch):
    import torch
    from stable_baselines3 import PPO

    run_dir = tmp_path / "run"
    cfg = make_run_config(
        {
            "task": TASK, "reward": UPRIGHT, "steps": 2048, "seed": 11, "out": str(run_dir),
            "agent_overrides": TINY_PPO, "checkpoint_freq": 256, "log_freq": 256, "eval_episodes": 2,
            "torch_threads": 1,
        }
    )
    with pytest.raises(SimulatedKill):
        Runner(cfg, progress=False, callbacks=[_killer(1100)]).setup().run()
    assert not (run_dir / "summary.json").exists()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and 512 <= ckpt.timesteps < 1100
    lines_before = _read_jsonl(run_dir / "metrics.jsonl")
    assert lines_before

    # rendering breaks on the resumed run: the run must still finish and say so
    def broken_video(*args, **kwargs):
        raise RuntimeError("no OpenGL here")

    monkeypatch.setattr("robo_reward.train.runner.record_video", broken_video)
    # look at the model right after --resume loaded it, before it trains further
    seen = {}
    real_setup = Runner.setup

    def spy_setup(self):
        out = real_setup(self)
        seen["timesteps"] = self.model.num_timesteps
        seen["params"] = {k: v.detach().cpu().clone() for k, v in self.model.policy.state_dict().items()}
        return out

    monkeypatch.setattr(Runner, "setup", spy_setup)
    result = CliRunner().invoke(_app(), ["train", "--resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert seen["timesteps"] == ckpt.timesteps
    saved = PPO.load(str(ckpt.model), device="cpu").policy.state_dict()
    assert saved.keys() == seen["params"].keys()
    for k in saved:
        assert torch.equal(saved[k].cpu(), seen["params"][k]), k
    summary = json.loads((run_dir / "summary.json").read_text())

    assert summary["timesteps"] == 2048 and summary["segments"] == 2
    assert summary["video"] is None and "no OpenGL here" in summary["video_error"]
    lines_after = _read_jsonl(run_dir / "metrics.jsonl")
    assert lines_after[: len(lines_before)] == lines_before  # appended, not overwritten
    resumed = [line for line in lines_after if line["segment"] == 1]
    assert resumed and resumed[0]["timesteps"] > ckpt.timesteps  # the counter continued
    assert resumed[-1]["timesteps"] == 2048
    segments = json.loads((run_dir / "segments.json").read_text())
    assert [s["start_timesteps"] for s in segments] == [0, ckpt.timesteps]
    # a finished run is not trained again
    monkeypatch.setattr(Runner, "setup", real_setup)
    again = CliRunner().invoke(_app(), ["train", "--resume", str(run_dir), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert len(_read_jsonl(run_dir / "metrics.jsonl")) == len(lines_after)


def test_off_policy_checkpoint_keeps_replay_buffer(tmp_path):
    run_dir = tmp_path / "sac"
    cfg = make_run_config(
        {
            "task": TASK, "reward": UPRIGHT, "agent": "sac", "steps": 300, "seed": 2, "out": str(run_dir),
            "agent_overrides": {"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [32, 32]}},
            "checkpoint_freq": 150, "eval_episodes": 1, "eval_freq": 150, "video": False, "torch_threads": 1,
        }
    )
    summary = Runner(cfg, progress=False).setup().run()
    assert summary["timesteps"] == 300
    ckpt = list_checkpoints(run_dir)[0]
    assert ckpt.replay_buffer is not None and ckpt.replay_buffer.is_file()
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())["resolved"]["hyperparameters"]
    assert resolved["buffer_size"] == 300  # capped at the run's steps
    evals = _read_jsonl(run_dir / "evals.jsonl")
    assert [e["timesteps"] for e in evals] == [150] and evals[0]["episodes"] == 1


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """A real kill -9 of the CLI process mid-run, then --resume to the same step target."""
    from tests.cli_runs import kill_then_resume

    res = kill_then_resume(tmp_path, [
        "--task", TASK, "--reward", UPRIGHT, "--steps", "12000", "--hp", "n_steps=256", "--hp", "n_epochs=2",
        "--checkpoint-freq", "512", "--eval-episodes", "2", "--no-video",
    ], min_checkpoint_steps=1536)
    assert res["summary"]["timesteps"] >= 12000 and res["summary"]["segments"] == 2
    assert len(res["lines"]) > res["lines_before"]
    assert min(line["timesteps"] for line in res["lines"] if line["segment"] == 1) > res["checkpoint"].timesteps

"""`robo-reward train/eval` with the built-in agents: ppo-native, ppo-multicritic (SLIM) and barfi.

Each writes the same run folder as the SB3 path (config.yaml, metrics.jsonl with the same
fields, TensorBoard, checkpoints with a JSON marker written last, final model, eval.json,
summary.json, video); a killed native run resumes from its checkpoint with identical
parameters; `robo-reward eval` loads the built-in models.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")

pytest.importorskip("mujoco")
typer = pytest.importorskip("typer")
from typer.testing import CliRunner  # noqa: E402

from robo_reward.agents import BUILTIN_AGENTS, TRAIN_AGENTS  # noqa: E402
from robo_reward.agents.barfi import BARFI  # noqa: E402
from robo_reward.agents.ppo import PPO  # noqa: E402
from robo_reward.core.errors import ConfigError  # noqa: E402
from robo_reward.train.config import make_run_config  # noqa: E402
from robo_reward.train.evaluate import evaluate, load_run_model  # noqa: E402
from robo_reward.train.native import native_preset  # noqa: E402
from robo_reward.train.runner import Runner, latest_checkpoint, list_checkpoints  # noqa: E402
from tests.cli_runs import read_jsonl as _read_jsonl  # noqa: E402
from tests.cli_runs import train_app as _app  # noqa: E402

TASK = "mujoco-inverted-pendulum-v5"
UPRIGHT = "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright"  # terms: upright, centered, still
TINY = {
    "ppo-native": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "ppo-multicritic": {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "critic_terms": ["upright", "centered"],
                        "term_weights": {"upright": 1.0, "centered": 0.25}},
    "barfi": {"n_steps": 32, "neumann_iterations": 2},
}
#: the fields of every metrics.jsonl line of the SB3 path (EpisodeMetricsCallback.write_line)
SB3_METRIC_FIELDS = {"timesteps", "segment", "time_s", "steps_per_s", "episodes", "learned_return", "env_return",
                     "success_rate", "ep_length", "window_episodes"}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- config and presets


def test_config_knows_the_builtin_agents():
    assert set(BUILTIN_AGENTS) <= set(TRAIN_AGENTS) and "ppo" in TRAIN_AGENTS
    for agent in BUILTIN_AGENTS:
        assert make_run_config({"task": TASK, "agent": agent.upper()}).agent == agent
    assert make_run_config({"task": TASK}).agent == "ppo"  # ppo stays Stable-Baselines3's
    with pytest.raises(ConfigError) as err:
        make_run_config({"task": TASK, "agent": "ppo-nativ"})
    assert "ppo-multicritic" in str(err.value) and "barfi" in str(err.value)


def test_native_presets_merge_family_overrides_and_threads():
    hp = native_preset("ppo-native", "mujoco", {"n_steps": 128}, torch_threads=2)
    assert hp["n_steps"] == 128 and hp["norm_obs"] is True and hp["torch_threads"] == 2
    assert "multi_critic" not in hp or hp["multi_critic"] is False
    mc = native_preset("ppo-multicritic", "mujoco", {"term_weights": {"upright": 2.0}})
    assert mc["multi_critic"] is True and mc["term_weights"] == {"upright": 2.0}
    assert "torch_threads" not in mc  # not set: the PPO default (1 on the CPU) applies
    b = native_preset("barfi", "mujoco", {"reward_lr": 0.05})
    assert b["reward_lr"] == 0.05 and b["n_steps"] == 256 and b["primary"] == "env_reward"
    assert native_preset("barfi", "no-such-family", None)["n_steps"] == 128  # defaults
    with pytest.raises(ConfigError, match="neumann_iterations"):
        native_preset("barfi", None, {"neumann_iteration": 3})  # a typo lists the valid keys
    with pytest.raises(ConfigError, match="only applies with multi_critic"):
        native_preset("ppo-native", None, {"term_weights": {"upright": 1.0}})
    with pytest.raises(ConfigError, match="built-in"):
        native_preset("sac", None, None)


# ----------------------------------------------------------------------------- tiny runs through the CLI


@pytest.fixture(scope="module", params=BUILTIN_AGENTS)
def tiny_native_run(request, tmp_path_factory):
    """A 1024-step run of one built-in agent on the inverted pendulum with the upright reward, through the CLI."""
    agent = request.param
    run_dir = tmp_path_factory.mktemp("runs") / agent
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "task": TASK, "reward": UPRIGHT, "agent": agent, "steps": 1024, "n_envs": 2,
        "agent_overrides": TINY[agent], "checkpoint_freq": 256, "log_freq": 256, "eval_episodes": 3,
        "video_max_steps": 10, "torch_threads": 1,
    }))
    result = CliRunner().invoke(
        _app(), ["train", "--config", str(cfg), "--seed", "3", "--out", str(run_dir), "--no-progress"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return agent, run_dir, result.output


def test_native_run_writes_the_same_run_folder(tiny_native_run):
    agent, run_dir, output = tiny_native_run
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["agent"] == agent and cfg["seed"] == 3 and cfg["n_envs"] == 2
    hp = cfg["resolved"]["hyperparameters"]
    assert hp["n_steps"] == TINY[agent]["n_steps"]
    if agent != "barfi":
        assert hp["torch_threads"] == 1  # the run's torch_threads reaches the agent

    lines = _read_jsonl(run_dir / "metrics.jsonl")
    assert len(lines) >= 3 and lines[-1]["timesteps"] == 1024
    assert all(SB3_METRIC_FIELDS <= set(line) for line in lines)  # bench aggregates both paths alike
    last = lines[-1]
    assert last["episodes"] > 0 and last["window_episodes"] > 0 and last["env_return"] > 0
    assert last["learned_return"] != pytest.approx(last["env_return"])  # upright reward, not the env's +1
    assert 0.0 <= last["success_rate"] <= 1.0
    assert [line["timesteps"] for line in lines] == sorted(line["timesteps"] for line in lines)

    ckpts = list_checkpoints(run_dir)
    assert [c.timesteps for c in ckpts] == [256, 512, 768]  # the final step is the final model
    for c in ckpts:
        assert c.model.suffix == ".pt" and c.replay_buffer is None
        meta = json.loads(c.json_path.read_text())
        assert meta["timesteps"] == c.timesteps and meta["model"] == c.model.name and meta["episodes"] > 0
    assert (run_dir / "final_model.pt").is_file() and not (run_dir / "final_model.zip").exists()
    assert json.loads((run_dir / "final_model.json").read_text())["timesteps"] == 1024

    events = list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"rollout/learned_return", "rollout/env_return", "rollout/success_rate", "time/fps"} <= tags
    if agent == "barfi":
        assert {"train/gamma_phi", "train/phi_1", "train/hypergradient_norm"} <= tags
    else:
        assert {"train/policy_loss", "train/value_loss", "train/approx_kl"} <= tags
    if agent == "ppo-multicritic":
        assert {"train/value_loss_terms/upright", "train/value_loss_terms/centered"} <= tags

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["agent"] == agent and summary["timesteps"] == 1024 and summary["steps_per_s"] > 0
    assert summary["device"] == "cpu" or summary["device"].startswith("cuda")
    ev = summary["final_eval"]
    assert ev["episodes"] == 3 and ev["return_ci"][0] <= ev["return_mean"] <= ev["return_ci"][1]
    eval_json = json.loads((run_dir / "eval.json").read_text())
    assert eval_json["model_path"].endswith("final_model.pt") and eval_json["model_timesteps"] == 1024
    assert summary["video_error"] is None, summary["video_error"]
    assert (run_dir / "videos" / "eval.mp4").stat().st_size > 0 and summary["video_frames"] >= 2
    assert "ground-truth" in output and "success rate" in output


def test_native_run_models_and_agent_facts(tiny_native_run):
    agent, run_dir, _ = tiny_native_run
    model, cfg, info = load_run_model(run_dir)
    assert info["model_path"].endswith("final_model.pt") and info["model_timesteps"] == 1024
    summary = json.loads((run_dir / "summary.json").read_text())
    if agent == "barfi":
        assert isinstance(model, BARFI) and model.aux_terms == ["upright", "centered", "still"]
        facts = summary["agent_stats"]
        assert 0.0 < facts["gamma_phi"] < 1.0 and len(facts["phi_mean"]) == 2 + 3  # phi1, phi2, one per aux term
        assert facts["phi_mean"] != pytest.approx([0.0, 1.0, 1.0, 1.0, 1.0])  # the outer step moved phi
        assert "gamma_phi" in _read_jsonl(run_dir / "metrics.jsonl")[-1]
    else:
        assert isinstance(model, PPO) and model.num_timesteps == 1024
        assert "agent_stats" not in summary
    if agent == "ppo-multicritic":  # critics and weights from the run config's agent_overrides
        assert model.term_names == ["upright", "centered"] and model.term_weights == [1.0, 0.25]
    if agent == "ppo-native":
        assert model.term_names == ["reward"]
    obs = np.zeros((5, 4), dtype=np.float32)
    act, _ = model.predict(obs, deterministic=True)
    assert act.shape == (5, 1)


def test_eval_cli_on_a_native_run(tiny_native_run):
    agent, run_dir, _ = tiny_native_run
    result = CliRunner().invoke(_app(), ["eval", str(run_dir), "--episodes", "3", "--seed", "4",
                                         "--output", str(run_dir / "eval_cli.json")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    ev = json.loads((run_dir / "eval_cli.json").read_text())
    assert ev["episodes"] == 3 and ev["seed"] == 4 and ev["model_timesteps"] == 1024
    assert ev["return_mean"] == pytest.approx(np.mean(ev["returns"]))
    assert evaluate(run_dir, episodes=3, seed=4)["returns"] == ev["returns"]  # deterministic


def test_a_checkpoint_from_another_device_type_loads_on_the_cpu(tiny_native_run, tmp_path):
    """A GPU-trained run is evaluated on the CPU (``robo-reward eval``'s default): the sampling generator's
    state of another device type cannot be restored, so it is reseeded; everything else loads."""
    agent, run_dir, _ = tiny_native_run
    state = torch.load(run_dir / "final_model.pt", map_location="cpu", weights_only=True)
    cuda_like = torch.zeros(16, dtype=torch.uint8)  # a CUDA (Philox) generator state is 16 bytes
    if agent == "barfi":
        state["rng"], state["rng_device"] = cuda_like, "cuda"
    else:
        state["rng"]["sample"], state["rng"]["sample_device"] = cuda_like, "cuda"
    path = tmp_path / "from_gpu.pt"
    torch.save(state, path)
    cls = BARFI if agent == "barfi" else PPO
    loaded, original = cls.load(path, device="cpu"), cls.load(run_dir / "final_model.pt", device="cpu")
    obs = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs)[0], original.predict(obs)[0])
    if agent != "barfi":  # an old checkpoint without the device tag takes the same path
        del state["rng"]["sample_device"]
        torch.save(state, path)
        assert PPO.load(path, device="cpu").num_timesteps == 1024


# ----------------------------------------------------------------------------- resume


class SimulatedKill(RuntimeError):
    """Raised from a metrics hook to stop training the way a killed process would (no clean-up)."""


def _killer(at_steps: int, exc: type[BaseException] = SimulatedKill):
    def hook(metrics: dict) -> bool:
        if metrics["timesteps"] >= at_steps:
            raise exc(f"killed at {metrics['timesteps']}")
        return True

    return hook


def _cfg(run_dir: Path, agent: str = "ppo-native", **extra) -> object:
    return make_run_config({
        "task": TASK, "reward": UPRIGHT, "agent": agent, "steps": 1024, "seed": 5, "n_envs": 2,
        "out": str(run_dir), "agent_overrides": TINY[agent], "checkpoint_freq": 256, "log_freq": 128,
        "eval_episodes": 1, "video": False, "torch_threads": 1, **extra,
    })


def test_native_ppo_resume_after_kill_loads_identical_parameters(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with pytest.raises(SimulatedKill):
        Runner(_cfg(run_dir), progress=False, callbacks=[_killer(640)]).setup().run()
    assert not (run_dir / "summary.json").exists()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.timesteps == 512 and ckpt.model.suffix == ".pt"
    lines_before = _read_jsonl(run_dir / "metrics.jsonl")

    seen = {}
    real_setup = Runner.setup

    def spy_setup(self):
        out = real_setup(self)
        seen["timesteps"] = self.model.num_timesteps
        seen["params"] = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
        seen["obs_mean"] = self.model.obs_rms.mean.copy()
        seen["ret_var"] = self.model.ret_rms.var.copy()
        return out

    monkeypatch.setattr(Runner, "setup", spy_setup)
    result = CliRunner().invoke(_app(), ["train", "--resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert seen["timesteps"] == ckpt.timesteps
    saved = PPO.load(ckpt.model, device="cpu")
    ref = saved.policy.state_dict()
    assert ref.keys() == seen["params"].keys()
    for k in ref:
        assert torch.equal(ref[k], seen["params"][k]), k
    np.testing.assert_array_equal(saved.obs_rms.mean, seen["obs_mean"])  # normaliser statistics too
    np.testing.assert_array_equal(saved.ret_rms.var, seen["ret_var"])

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timesteps"] == 1024 and summary["segments"] == 2
    lines_after = _read_jsonl(run_dir / "metrics.jsonl")
    assert lines_after[: len(lines_before)] == lines_before  # appended, not overwritten
    resumed = [line for line in lines_after if line["segment"] == 1]
    assert resumed and resumed[0]["timesteps"] > ckpt.timesteps and resumed[-1]["timesteps"] == 1024
    assert resumed[0]["episodes"] > ckpt.episodes  # the episode counter continued
    segments = json.loads((run_dir / "segments.json").read_text())
    assert [s["start_timesteps"] for s in segments] == [0, 512]
    assert segments[1]["resumed_from"] == ckpt.json_path.name and segments[1]["env_seed"] == 5 + 512
    final = PPO.load(run_dir / "final_model.pt", device="cpu")
    assert final.num_timesteps == 1024 and final.n_updates == 1024 // (64 * 2)
    # a finished run is not trained again
    monkeypatch.setattr(Runner, "setup", real_setup)
    again = CliRunner().invoke(_app(), ["train", "--resume", str(run_dir), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert len(_read_jsonl(run_dir / "metrics.jsonl")) == len(lines_after)


def test_native_ctrl_c_saves_a_checkpoint_and_barfi_resumes(tmp_path):
    run_dir = tmp_path / "barfi"
    with pytest.raises(KeyboardInterrupt):
        Runner(_cfg(run_dir, "barfi", checkpoint_freq=0), progress=False,
               callbacks=[_killer(320, KeyboardInterrupt)], log=lambda m: None).setup().run()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.timesteps == 320  # saved on the interrupt, nothing else (freq 0)
    loaded = BARFI.load(ckpt.model, device="cpu")
    summary = Runner(resume=run_dir, progress=False).setup().run()
    assert summary["timesteps"] == 1024 and summary["segments"] == 2
    final = BARFI.load(run_dir / "final_model.pt", device="cpu")
    assert final.num_timesteps == 1024 and final.n_rollouts == loaded.n_rollouts + (1024 - 320) // 64
    assert final.aux_terms == loaded.aux_terms == ["upright", "centered", "still"]


def test_native_errors(tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    class Noop(BaseCallback):
        def _on_step(self) -> bool:
            return True

    with pytest.raises(ConfigError, match="SB3 callbacks"):
        Runner(_cfg(tmp_path / "a"), progress=False, callbacks=[Noop()]).setup().run()
    runner = CliRunner()
    # a term weight for a term that has no critic
    result = runner.invoke(_app(), ["train", "--task", TASK, "--reward", UPRIGHT, "--agent", "ppo-multicritic",
                                    "--hp", "term_weights={uprite: 2.0}", "--steps", "128",
                                    "--out", str(tmp_path / "b"), "--no-progress"])
    assert result.exit_code == 2 and "uprite" in result.output and "upright" in result.output
    # BARFI needs auxiliary terms to blend: the env's own reward has none
    result = runner.invoke(_app(), ["train", "--task", TASK, "--agent", "barfi", "--steps", "128",
                                    "--out", str(tmp_path / "c"), "--no-progress"])
    assert result.exit_code == 2 and "reward_terms" in result.output.replace("\n", "")


@pytest.mark.slow
def test_native_resume_after_sigkill(tmp_path):
    """A real kill -9 of the CLI process training ppo-native, then --resume to the same step target."""
    from tests.cli_runs import kill_then_resume

    res = kill_then_resume(tmp_path, [
        "--task", TASK, "--reward", UPRIGHT, "--agent", "ppo-native", "--steps", "20000", "--hp", "n_steps=256",
        "--hp", "n_epochs=2", "--checkpoint-freq", "512", "--eval-episodes", "2", "--no-video",
    ], min_checkpoint_steps=2048, poll_s=0.05)
    summary = res["summary"]
    assert summary["timesteps"] >= 20000 and summary["segments"] == 2
    assert len(res["lines"]) > res["lines_before"]
    assert min(line["timesteps"] for line in res["lines"] if line["segment"] == 1) > res["checkpoint"].timesteps
    assert PPO.load(res["run_dir"] / "final_model.pt", device="cpu").num_timesteps == summary["timesteps"]

"""`robo-reward train --agent iql | bc --dataset ...`: offline runs write the same run folder as online ones.

A tiny dataset (random actions on the inverted pendulum, whose action space is [-3, 3],
so the action scaling is exercised) trains for a few hundred gradient steps through the
CLI; the run folder must hold the resolved config with the dataset, metrics with losses
and ground-truth returns, evaluations, checkpoints and a summary, and `robo-reward eval`
must load it. A killed run resumes to exactly the parameters of an uninterrupted one.
BC recovers a linear expert from a hand-built dataset.
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

from robo_reward.core.errors import ConfigError  # noqa: E402
from robo_reward.offline.bc import BC, BCConfig  # noqa: E402
from robo_reward.offline.dataset import OfflineDataset, collect_dataset, relabel  # noqa: E402
from robo_reward.offline.iql import IQL  # noqa: E402
from robo_reward.train.config import load_run_config, make_run_config  # noqa: E402
from robo_reward.train.evaluate import load_run_model  # noqa: E402
from robo_reward.train.offline import offline_preset  # noqa: E402
from robo_reward.train.runner import Runner, latest_checkpoint  # noqa: E402
from tests.cli_runs import read_jsonl as _read_jsonl  # noqa: E402
from tests.cli_runs import train_app as _app  # noqa: E402
from tests.fixtures import one_torch_thread  # noqa: E402, F401

TASK = "mujoco-inverted-pendulum-v5"
UPRIGHT = "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright"
TINY_HP = ["--hp", "hidden=[32, 32]", "--hp", "batch_size=64"]
LOSSES = {"v_loss", "q_loss", "pi_loss", "adv_weight"}


@pytest.fixture(scope="module")
def pendulum_dataset(tmp_path_factory) -> Path:
    """~350 transitions of uniformly random actions in [-3, 3] on the inverted pendulum."""
    rng = np.random.default_rng(0)
    ds = collect_dataset(TASK, n_episodes=60, seed=0,
                         policy=lambda obs: rng.uniform(-3.0, 3.0, 1).astype(np.float32))
    assert 200 <= len(ds) <= 600
    return ds.save(tmp_path_factory.mktemp("data") / "pendulum-random.npz")


@pytest.fixture(scope="module")
def iql_run(pendulum_dataset, tmp_path_factory):
    """300 gradient steps of IQL on the dataset relabelled with the upright reward, through the CLI."""
    run_dir = tmp_path_factory.mktemp("runs") / "iql"
    args = ["train", "--agent", "iql", "--dataset", str(pendulum_dataset), "--reward", UPRIGHT, "--steps", "300",
            "--seed", "2", "--eval-episodes", "3", "--eval-freq", "100", "--log-freq", "100",
            "--checkpoint-freq", "100", "--no-video", "--out", str(run_dir), "--no-progress", *TINY_HP]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run_dir, result.output


# ----------------------------------------------------------------------------- the run folder


def test_iql_cli_writes_a_complete_run_folder(iql_run, pendulum_dataset):
    run_dir, output = iql_run
    for name in ("config.yaml", "segments.json", "metrics.jsonl", "evals.jsonl", "final_model.pt",
                 "final_model.json", "eval.json", "summary.json", "dataset_rewards.npz"):
        assert (run_dir / name).is_file(), name
    assert "gradient steps" in output and "dataset" in output

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["agent"] == "iql" and cfg["task"] == TASK  # the task came from the dataset's metadata
    assert cfg["dataset"] == str(pendulum_dataset) and cfg["reward"] == UPRIGHT
    resolved = cfg["resolved"]
    assert resolved["step_unit"] == "gradient steps"
    assert resolved["hyperparameters"]["expectile"] == 0.7 and resolved["hyperparameters"]["beta"] == 3.0
    assert resolved["hyperparameters"]["hidden"] == [32, 32]
    ds_info = resolved["dataset"]
    assert ds_info["path"] == str(pendulum_dataset.resolve()) and ds_info["recorded_task"] == TASK
    assert ds_info["rewards"]["source"] == "relabelled" and len(ds_info["fingerprint"]) == 32
    assert ds_info["action_low"] == [-3.0] and ds_info["action_high"] == [3.0]
    assert ds_info["stats"]["window_episodes"] == 60

    lines = _read_jsonl(run_dir / "metrics.jsonl")
    assert [line["timesteps"] for line in lines] == [100, 200, 300]
    for line in lines:
        assert LOSSES <= set(line) and all(np.isfinite(line[k]) for k in LOSSES)
        assert line["env_return"] is not None and line["env_return"] > 0  # ground-truth return of the evaluations
        assert 0.0 <= line["success_rate"] <= 1.0 and line["window_episodes"] == 3
        assert line["eval_timesteps"] == line["timesteps"] and line["learned_return"] is None
    evals = _read_jsonl(run_dir / "evals.jsonl")
    assert [e["timesteps"] for e in evals] == [100, 200, 300]

    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step_000000100.json", "step_000000100.pt", "step_000000200.json", "step_000000200.pt"]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["offline"] is True and summary["timesteps"] == 300 and summary["agent"] == "iql"
    assert summary["final_eval"]["episodes"] == 3 and summary["final_eval"]["return_mean"] > 0
    assert summary["train"]["transitions"] == ds_info["transitions"]
    assert summary["dataset"]["fingerprint"] == ds_info["fingerprint"]
    assert LOSSES <= set(summary["agent_stats"]["last_losses"])

    # the rewards trained on are the upright reward's relabelling of the dataset
    from robo_reward.offline.dataset import load_dataset

    with np.load(run_dir / "dataset_rewards.npz") as z:
        kept = z["rewards"]
    expected = relabel(load_dataset(pendulum_dataset), UPRIGHT).rewards
    np.testing.assert_allclose(kept, expected, rtol=1e-6)


def test_eval_command_loads_an_iql_run(iql_run):
    run_dir, _ = iql_run
    model, cfg, info = load_run_model(run_dir)
    assert isinstance(model, IQL) and model.num_timesteps == 300 and info["model_timesteps"] == 300
    obs = np.zeros(4, np.float32)
    a, _ = model.predict(obs, deterministic=True)
    assert a.shape == (1,) and -3.0 <= float(a[0]) <= 3.0  # env actions, scaled back from [-1, 1]
    s, _ = model.predict(np.zeros((5, 4), np.float32), deterministic=False)
    assert s.shape == (5, 1) and np.all(np.abs(s) <= 3.0)
    out = run_dir / "eval-again.json"
    result = CliRunner().invoke(_app(), ["eval", str(run_dir), "--episodes", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    res = json.loads(out.read_text())
    assert res["episodes"] == 2 and res["model_timesteps"] == 300 and res["return_mean"] > 0


def test_export_an_iql_run_folder(iql_run, tmp_path):
    """`robo-reward export RUN` on an IQL run: the exported policy acts as the run's model, in env units."""
    from robo_reward.deploy import load_policy
    from robo_reward.deploy.cli import register as register_deploy

    run_dir, _ = iql_run
    out = tmp_path / "export"
    app = typer.Typer()
    register_deploy(app)
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(out), "--format", "onnx"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    files = sorted(out.glob("*.onnx"))
    assert len(files) == 1
    meta = json.loads(files[0].with_name(files[0].name + ".json").read_text())
    assert meta["training_run"]["agent"] == "iql" and meta["task"]["name"] == "mujoco-inverted-pendulum-v5"
    assert meta["action_space"]["low"] == [-3.0] and meta["normalization"]["source"] == "builtin-iql"
    model, _, _ = load_run_model(run_dir)
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    np.testing.assert_allclose(load_policy(files[0]).batch(obs), model.predict(obs)[0], atol=1e-5)


def test_run_config_file_with_bc_and_video(pendulum_dataset, tmp_path):
    cfg_path = tmp_path / "bc.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "agent": "bc", "dataset": str(pendulum_dataset), "steps": 120, "log_freq": 60, "eval_episodes": 2,
        "checkpoint_freq": 0, "video_max_steps": 5, "agent_overrides": {"hidden": [16], "loss": "nll"},
        "out": str(tmp_path / "run"),
    }))
    result = CliRunner().invoke(_app(), ["train", "--config", str(cfg_path), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    run_dir = tmp_path / "run"
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["task"] == TASK and cfg["eval_freq"] == 12  # ten evaluations by default
    assert cfg["resolved"]["hyperparameters"]["loss"] == "nll"
    assert cfg["resolved"]["dataset"]["rewards"]["source"] == "dataset"
    lines = _read_jsonl(run_dir / "metrics.jsonl")
    assert [line["timesteps"] for line in lines] == [60, 120]
    assert {"bc_loss", "mse"} <= set(lines[-1]) and lines[-1]["env_return"] is not None
    assert len(_read_jsonl(run_dir / "evals.jsonl")) == 10
    assert (run_dir / "videos" / "eval.mp4").is_file() or json.loads(
        (run_dir / "summary.json").read_text())["video_error"]
    model, _, _ = load_run_model(run_dir)
    assert isinstance(model, BC) and model.config.loss == "nll"


# ----------------------------------------------------------------------------- config errors


def test_offline_config_errors(pendulum_dataset, tmp_path):
    with pytest.raises(ConfigError, match="dataset"):
        make_run_config({"task": TASK, "agent": "iql"})
    with pytest.raises(ConfigError, match="only applies to the offline agents"):
        make_run_config({"task": TASK, "agent": "ppo", "dataset": str(pendulum_dataset)})
    cfg = load_run_config(None, agent="IQL", dataset=str(pendulum_dataset), steps=50)
    assert cfg.agent == "iql" and cfg.task == TASK and cfg.eval_freq == 5
    assert load_run_config(None, agent="iql", dataset=str(pendulum_dataset), eval_freq=0).eval_freq == 0
    with pytest.raises(ConfigError, match="betta"):
        offline_preset("iql", None, {"betta": 1.0})
    with pytest.raises(ConfigError, match="loss"):
        BC(3, 1, BCConfig(loss="huber"))
    with pytest.raises(ConfigError, match="does not exist"):
        Runner(make_run_config({"task": TASK, "agent": "bc", "dataset": str(tmp_path / "missing.npz"),
                                "out": str(tmp_path / "r0")}), progress=False).setup()
    # a dataset of another task (different observation size) is refused before training
    with pytest.raises(ConfigError, match="observations"):
        Runner(make_run_config({"task": "mujoco-reacher-v5", "agent": "bc", "dataset": str(pendulum_dataset),
                                "out": str(tmp_path / "r1")}), progress=False).setup()


def test_minari_dataset_spec(pendulum_dataset, tmp_path, monkeypatch):
    pytest.importorskip("minari")
    pytest.importorskip("h5py")
    from robo_reward.offline.dataset import load_dataset, to_minari

    to_minari(load_dataset(pendulum_dataset), "robo_reward/pendulum/random-v0", data_path=tmp_path / "minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    cfg = make_run_config({"agent": "bc", "dataset": "minari:robo_reward/pendulum/random-v0", "steps": 20,
                           "eval_episodes": 1, "eval_freq": 0, "video": False, "checkpoint_freq": 0,
                           "agent_overrides": {"hidden": [8]}, "out": str(tmp_path / "run")})
    assert cfg.task == TASK  # from the metadata that to_minari stores in the description
    summary = Runner(cfg, progress=False).setup().run()
    assert summary["timesteps"] == 20 and summary["dataset"]["path"] is None


# ----------------------------------------------------------------------------- resume


class SimulatedKill(RuntimeError):
    """Raised from a hook to stop training the way a killed process would."""


def _offline_cfg(dataset: Path, run_dir: Path) -> object:
    return make_run_config({
        "task": TASK, "agent": "iql", "dataset": str(dataset), "steps": 240, "seed": 4, "out": str(run_dir),
        "agent_overrides": {"hidden": [16, 16], "batch_size": 32}, "checkpoint_freq": 80, "log_freq": 40,
        "eval_freq": 120, "eval_episodes": 1, "video": False, "torch_threads": 1,
    })


def test_killed_offline_run_resumes_to_identical_parameters(pendulum_dataset, tmp_path):
    def killer(metrics: dict) -> bool:
        if metrics["timesteps"] >= 120:
            raise SimulatedKill(f"killed at {metrics['timesteps']}")
        return True

    straight = Runner(_offline_cfg(pendulum_dataset, tmp_path / "straight"), progress=False).setup().run()
    assert straight["timesteps"] == 240

    run_dir = tmp_path / "killed"
    with pytest.raises(SimulatedKill):
        Runner(_offline_cfg(pendulum_dataset, run_dir), progress=False, callbacks=[killer]).setup().run()
    assert not (run_dir / "summary.json").exists()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.timesteps == 80 and ckpt.model.suffix == ".pt"
    lines_before = _read_jsonl(run_dir / "metrics.jsonl")

    result = CliRunner().invoke(_app(), ["train", "--resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timesteps"] == 240 and summary["segments"] == 2
    lines_after = _read_jsonl(run_dir / "metrics.jsonl")
    assert lines_after[: len(lines_before)] == lines_before
    assert [line["timesteps"] for line in lines_after if line["segment"] == 1] == [120, 160, 200, 240]

    a = IQL.load(tmp_path / "straight" / "final_model.pt", device="cpu")
    b = IQL.load(run_dir / "final_model.pt", device="cpu")
    for name in ("q", "q_target", "v", "policy"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
    segments = json.loads((run_dir / "segments.json").read_text())
    assert [s["start_timesteps"] for s in segments] == [0, 80]


# ----------------------------------------------------------------------------- behaviour cloning


def _linear_expert_dataset(n: int = 4000, seed: int = 0) -> tuple[OfflineDataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.uniform(-0.15, 0.15, (5, 2)).astype(np.float32)  # |a| <= 0.75 for s in [-1, 1]^5
    s = rng.uniform(-1.0, 1.0, (n, 5)).astype(np.float32)
    a = (s @ w).astype(np.float32)
    r = np.zeros(n, np.float32)
    ds = OfflineDataset(s, a, r, s.copy(), np.zeros(n, bool), np.zeros(n, bool), np.arange(n) // 100, r.copy())
    return ds, w


@pytest.mark.parametrize("loss", ["mse", "nll"])
def test_bc_recovers_a_linear_expert(loss):
    ds, w = _linear_expert_dataset()
    assert np.abs(ds.actions).max() < 0.9
    agent = BC.for_dataset(ds, BCConfig(hidden=(64, 64), lr=1e-3, batch_size=128, loss=loss), device="cpu")
    probe = np.random.default_rng(1).uniform(-1.0, 1.0, (200, 5)).astype(np.float32)
    before = float(np.abs(agent.act(probe) - probe @ w).mean())
    hist = agent.fit(steps=1500, log_every=500)
    err = float(np.abs(agent.act(probe) - probe @ w).mean())
    assert len(hist) == 3 and hist[-1]["step"] == 1500
    assert err < 0.03 and err < 0.2 * before, (before, err)
    if loss == "nll":
        assert float(agent.policy.log_std.detach().mean()) < -1.0  # the std shrinks towards the expert's zero noise

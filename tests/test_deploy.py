"""Deployment: export parity, the wire protocol, robots, the safety layer and the runtime over 127.0.0.1.

Every server listens on 127.0.0.1 on a free port, every loop is bounded (steps and a
watchdog), every socket is closed by the fixtures. Fault-injection tests check the
actions the simulated robot *received*: only finite, in-bounds (and, where a rate limit
is set, rate-limited) actions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")

pytest.importorskip("mujoco")
pytest.importorskip("stable_baselines3")
pytest.importorskip("msgpack")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from robo_reward.core.errors import ConfigError  # noqa: E402
from robo_reward.deploy import protocol as proto  # noqa: E402
from robo_reward.deploy.cli import EXIT_SAFETY_STOP, register  # noqa: E402
from robo_reward.deploy.errors import ExportError, ProtocolError, RobotError, RobotTimeout  # noqa: E402
from robo_reward.deploy.export import export_policy, load_policy_source  # noqa: E402
from robo_reward.deploy.policy import CallablePolicy, load_policy, read_metadata  # noqa: E402
from robo_reward.deploy.robot import (  # noqa: E402
    FeatureLayout,
    GymRobot,
    LeRobotAdapter,
    NetworkRobot,
    Robot,
    observation_layout,
    open_robot,
)
from robo_reward.deploy.runtime import ControlLoop, episodes_to_dataset, load_episode  # noqa: E402
from robo_reward.deploy.safety import (  # noqa: E402
    DeploySettings,
    SafetyConfig,
    SafetyLayer,
    load_deploy_settings,
    make_deploy_settings,
)
from robo_reward.deploy.sim_server import Fault, SimRobotServer  # noqa: E402

TASK = "mujoco-reacher-v5"  # 10-dim observation, 2 torques in [-1, 1], 50-step episodes, dt 0.02 s
RATE = 100.0
LOW, HIGH = -np.ones(2), np.ones(2)


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (tiny) `robo-reward train` run folder: SB3 PPO on the reacher, one 128-step update."""
    from robo_reward.train.config import make_run_config
    from robo_reward.train.runner import Runner

    out = tmp_path_factory.mktemp("deploy") / "run"
    cfg = make_run_config({
        "task": TASK, "agent": "ppo", "steps": 128, "seed": 3, "device": "cpu", "torch_threads": 1,
        "agent_overrides": {"n_steps": 128, "batch_size": 64, "n_epochs": 1},
        "eval_episodes": 0, "video": False, "checkpoint_freq": 0, "out": str(out),
    })
    Runner(cfg, progress=False, log=lambda m: None).setup().run()
    return out


@pytest.fixture(scope="module")
def exported(run_dir):
    """The run folder exported to both formats."""
    results = export_policy(run_dir, formats=["onnx", "torchscript"])
    return {r.metadata["policy_format"]: r for r in results}


@pytest.fixture
def server():
    """A simulated reacher on 127.0.0.1 (free port); faults are added by the tests."""
    srv = SimRobotServer.from_card(TASK, seed=0).start()
    try:
        yield srv
    finally:
        srv.stop()


def _robot(srv: SimRobotServer) -> NetworkRobot:
    host, port = srv.address
    return NetworkRobot(host, port, timeout=1.0, connect_timeout=2.0)


def _assert_safe(actions, low=LOW, high=HIGH, max_delta=None, start=None, exclude_last=False):
    """Every received action finite and within bounds; consecutive changes within max_delta."""
    a = np.asarray(list(actions), dtype=np.float64)
    assert a.ndim == 2 and a.shape[0] > 0
    assert np.all(np.isfinite(a)), "a non-finite action reached the robot"
    assert np.all(a >= low) and np.all(a <= high), "an out-of-bounds action reached the robot"
    if max_delta is not None:
        checked = a[:-1] if exclude_last else a
        prev = np.zeros(a.shape[1]) if start is None else start
        for x in checked:
            assert np.all(np.abs(x - prev) <= max_delta + 1e-9), (x, prev)
            prev = x


def _wait_for(cond, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _const_policy(value=0.1, obs_dim=10):
    return CallablePolicy(lambda o: np.full(2, value), obs_dim, 2, -1.0, 1.0)


# ----------------------------------------------------------------------------- protocol


def test_protocol_roundtrip_and_malformed_frames():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(proto.decode_array(proto.encode_array(a)), a)
    assert proto.decode_array(proto.encode_array(np.array([True, False]))).dtype == np.bool_
    msg = proto.make_message("action", 7, features=proto.encode_features({"action": np.array([0.5, -0.5])}))
    frame = proto.pack(msg)
    (n,) = proto.HEADER.unpack(frame[:4])
    back = proto.unpack_body(frame[4:])
    assert n == len(frame) - 4 and back["id"] == 7 and back["type"] == "action"
    assert np.array_equal(proto.decode_features(back["features"])["action"], [0.5, -0.5])

    with pytest.raises(ProtocolError, match="msgpack"):
        proto.unpack_body(b"\xc1\xc1")
    with pytest.raises(ProtocolError) as err:
        proto.check_message({"v": 2, "type": "hello", "id": 1, "client": "x"})
    assert err.value.code == "unsupported_version"
    with pytest.raises(ProtocolError, match="field 'seq'"):
        proto.check_message({"v": 1, "type": "observation", "id": 1, "seq": "x", "stamp": 0.0, "step": 0,
                             "features": {}, "done": False})
    with pytest.raises(ProtocolError, match="unknown message type"):
        proto.check_message({"v": 1, "type": "launch", "id": 1})
    with pytest.raises(ProtocolError, match="dtype"):
        proto.decode_array({"dtype": "<c16", "shape": [1], "data": b"0" * 16})
    with pytest.raises(ProtocolError, match="bytes of data"):
        proto.decode_array({"dtype": "<f8", "shape": [3], "data": b"0" * 8})

    # a frame split across reads (and a timeout in the middle) stays in sync; an oversize length is refused
    left, right = socket.socketpair()
    try:
        reader = proto.FrameReader(right, max_frame=1024)
        left.sendall(frame[:5])
        with pytest.raises(RobotTimeout):
            reader.read(0.02)
        left.sendall(frame[5:])
        assert reader.read(1.0)["id"] == 7
        left.sendall(proto.HEADER.pack(1 << 30))
        with pytest.raises(ProtocolError, match="frame length"):
            reader.read(1.0)
    finally:
        left.close()
        right.close()


# ----------------------------------------------------------------------------- safety layer and settings


def test_safety_layer_blocks_clips_and_rate_limits():
    cfg = SafetyConfig(max_action_rate=10.0, action_high=[1.0, 0.5])  # 0.1 per step at 100 Hz
    layer = SafetyLayer(cfg, LOW, HIGH, RATE)
    assert np.allclose(layer.high, [1.0, 0.5]) and np.allclose(layer.max_delta, 0.1)
    r = layer.filter([5.0, -5.0])  # out of range and too fast
    kinds = [k for k, _ in r.reasons]
    assert kinds == ["clipped", "rate_limited"] and np.allclose(r.action, [0.1, -0.1])
    layer.mark_sent(r.action)
    r = layer.filter([np.nan, 0.0])
    assert [k for k, _ in r.reasons] == ["nonfinite_action"] and np.allclose(r.action, [0.1, -0.1]) and not r.stop
    r = layer.filter([0.15, -0.05])
    assert r.reasons == [] and np.allclose(r.action, [0.15, -0.05])
    stop = SafetyLayer(SafetyConfig(on_nonfinite_action="stop"), LOW, HIGH, RATE).filter([np.inf, 0])
    assert stop.stop and np.allclose(stop.action, 0.0)
    assert np.allclose(SafetyLayer(SafetyConfig(safe_action="center"), [0, 0], [2, 4], RATE).safe, [1, 2])
    hold = SafetyLayer(SafetyConfig(safe_action="hold"), LOW, HIGH, RATE)
    assert hold.stop_action() is None and hold.hold_action() is None
    hold.mark_sent(np.array([0.3, 0.3]))
    assert np.allclose(hold.stop_action(), 0.3)

    with pytest.raises(ConfigError, match="outside the action bounds"):
        SafetyLayer(SafetyConfig(), [0.5, 0.5], [1.0, 1.0], RATE)  # zeros is not a safe action here
    with pytest.raises(ConfigError, match="not finite"):
        SafetyLayer(SafetyConfig(), [-np.inf, -1], [np.inf, 1], RATE)
    with pytest.raises(ConfigError, match="entries"):
        SafetyLayer(SafetyConfig(max_action_rate=[1, 2, 3]), LOW, HIGH, RATE)


def test_deploy_settings_from_card_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_deploy_settings({"safety": {"max_rate": 1}})
    assert "max_rate" in str(err.value) and "max_action_rate" in str(err.value)
    with pytest.raises(ConfigError, match="watchdog_periods"):
        make_deploy_settings({"safety": {"watchdog_periods": 0}})
    path = tmp_path / "safety.yaml"
    path.write_text(yaml.safe_dump({"deploy": {"rate_hz": 50, "safety": {"max_action_rate": 5.0, "safe_action": "center"}}}))
    card = {"name": "x", "deploy": {"rate_hz": 20, "safety": {"watchdog_periods": 7}}}  # a card with a deploy section
    s = load_deploy_settings(card, path, {"rate_hz": None, "safety": {"max_action_rate": 2.0, "safe_action": None}})
    assert s.rate_hz == 50 and s.safety.watchdog_periods == 7  # card <- file
    assert s.safety.max_action_rate == 2.0 and s.safety.safe_action == "center"  # file <- flags (None ignored)
    with pytest.raises(ConfigError, match="does not exist"):
        load_deploy_settings(path=tmp_path / "missing.yaml")
    # the shipped card schema has no deploy section yet: settings fall back to the defaults
    from robo_reward.envs import load_card

    assert load_deploy_settings(load_card(TASK)) == DeploySettings()


# ----------------------------------------------------------------------------- export


def test_export_run_folder_both_formats(run_dir, exported):
    onnx_res, ts_res = exported["onnx"], exported["torchscript"]
    assert onnx_res.path == run_dir / "export" / "policy.onnx" and onnx_res.path.is_file()
    for res in (onnx_res, ts_res):
        assert res.max_abs_diff <= 1e-5
        meta = json.loads(res.metadata_path.read_text())
        assert meta == read_metadata(res.path)
        assert meta["parity"]["passed"] and meta["parity"]["samples"] == 1000
        assert meta["control_rate_hz"] == pytest.approx(50.0) and meta["env_dt"] == pytest.approx(0.02)
        assert meta["observation_space"]["shape"] == [10] and meta["action_space"]["low"] == [-1.0, -1.0]
        units = {f["name"]: f["units"] for f in meta["observation_fields"]}
        assert units["target_position"] == "m" and units["joint_velocities"] == "rad/s"
        run = meta["training_run"]
        assert run["agent"] == "ppo" and run["seed"] == 3 and run["timesteps"] == 128
        assert meta["reward"]["spec"] == "env" and meta["task"]["name"] == TASK
    # the embedded copy (no sidecar needed) and the graph's interface
    model = onnx.load(str(onnx_res.path))
    assert [i.name for i in model.graph.input] == ["obs"] and [o.name for o in model.graph.output] == ["action"]
    assert any(p.key == "robo_reward.json" for p in model.metadata_props)
    # both files agree with SB3's predict (and each other) on fresh observations
    from stable_baselines3 import PPO

    obs = np.random.default_rng(1).normal(size=(64, 10)).astype(np.float32)
    ref, _ = PPO.load(str(run_dir / "final_model.zip"), device="cpu").predict(obs, deterministic=True)
    for fmt in ("onnx", "torchscript"):
        got = load_policy(exported[fmt].path).batch(obs)
        assert np.max(np.abs(got - ref)) <= 1e-5
        assert np.max(np.abs(load_policy(exported[fmt].path)(obs[0]) - ref[0])) <= 1e-5


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_export_sb3_zip_with_task_squashed_policies(tmp_path, algo):
    import stable_baselines3 as sb3

    from robo_reward.envs import make_env

    env = make_env("mujoco-inverted-pendulum-v5")  # actions in [-3, 3]: the tanh output is rescaled
    model = getattr(sb3, algo.upper())("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    path = tmp_path / "model.zip"
    model.save(str(path))
    env.close()
    fmt = {"sac": "onnx", "td3": "torchscript"}[algo]  # both formats are covered for PPO and the built-in agents
    results = export_policy(path, tmp_path / "out", [fmt], task="mujoco-inverted-pendulum-v5", parity_samples=300)
    assert [r.metadata["policy_format"] for r in results] == [fmt]
    for r in results:
        assert r.max_abs_diff <= 1e-5
        assert r.metadata["training_run"]["agent"] == algo and r.metadata["action_rescaling"].startswith("tanh")
        assert r.metadata["action_space"]["high"] == [3.0]


def test_export_bakes_in_vecnormalize(tmp_path):
    import stable_baselines3 as sb3
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from robo_reward.envs import make_env

    venv = VecNormalize(DummyVecEnv([lambda: make_env(TASK)]), norm_obs=True, clip_obs=5.0)
    rng = np.random.default_rng(0)
    venv.obs_rms.mean = rng.normal(size=10)
    venv.obs_rms.var = rng.uniform(0.01, 4.0, size=10)
    model = sb3.PPO("MlpPolicy", venv, seed=0, device="cpu")
    model.save(str(tmp_path / "model.zip"))
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    venv.close()
    (res,) = export_policy(tmp_path / "model.zip", tmp_path / "out", task=TASK,
                           vecnormalize=tmp_path / "vecnormalize.pkl")
    assert res.max_abs_diff <= 1e-5 and res.metadata["normalization"]["clip"] == 5.0
    # the statistics matter: without them the same file would not match the normalised reference
    src = load_policy_source(tmp_path / "model.zip", task=TASK, vecnormalize=tmp_path / "vecnormalize.pkl")
    obs = rng.normal(size=(50, 10)).astype(np.float32) * 3
    raw_pred, _ = model.predict(obs, deterministic=True)
    assert np.max(np.abs(src.reference(obs) - raw_pred)) > 1e-3
    assert np.max(np.abs(load_policy(res.path).batch(obs) - src.reference(obs))) <= 1e-5


def test_export_builtin_ppo_with_obs_normalisation(tmp_path):
    from robo_reward.agents.ppo import PPO
    from robo_reward.envs import make_env

    env = make_env(TASK)
    agent = PPO(None, {"norm_obs": True, "net_arch": [32, 32]}, seed=0, device="cpu",
                observation_space=env.observation_space, action_space=env.action_space)
    env.close()
    rng = np.random.default_rng(2)
    agent.obs_rms.update(rng.normal(1.0, 3.0, size=(500, 10)))
    with __import__("torch").no_grad():
        agent.policy.actor.weights[-1].mul_(100.0)  # large actions: the clip to [-1, 1] is exercised
    # the run-folder layout `robo-reward train --agent ppo-native` writes
    run = tmp_path / "run"
    path = agent.save(run / "final_model.pt")
    (run / "final_model.json").write_text(json.dumps({"timesteps": 4096}))
    (run / "config.yaml").write_text(yaml.safe_dump({"task": TASK, "agent": "ppo-native", "seed": 11,
                                                     "reward": None, "mode": "replace"}))
    results = export_policy(run, formats=["onnx", "torchscript"])
    for r in results:
        assert r.path.parent == run / "export" and r.max_abs_diff <= 1e-5
        run_meta = r.metadata["training_run"]
        assert run_meta["agent"] == "ppo-native" and run_meta["timesteps"] == 4096 and run_meta["seed"] == 11
        assert r.metadata["normalization"]["source"] == "builtin-ppo"
    loaded = PPO.load(path, device="cpu")
    obs = rng.normal(1.0, 3.0, size=(40, 10)).astype(np.float32)
    ref, _ = loaded.predict(obs)
    assert np.abs(ref).max() == pytest.approx(1.0)  # some actions hit the bounds
    assert np.max(np.abs(load_policy(results[0].path).batch(obs) - ref)) <= 1e-5


def test_export_builtin_barfi(tmp_path):
    from gymnasium import spaces

    from robo_reward.agents.barfi import BARFI

    obs_space = spaces.Box(-np.inf, np.inf, (4,), np.float64)
    act_space = spaces.Box(-3.0, 3.0, (1,), np.float32)
    agent = BARFI(None, {"aux_terms": ["upright"], "net_arch": [16, 16]}, seed=0, device="cpu",
                  observation_space=obs_space, action_space=act_space)
    with __import__("torch").no_grad():
        agent.policy.weights[-1].mul_(300.0)
    path = agent.save(tmp_path / "barfi.pt")
    results = export_policy(path, tmp_path / "out", ["onnx", "torchscript"], task="mujoco-inverted-pendulum-v5")
    assert all(r.max_abs_diff <= 1e-5 and r.metadata["training_run"]["agent"] == "barfi" for r in results)
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    ref, _ = BARFI.load(path, device="cpu").predict(obs)
    assert np.abs(ref).max() == pytest.approx(3.0)
    assert np.max(np.abs(load_policy(results[0].path).batch(obs) - ref)) <= 1e-5


def test_export_errors(tmp_path, run_dir, monkeypatch):
    with pytest.raises(ConfigError, match="nothing to export"):
        export_policy(tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_policy(run_dir, tmp_path, ["tflite"])
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a Stable-Baselines3 model zip"):
        export_policy(tmp_path / "junk.zip", tmp_path)
    import gymnasium as gym
    import stable_baselines3 as sb3

    sb3.PPO("MlpPolicy", gym.make("CartPole-v1"), device="cpu").save(str(tmp_path / "discrete.zip"))
    with pytest.raises(ConfigError, match="Box actions"):
        export_policy(tmp_path / "discrete.zip", tmp_path)
    # a parity failure keeps no file
    from robo_reward.deploy import export as export_mod

    real = export_mod.PolicySource.reference
    monkeypatch.setattr(export_mod.PolicySource, "reference", lambda self, obs: real(self, obs) + 1e-3)
    with pytest.raises(ExportError, match="parity check failed"):
        export_policy(run_dir, tmp_path / "bad", ["torchscript"])
    assert not (tmp_path / "bad" / "policy.torchscript.pt").exists()


# ----------------------------------------------------------------------------- robots


def test_gym_robot_layouts_and_uris():
    robot = GymRobot.from_card(TASK, seed=0)
    assert isinstance(robot, Robot)
    assert list(robot.observation_features)[0] == "cos_joint_angles" and robot.action_features == {"action": (2,)}
    assert robot.control_rate_hz == pytest.approx(50.0)
    with robot:
        obs = robot.get_observation()
        assert robot.get_observation()["_seq"] == obs["_seq"] + 1 and not obs["_done"]
        with pytest.raises(RobotError, match="not finite"):
            robot.send_action({"action": np.array([np.nan, 0.0])})
        robot.send_action({"action": np.array([0.1, 0.1])})
        assert robot.step_count == 1 and len(robot.actions) == 2
    assert not robot.is_connected
    # the policy's field order wins over the robot's feature order
    fields = [{"name": "b", "start": 0, "stop": 1}, {"name": "a", "start": 1, "stop": 3}]
    layout = observation_layout({"a": (2,), "b": ()}, 3, fields)
    assert layout.names == ["b", "a"]
    assert np.array_equal(layout.flatten({"a": [2, 3], "b": 1}), [1, 2, 3])
    assert FeatureLayout({"x": (2,), "y": ()}).split(np.array([1.0, 2.0, 3.0]))["y"].shape == ()
    with pytest.raises(ConfigError, match="do not make"):
        observation_layout({"a": (2,)}, 3, fields)
    assert isinstance(open_robot("tcp://127.0.0.1:5555?timeout=0.05"), NetworkRobot)
    assert open_robot("tcp://127.0.0.1:5555?timeout=0.05").timeout == 0.05
    for bad in ("udp://x:1", "tcp://127.0.0.1", "sim:", "tcp://127.0.0.1:5?bogus=1", ""):
        with pytest.raises(ConfigError):
            open_robot(bad)


def test_network_robot_against_sim_server(server):
    robot = _robot(server)
    with robot:
        assert robot.observation_features == GymRobot.from_card(TASK).observation_features
        low, high = robot.action_limits
        assert np.array_equal(low, LOW) and robot.control_rate_hz == pytest.approx(50.0)
        first = robot.reset(5)
        obs = robot.get_observation()
        assert obs["_seq"] > first["_seq"] and obs["_step"] == 0
        robot.send_action({"action": np.array([0.2, -0.2])})
        assert robot.get_observation()["_step"] == 1
        with pytest.raises(RobotError, match="bad_action"):
            robot.send_action({"action": np.array([np.inf, 0.0])})  # the server refuses it; the connection stays
        assert robot.get_observation()["_step"] == 1
    assert server.errors and server.errors[-1][0] == "bad_action"
    # a client of another protocol version is turned away with a clear error
    host, port = server.address
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(proto.pack({"v": 9, "type": "hello", "id": 1, "client": "future"}))
        reply = proto.FrameReader(s).read(2.0)  # the server answers in its own version, then closes
    assert reply["type"] == "error" and reply["code"] == "unsupported_version"


def test_lerobot_adapter_runs_in_the_loop():
    class FakeLeRobot:  # the shape of lerobot.robots.Robot
        name = "so100_follower"
        observation_features = {"shoulder.pos": float, "elbow.pos": float}
        action_features = {"shoulder.pos": float, "elbow.pos": float}

        def __init__(self):
            self.is_connected, self.sent, self.q = False, [], np.zeros(2)

        def connect(self, calibrate=True):
            self.is_connected = True

        def disconnect(self):
            self.is_connected = False

        def get_observation(self):
            return {"shoulder.pos": float(self.q[0]), "elbow.pos": float(self.q[1])}

        def send_action(self, action):
            assert all(isinstance(v, float) for v in action.values())
            self.sent.append(dict(action))
            self.q = np.array([action["shoulder.pos"], action["elbow.pos"]])
            return action

    fake = FakeLeRobot()
    policy = CallablePolicy(lambda o: o + 0.5, 2, 2, -1.0, 1.0)
    report = ControlLoop(policy, LeRobotAdapter(fake), rate_hz=200, max_steps=6,
                         settings=SafetyConfig(max_action_rate=20.0)).run()  # 0.1 per step
    assert report.stop_reason == "completed" and report.steps == 6 and not fake.is_connected
    got = np.array([[a["shoulder.pos"], a["elbow.pos"]] for a in fake.sent])
    _assert_safe(got, max_delta=0.1, exclude_last=True)  # the final safe action (zeros) is not rate-limited
    assert report.interventions.get("rate_limited", 0) >= 5 and fake.sent[-1] == {"shoulder.pos": 0.0, "elbow.pos": 0.0}
    # position-controlled arms keep their pose at the end with safe_action: hold
    fake2 = FakeLeRobot()
    ControlLoop(policy, LeRobotAdapter(fake2), rate_hz=200, max_steps=6,
                settings=SafetyConfig(max_action_rate=20.0, safe_action="hold")).run()
    got2 = np.array([[a["shoulder.pos"], a["elbow.pos"]] for a in fake2.sent])
    _assert_safe(got2, max_delta=0.1)
    assert np.array_equal(got2[-1], got2[-2])


# ----------------------------------------------------------------------------- runtime: full episode


def test_full_episode_with_trained_policy_over_tcp(exported, server, tmp_path):
    policy = load_policy(exported["onnx"].path)
    report = ControlLoop(policy, _robot(server), rate_hz=RATE, log_dir=tmp_path / "logs", seed=0).run()
    assert report.stop_reason == "completed" and report.episodes[0]["end"] == "done"
    assert report.steps == 50 and report.episodes[0]["return"] < 0  # the reacher's reward is a negative distance
    received = list(server.received_actions)
    assert len(received) == 50  # one per step; no final safe action after a finished episode
    _assert_safe(received)
    ep = load_episode(tmp_path / "logs" / "episode_0000.npz")
    assert np.allclose(ep["actions"], np.array(received, dtype=np.float32))
    assert ep["fresh"].all() and ep["policy_ran"].all() and ep["timeouts"][-1] and not ep["terminals"].any()
    assert ep["meta"]["observation_features"][0] == "cos_joint_angles"
    data = episodes_to_dataset(tmp_path / "logs")
    assert data["observations"].shape == (50, 10) and data["next_observations"].shape == (50, 10)
    assert np.allclose(data["next_observations"][:-1], data["observations"][1:])
    assert np.all(np.isfinite(data["rewards"]))
    t = report.timing
    assert t["cycles"] == 50 and t["period_ms"]["n"] == 49 and t["inference_ms"]["p99"] > 0
    saved = json.loads((tmp_path / "logs" / "deploy_report.json").read_text())
    assert saved["stop_reason"] == "completed" and saved["timing"]["deadline_misses"] == t["deadline_misses"]
    # the TorchScript export drives the same robot to the same actions
    server.robot.actions.clear()
    ts = ControlLoop(load_policy(exported["torchscript"].path), GymRobot.from_card(TASK), rate_hz=500, seed=0,
                     max_steps=10).run()
    assert ts.stop_reason == "completed" and ts.steps == 10


# ----------------------------------------------------------------------------- runtime: fault injection


def _loop(policy, srv, steps=30, **safety):
    cfg = {"watchdog_periods": 10, **safety}
    return ControlLoop(policy, _robot(srv), rate_hz=RATE, max_steps=steps, seed=0, settings=SafetyConfig(**cfg))


def test_short_stall_recovers(server):
    server.faults = [Fault("stall", at_step=5, seconds=0.03)]
    report = _loop(_const_policy(), server).run()
    assert report.stop_reason == "completed" and report.steps == 30
    assert report.interventions.get("observation_timeout", 0) >= 1
    _assert_safe(server.received_actions)


def test_long_stall_trips_the_watchdog_and_sends_the_safe_action(server):
    server.faults = [Fault("stall", at_step=5, seconds=0.3)]
    t0 = time.perf_counter()
    report = _loop(_const_policy(0.4), server, steps=200, watchdog_periods=5).run()
    assert report.stop_reason == "watchdog" and "no new observation" in report.detail
    assert report.steps < 20 and time.perf_counter() - t0 < 2.0
    assert _wait_for(lambda: np.allclose(server.received_actions[-1], 0.0))  # arrives once the stall ends
    _assert_safe(server.received_actions)
    assert report.final_action == [0.0, 0.0]


def test_disconnect_stops_and_sends_the_safe_action_on_a_new_connection(server):
    server.faults = [Fault("disconnect", at_step=8)]
    report = _loop(_const_policy(0.4), server).run()
    assert report.stop_reason == "disconnect" and report.steps >= 8
    assert "safe action sent" in report.detail
    assert _wait_for(lambda: server.connections == 2 and np.allclose(server.received_actions[-1], 0.0))
    _assert_safe(server.received_actions)


@pytest.mark.parametrize("variant", ["garbage", "version", "oversize", "fields"])
def test_malformed_message_recovers(server, variant):
    server.faults = [Fault("malformed", at_step=4, variant=variant)]
    robot = _robot(server)
    report = ControlLoop(_const_policy(), robot, rate_hz=RATE, max_steps=15,
                         settings=SafetyConfig(watchdog_periods=20)).run()
    assert report.stop_reason == "completed" and report.steps == 15
    assert report.interventions.get("malformed_message", 0) == 1
    assert robot.reconnects == 1 and server.connections == 2
    _assert_safe(server.received_actions)


def test_stale_and_nan_observations_hold_then_recover(server):
    seen = []
    policy = CallablePolicy(lambda o: (seen.append(o.copy()), np.full(2, 0.1))[1], 10, 2)
    server.faults = [Fault("stale", at_step=3, count=2), Fault("nan", at_step=10, count=1)]
    report = _loop(policy, server, steps=20).run()
    assert report.stop_reason == "completed"
    assert report.interventions["stale_observation"] == 2 and report.interventions["nonfinite_observation"] == 1
    assert all(np.all(np.isfinite(o)) for o in seen)  # the policy never saw the NaN reading
    held = sum(report.interventions.get(k, 0) for k in ("stale_observation", "nonfinite_observation",
                                                          "observation_timeout", "malformed_message"))
    assert len(server.received_actions) == 20 - held + 1  # held steps send nothing; + the final safe action
    _assert_safe(server.received_actions)


def test_stale_readings_for_too_long_trip_the_watchdog(server):
    server.faults = [Fault("stale", at_step=3, count=100)]
    report = _loop(_const_policy(), server, steps=100, watchdog_periods=4).run()
    assert report.stop_reason == "watchdog" and report.steps < 12
    _assert_safe(server.received_actions)


def test_policy_nan_and_out_of_range_actions_never_reach_the_robot(server, tmp_path):
    calls = {"n": 0}

    def wild(obs):
        calls["n"] += 1
        n = calls["n"]
        if n % 5 == 0:
            return np.array([np.nan, 0.0])
        if n % 7 == 0:
            return np.array([np.inf, -np.inf])
        return np.array([50.0, -50.0]) if n % 2 else np.array([-3.0, 0.7])

    policy = CallablePolicy(wild, 10, 2, -1.0, 1.0)
    report = ControlLoop(policy, _robot(server), rate_hz=RATE, max_steps=30, log_dir=tmp_path,
                         settings=SafetyConfig(max_action_rate=20.0, watchdog_periods=10)).run()  # 0.2 per step
    assert report.stop_reason == "completed"
    for kind in ("nonfinite_action", "clipped", "rate_limited"):
        assert report.interventions.get(kind, 0) > 0
    _assert_safe(server.received_actions, max_delta=0.2, exclude_last=True)
    lines = [json.loads(x) for x in (tmp_path / "interventions.jsonl").read_text().splitlines()]
    nan_line = next(x for x in lines if x["kind"] == "nonfinite_action")
    assert nan_line["policy_action"][0] == "nan" and all(np.isfinite(nan_line["sent_action"]))
    ep = load_episode(tmp_path / "episode_0000.npz")
    assert np.isnan(ep["policy_actions"]).any() and np.all(np.isfinite(ep["actions"][ep["action_sent"]]))
    assert ep["intervened"].sum() > 10


def test_nonfinite_policy_stops_when_configured_or_after_too_many_faults(server):
    nan_policy = CallablePolicy(lambda o: np.full(2, np.nan), 10, 2)
    report = _loop(nan_policy, server, on_nonfinite_action="stop").run()
    assert report.stop_reason == "nonfinite_action" and report.steps == 0
    assert [a.tolist() for a in server.received_actions] == [[0.0, 0.0]]
    report = _loop(nan_policy, server, max_consecutive_faults=4).run()
    assert report.stop_reason == "too_many_faults" and 1 <= report.interventions["nonfinite_action"] <= 4
    _assert_safe(server.received_actions)


def test_policy_exception_stops_with_the_safe_action(server):
    def boom(obs):
        if boom.n == 3:
            raise RuntimeError("model blew up")
        boom.n += 1
        return np.full(2, 0.5)

    boom.n = 0
    report = _loop(CallablePolicy(boom, 10, 2), server).run()
    assert report.stop_reason == "policy_exception" and "model blew up" in report.detail
    assert np.allclose(server.received_actions[-1], 0.0) and len(server.received_actions) == 4


def test_operator_stop_by_signal(server):
    def policy_fn(obs):
        policy_fn.n += 1
        if policy_fn.n == 5:
            os.kill(os.getpid(), signal.SIGINT)  # the operator presses Ctrl-C
        return np.full(2, 0.3)

    policy_fn.n = 0
    before = signal.getsignal(signal.SIGINT)
    report = _loop(CallablePolicy(policy_fn, 10, 2), server, steps=100).run()
    assert report.stop_reason == "operator_stop" and "SIGINT" in report.detail
    assert 5 <= report.steps <= 7 and np.allclose(server.received_actions[-1], 0.0)
    assert signal.getsignal(signal.SIGINT) is before


def test_unreachable_robot_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here after the close
    from robo_reward.deploy.errors import RobotDisconnected

    with pytest.raises(RobotDisconnected, match="cannot connect"):
        ControlLoop(_const_policy(), NetworkRobot("127.0.0.1", port, connect_timeout=0.5), rate_hz=RATE,
                    max_steps=3).run()


# ----------------------------------------------------------------------------- CLI


def test_cli_export_and_run(run_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "export"
    res = runner.invoke(_app(), ["export", str(run_dir), "--format", "both", "--out", str(out), "--parity-samples", "200"])
    assert res.exit_code == 0, res.output
    assert (out / "policy.onnx").is_file() and (out / "policy.torchscript.pt.json").is_file()

    logs = tmp_path / "logs"
    res = runner.invoke(_app(), ["deploy", "run", str(out / "policy.onnx"), "--robot", f"sim:{TASK}?seed=1",
                                 "--rate", "200", "--steps", "10", "--log", str(logs), "--max-action-rate", "50"])
    assert res.exit_code == 0, res.output
    assert "loop period" in res.output and (logs / "episode_0000.npz").is_file()

    bad = tmp_path / "bad.yaml"
    bad.write_text("safety: {max_action_rat: 1}\n")
    res = runner.invoke(_app(), ["deploy", "run", str(out), "--robot", f"sim:{TASK}", "--safety", str(bad)])
    assert res.exit_code == 2 and "max_action_rat" in res.output

    with SimRobotServer.from_card(TASK, seed=0, faults=["disconnect@3"]) as srv:
        res = runner.invoke(_app(), ["deploy", "run", str(out / "policy.onnx"), "--robot", srv.uri, "--rate", "100"])
    assert res.exit_code == EXIT_SAFETY_STOP and "disconnect" in res.output


def test_cli_serve_sim_subprocess():
    proc = subprocess.Popen(
        [sys.executable, "-m", "robo_reward.cli", "deploy", "serve-sim", TASK, "--port", "0", "--seed", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on tcp://127.0.0.1:"), line + proc.stderr.read()
        robot = open_robot(line.split()[-1])
        with robot:
            robot.send_action({"action": np.array([0.1, 0.1])})
            assert robot.get_observation()["_step"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("algo", ["iql", "bc"])
def test_export_offline_agent_run_folder(tmp_path, algo):
    """An offline run folder (`train --agent iql|bc`) exports with its normaliser and action bounds baked in."""
    import torch

    from robo_reward.offline.bc import BC
    from robo_reward.offline.iql import IQL

    cls = IQL if algo == "iql" else BC
    agent = cls(6, 2, device="cpu")
    agent.set_action_bounds(np.array([-2.0, 0.0]), np.array([2.0, 0.5]))
    rng = np.random.default_rng(3)
    agent.obs_mean = torch.as_tensor(rng.normal(0, 2, 6), dtype=torch.float32)
    agent.obs_std = torch.as_tensor(rng.uniform(0.5, 3, 6), dtype=torch.float32)
    with torch.no_grad():
        agent.policy_module.mean[-1].weight.mul_(10.0)  # push tanh towards saturation on some entries
    run = tmp_path / "run"
    agent.save(run / "final_model.pt")
    (run / "config.yaml").write_text(yaml.safe_dump({"agent": algo, "seed": 1, "reward": "env"}))
    results = export_policy(run, formats=["onnx", "torchscript"])
    obs = rng.normal(0, 3, size=(64, 6)).astype(np.float32)
    ref = cls.load(run / "final_model.pt", device="cpu").act(obs)
    assert np.abs(ref[:, 0]).max() > 1.9 and ref[:, 1].min() >= 0.0  # near the bounds: rescaling is exercised
    for r in results:
        assert r.max_abs_diff <= 1e-5
        assert r.metadata["normalization"]["source"] == f"builtin-{algo}"
        assert r.metadata["action_space"]["low"] == [-2.0, 0.0]
        assert r.metadata["training_run"]["agent"] == algo
        assert np.max(np.abs(load_policy(r.path).batch(obs) - ref)) <= 1e-5

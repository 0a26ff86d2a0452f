"""Deployment: export trained policies and drive robot controllers safely at a fixed rate.

From a run folder to a robot::

    from robo_reward.deploy import export_policy, load_policy, open_robot, ControlLoop, load_deploy_settings

    export_policy("runs/reacher", formats=["onnx"])                       # runs/reacher/export/policy.onnx
    policy = load_policy("runs/reacher/export/policy.onnx")
    with open_robot("tcp://127.0.0.1:5555") as robot:                     # or sim:CARD, gym:ENV_ID
        report = ControlLoop(policy, robot, rate_hz=50, log_dir="logs",
                             settings=load_deploy_settings(path="safety.yaml")).run()

Modules:

* :mod:`~robo_reward.deploy.export` — ONNX / TorchScript export with normalisation and
  action rescaling inside, metadata file, parity check;
* :mod:`~robo_reward.deploy.policy` — exported policies at run time (onnxruntime, TorchScript);
* :mod:`~robo_reward.deploy.protocol` — the versioned TCP wire protocol (length-prefixed msgpack);
* :mod:`~robo_reward.deploy.robot` — the LeRobot-shaped :class:`Robot` protocol, the
  network client, the Gymnasium adapter, the LeRobot adapter;
* :mod:`~robo_reward.deploy.sim_server` — a simulated robot server from a task card, with fault injection;
* :mod:`~robo_reward.deploy.safety` — the safety layer and its settings;
* :mod:`~robo_reward.deploy.runtime` — the fixed-rate control loop, episode logs, timing report.

Importing this package is cheap; torch, onnxruntime and the simulators load when used.
"""

from __future__ import annotations

from robo_reward._lazy import lazy_attributes

from typing import Any

_LAZY = {
    "ExportError": "errors",
    "ProtocolError": "errors",
    "RobotDisconnected": "errors",
    "RobotError": "errors",
    "RobotTimeout": "errors",
    "export_policy": "export",
    "load_policy_source": "export",
    "ExportResult": "export",
    "PolicySource": "export",
    "load_policy": "policy",
    "read_metadata": "policy",
    "OnnxPolicy": "policy",
    "TorchScriptPolicy": "policy",
    "CallablePolicy": "policy",
    "Policy": "policy",
    "PROTOCOL_VERSION": "protocol",
    "Robot": "robot",
    "RobotBase": "robot",
    "GymRobot": "robot",
    "NetworkRobot": "robot",
    "LeRobotAdapter": "robot",
    "FeatureLayout": "robot",
    "open_robot": "robot",
    "SimRobotServer": "sim_server",
    "Fault": "sim_server",
    "SafetyConfig": "safety",
    "DeploySettings": "safety",
    "SafetyLayer": "safety",
    "Intervention": "safety",
    "load_deploy_settings": "safety",
    "ControlLoop": "runtime",
    "DeployReport": "runtime",
    "run_policy": "runtime",
    "precise_sleep_until": "runtime",
    "load_episode": "runtime",
    "episodes_to_dataset": "runtime",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)

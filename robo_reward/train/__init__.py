"""Training runs: config, runner, callbacks and evaluation.

``import robo_reward.train`` is cheap; Stable-Baselines3 and torch load when a run
starts. The main entry points::

    from robo_reward.train import load_run_config, train, resume, evaluate

    summary = train(load_run_config("assets/runs/quickstart.yaml", steps=20_000))
    result = evaluate(summary_run_dir, episodes=20)
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig, load_run_config, make_run_config, write_run_config

# Bind the *function* ``evaluate`` over the submodule of the same name (the submodule is
# light: numpy only; scipy loads when an interval is computed).
from .evaluate import evaluate, record_video, summarize_episodes, t_interval, wilson_interval

_LAZY = {
    "Runner": "runner",
    "NativeRunLog": "native",
    "NATIVE_AGENTS": "native",
    "train": "runner",
    "resume": "runner",
    "latest_checkpoint": "runner",
    "list_checkpoints": "runner",
    "Checkpoint": "runner",
    "EpisodeMetricsCallback": "callbacks",
    "CheckpointCallback": "callbacks",
    "ProgressBarCallback": "callbacks",
    "PeriodicEvalCallback": "callbacks",
}

__all__ = [
    "RunConfig",
    "evaluate",
    "load_run_config",
    "make_run_config",
    "record_video",
    "summarize_episodes",
    "t_interval",
    "wilson_interval",
    "write_run_config",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    """Import the runner, evaluation and callback names on first use."""
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

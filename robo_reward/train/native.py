"""The built-in agents in ``robo-reward train``: ``ppo-native``, ``ppo-multicritic`` and ``barfi``.

They train on a Gymnasium vector env (not an SB3 ``VecEnv``) and report once per update
through a metrics hook instead of SB3 callbacks. :class:`NativeRunLog` turns those reports
into the same run-folder records as the SB3 path: ``metrics.jsonl`` lines with the same
fields (learned-reward return, ground-truth env return, success rate over the last
:data:`~robo_reward.train.runner.METRICS_WINDOW` episodes), TensorBoard scalars under the
same ``rollout/`` tags (plus the agent's losses under ``train/``), checkpoints
``checkpoints/step_<N>.pt`` with the same JSON marker written last, periodic evaluations
in ``evals.jsonl``, and the progress bar.

Stable-Baselines3 is not needed for these agents.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import ConfigError
from ..agents import BUILTIN_AGENTS
from .records import EpisodeWindow
from .runlog import RunLog

#: ``robo-reward train --agent`` names of the built-in agents.
NATIVE_AGENTS: tuple[str, ...] = BUILTIN_AGENTS

#: Model files of built-in agents end with this (SB3's with ``.zip``).
NATIVE_SUFFIX = ".pt"


def is_native(agent: str) -> bool:
    """True for the built-in agents (:data:`NATIVE_AGENTS`)."""
    return agent in NATIVE_AGENTS


def model_suffix(agent: str) -> str:
    """The model file suffix of ``agent``: ``.pt`` for the built-in and the offline agents, ``.zip`` for SB3."""
    from .config import OFFLINE_AGENTS

    return NATIVE_SUFFIX if is_native(agent) or agent in OFFLINE_AGENTS else ".zip"


def native_preset(agent: str, family: str | None, overrides: dict[str, Any] | None,
                  torch_threads: int | None = None) -> dict[str, Any]:
    """Hyperparameters of a built-in agent: its preset file's ``default`` ← ``family`` ← ``overrides``.

    ``torch_threads`` (the run config's) goes into the PPO hyperparameters when set, so the
    agent uses it while it learns. Raises :class:`ConfigError` on a bad key or value.
    """
    if agent == "barfi":
        from ..agents.barfi import load_preset

        return load_preset(family, overrides, agent)
    if agent in ("ppo-native", "ppo-multicritic"):
        from ..agents.ppo import load_preset

        merged = dict(overrides or {})
        if torch_threads is not None and "torch_threads" not in merged:
            merged["torch_threads"] = int(torch_threads)
        return load_preset(family, merged, agent)
    raise ConfigError(f"{agent!r} is not a built-in agent; they are {', '.join(NATIVE_AGENTS)}")


def agent_class(agent: str) -> type:
    """The class of a built-in agent (``PPO`` or ``BARFI``)."""
    if agent == "barfi":
        from ..agents.barfi import BARFI

        return BARFI
    if agent in ("ppo-native", "ppo-multicritic"):
        from ..agents.ppo import PPO

        return PPO
    raise ConfigError(f"{agent!r} is not a built-in agent; they are {', '.join(NATIVE_AGENTS)}")


def make_native_agent(agent: str, venv: Any, *, family: str | None, hyperparameters: dict[str, Any],
                      seed: int, device: str) -> Any:
    """Build a built-in agent on ``venv`` from resolved hyperparameters (see :func:`native_preset`)."""
    if agent == "barfi":
        from ..agents.barfi import BARFI

        return BARFI(venv, hyperparameters, seed=seed, device=device)
    from ..agents.ppo import PPO

    return PPO(venv, hyperparameters, seed=seed, device=device)


def load_native_agent(agent: str, path: str | Path, env: Any = None, device: str = "auto") -> Any:
    """Load a built-in agent's checkpoint (``env=None``: a policy that only predicts)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no saved model at {path}")
    return agent_class(agent).load(path, env=env, device=device)


def build_gym_vec_env(card: Any, plugin: Any, config: Any, seed: int) -> Any:
    """The training env of a built-in agent: ``VectorRewardWrapper(SyncVectorEnv([...], SAME_STEP))``.

    With ``config.vectorization == "simulator"`` it is the simulator's own batch instead
    (:func:`~robo_reward.envs.make_vec_env` with ``vectorization="simulator"``: ManiSkill
    in ``SAME_STEP``, MJX in ``NEXT_STEP`` autoreset; the agents handle both).

    Sub-env ``i`` is made with ``seed + i`` (the agent also seeds the env on its first
    reset). ``SAME_STEP`` autoreset, as SB3's VecEnvs do: the reward of an episode's last
    step is computed on its real last observation from ``info["final_obs"]``. When the
    plugin scores frames, sub-envs render (``rgb_array``) and keep their terminal frame
    (``FinalFrameWrapper``). No episode-statistics wrapper: the agents count episodes.
    """
    import os

    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from ..envs import make_env, make_vec_env
    from ..wrappers import FinalFrameWrapper, VectorRewardWrapper

    if getattr(config, "vectorization", "sync") == "simulator":
        return make_vec_env(card, config.n_envs, plugin, config.mode, seed=seed, vectorization="simulator",
                            alpha=config.alpha, weights=config.weights)
    frames = "frames" in plugin.requires
    if frames:
        os.environ.setdefault("MUJOCO_GL", "egl")

    def factory(i: int) -> Callable[[], Any]:
        def make() -> Any:
            env = make_env(card, seed=seed + i, render_mode="rgb_array" if frames else None)
            return FinalFrameWrapper(env) if frames else env

        return make

    venv = SyncVectorEnv([factory(i) for i in range(config.n_envs)], autoreset_mode=AutoresetMode.SAME_STEP)
    return VectorRewardWrapper(venv, plugin, config.mode, alpha=config.alpha, weights=config.weights, task=card)


def _scalars(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, v in values.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v)):
            out[f"{prefix}/{key}"] = float(v)
        elif isinstance(v, dict):
            out.update(_scalars(f"{prefix}/{key}", v))
    return out


class NativeRunLog(RunLog):
    """The metrics hook of a built-in agent in a run: metrics, TensorBoard, checkpoints, evaluations, progress.

    Call it with each metrics dict the agent reports after an update; it returns
    ``False`` when a user hook asks to stop.

    Args:
        window: finished episodes averaged per line.
        hooks: user hooks called with the metrics dict after the records are written;
            one returning ``False`` stops training.

    The other arguments are :class:`~robo_reward.train.runlog.RunLog`'s (the agent object
    has ``save(path)`` and ``num_timesteps``; ``start_episodes`` counts the episodes
    finished in earlier segments).
    """

    checkpoint_suffix = NATIVE_SUFFIX

    def __init__(self, run_dir: Path, agent: Any, agent_name: str, total_steps: int, *, window: int = 20,
                 **kwargs: Any):
        self.recent = EpisodeWindow(window)
        self._extra: dict[str, Any] = {}
        super().__init__(run_dir, agent, agent_name, total_steps, bar_desc="train", **kwargs)

    # ------------------------------------------------------------------ the hook
    def __call__(self, metrics: dict[str, Any]) -> bool:
        steps = int(metrics["timesteps"])
        self.timesteps = steps
        for ep in metrics.get("episodes") or ():
            self.recent.add(ep["return"], ep.get("env_return"), ep["success"], ep["length"])
            self.episodes += 1
        if self.agent_name == "barfi":
            self._extra = {"gamma_phi": metrics.get("gamma_phi"), "phi_mean": metrics.get("phi_mean")}
        self._tensorboard(metrics)
        self._write_due_records(steps)
        postfix = None
        if self.bar is not None:
            s = self.stats()
            if s["window_episodes"]:
                postfix = {"learned": f"{s['learned_return']:.1f}", "succ": f"{s['success_rate']:.2f}"}
                if s["env_return"] is not None:
                    postfix["env"] = f"{s['env_return']:.1f}"
        self._advance_bar(steps, postfix)
        return self._call_hooks(metrics)

    def _tensorboard(self, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(metrics["timesteps"])
        s = self.stats()
        scalars = {
            "rollout/learned_return": s["learned_return"],
            "rollout/env_return": s["env_return"],
            "rollout/success_rate": s["success_rate"],
            "rollout/ep_length": s["ep_length"],
            "time/fps": metrics.get("fps"),
            "time/episodes": float(self.episodes),
        }
        skip = {"timesteps", "episodes", "episodes_total", "fps", "time_s", "learned_return", "env_return",
                "success_rate", "ep_length", "return", "primary_return", "phi_mean"}
        scalars.update(_scalars("train", {k: v for k, v in metrics.items() if k not in skip}))
        for k, v in enumerate(metrics.get("phi_mean") or ()):
            scalars[f"train/phi_{k + 1}"] = v
        for tag, value in scalars.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    @property
    def summary_extra(self) -> dict[str, Any] | None:
        """Agent facts for ``summary.json`` (BARFI: the learned discount and blend weights), or ``None``."""
        return {k: v for k, v in self._extra.items() if v is not None} or None

    # ------------------------------------------------------------------ records
    def stats(self) -> dict[str, Any]:
        """Means over the last ``window`` finished episodes (``None`` before the first one)."""
        return self.recent.stats()

    def write_line(self) -> dict[str, Any]:
        """Write one ``metrics.jsonl`` line now (the same fields as the SB3 path) and return it."""
        record = {**self._line_head(self.elapsed), "episodes": self.episodes, **self.stats()}
        if self._extra:
            record.update({k: v for k, v in self._extra.items() if v is not None})
        return self._append_line(record)


__all__ = [
    "NATIVE_AGENTS",
    "NativeRunLog",
    "agent_class",
    "build_gym_vec_env",
    "is_native",
    "load_native_agent",
    "make_native_agent",
    "model_suffix",
    "native_preset",
]

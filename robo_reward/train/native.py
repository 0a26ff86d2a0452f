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
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..agents import BUILTIN_AGENTS
from .records import append_jsonl, finite_or_none, mean_or_none, write_json_atomic

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

    Sub-env ``i`` is made with ``seed + i`` (the agent also seeds the env on its first
    reset). ``SAME_STEP`` autoreset, as SB3's VecEnvs do: the reward of an episode's last
    step is computed on its real last observation from ``info["final_obs"]``. When the
    plugin scores frames, sub-envs render (``rgb_array``) and keep their terminal frame
    (``FinalFrameWrapper``). No episode-statistics wrapper: the agents count episodes.
    """
    import os

    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from ..envs import make_env
    from ..wrappers import FinalFrameWrapper, VectorRewardWrapper

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


class NativeRunLog:
    """The metrics hook of a built-in agent in a run: metrics, TensorBoard, checkpoints, evaluations, progress.

    Call it with each metrics dict the agent reports after an update; it returns
    ``False`` when a user hook asks to stop.

    Args:
        run_dir: the run folder.
        agent: the agent object (``save(path)``, ``num_timesteps``).
        agent_name: its ``--agent`` name (for the TensorBoard folder).
        total_steps: the run's step target (for the progress bar).
        log_freq: steps between ``metrics.jsonl`` lines.
        checkpoint_freq: steps between checkpoints (0: none, except :meth:`save_checkpoint` calls).
        window: finished episodes averaged per line.
        segment: the training segment (0, then +1 per resume).
        start_timesteps: the step counter when this segment started.
        wall_time_offset: training seconds spent in earlier segments.
        start_episodes: episodes finished in earlier segments.
        tensorboard_dir: where to write TensorBoard events (``None``: none).
        evaluate_fn: ``evaluate_fn(agent)`` → an evaluation dict, run every ``eval_freq`` steps.
        eval_freq: steps between evaluations (0: never).
        progress: show a progress bar.
        hooks: user hooks called with the metrics dict after the records are written;
            one returning ``False`` stops training.
    """

    def __init__(
        self,
        run_dir: Path,
        agent: Any,
        agent_name: str,
        total_steps: int,
        *,
        log_freq: int,
        checkpoint_freq: int,
        window: int = 20,
        segment: int = 0,
        start_timesteps: int = 0,
        wall_time_offset: float = 0.0,
        start_episodes: int = 0,
        tensorboard_dir: Path | None = None,
        evaluate_fn: Callable[[Any], dict[str, Any]] | None = None,
        eval_freq: int = 0,
        progress: bool = True,
        hooks: Sequence[Callable[[dict[str, Any]], Any]] = (),
    ):
        self.run_dir = Path(run_dir)
        self.agent = agent
        self.agent_name = agent_name
        self.total_steps = int(total_steps)
        self.log_freq = int(log_freq)
        self.checkpoint_freq = int(checkpoint_freq)
        self.segment = int(segment)
        self.start_timesteps = int(start_timesteps)
        self.wall_time_offset = float(wall_time_offset)
        self.episodes = int(start_episodes)
        self.evaluate_fn = evaluate_fn
        self.eval_freq = int(eval_freq)
        self.hooks = list(hooks)
        self.learned: deque[float] = deque(maxlen=window)
        self.env: deque[float] = deque(maxlen=window)
        self.success: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.timesteps = self.start_timesteps
        self.lines = 0
        self.saved: list[Path] = []
        self.eval_results: list[dict[str, Any]] = []
        self._last_log = self._last_ckpt = self._last_eval = self.start_timesteps
        self._extra: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self.writer: Any = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(tensorboard_dir) / f"{agent_name}_{self.segment + 1}"),
                                        flush_secs=10)
        self.bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total_steps, initial=min(self.start_timesteps, self.total_steps), unit="step",
                            dynamic_ncols=True, desc="train")

    # ------------------------------------------------------------------ timing
    @property
    def last_checkpoint_steps(self) -> int:
        """The step count of the last checkpoint saved (the segment's start before the first)."""
        return self._last_ckpt

    @property
    def elapsed(self) -> float:
        """Seconds of training in this segment so far."""
        return time.perf_counter() - self._t0

    @property
    def total_train_time(self) -> float:
        """Training seconds over all segments (earlier ones from the checkpoint)."""
        return self.wall_time_offset + self.elapsed

    def start(self) -> None:
        """Restart the clock (call right before ``learn``)."""
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ the hook
    def __call__(self, metrics: dict[str, Any]) -> bool:
        steps = int(metrics["timesteps"])
        self.timesteps = steps
        for ep in metrics.get("episodes") or ():
            self.learned.append(float(ep["return"]))
            if ep.get("env_return") is not None:
                self.env.append(float(ep["env_return"]))
            self.success.append(float(ep["success"]))
            self.lengths.append(int(ep["length"]))
            self.episodes += 1
        if self.agent_name == "barfi":
            self._extra = {"gamma_phi": metrics.get("gamma_phi"), "phi_mean": metrics.get("phi_mean")}
        self._tensorboard(metrics)
        if steps - self._last_log >= self.log_freq:
            self.write_line()
        if self.checkpoint_freq > 0 and steps - self._last_ckpt >= self.checkpoint_freq and steps < self.total_steps:
            self.save_checkpoint()
        if self.evaluate_fn is not None and self.eval_freq > 0 and steps - self._last_eval >= self.eval_freq:
            self._evaluate()
        if self.bar is not None:
            self.bar.update(max(0, min(steps, self.total_steps) - self.bar.n))
            s = self.stats()
            if s["window_episodes"]:
                post = {"learned": f"{s['learned_return']:.1f}", "succ": f"{s['success_rate']:.2f}"}
                if s["env_return"] is not None:
                    post["env"] = f"{s['env_return']:.1f}"
                self.bar.set_postfix(post, refresh=False)
        stop = False
        for hook in self.hooks:
            if hook(metrics) is False:
                stop = True
        return not stop

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
        return {
            "learned_return": finite_or_none(mean_or_none(self.learned)),
            "env_return": finite_or_none(mean_or_none(self.env)),
            "success_rate": finite_or_none(mean_or_none(self.success)),
            "ep_length": finite_or_none(mean_or_none(self.lengths)),
            "window_episodes": len(self.learned),
        }

    def write_line(self) -> dict[str, Any]:
        """Write one ``metrics.jsonl`` line now (the same fields as the SB3 path) and return it."""
        elapsed = self.elapsed
        done_here = self.timesteps - self.start_timesteps
        record = {
            "timesteps": self.timesteps,
            "segment": self.segment,
            "time_s": round(self.wall_time_offset + elapsed, 3),
            "steps_per_s": round(done_here / elapsed, 1) if elapsed > 0 else None,
            "episodes": self.episodes,
            **self.stats(),
        }
        if self._extra:
            record.update({k: v for k, v in self._extra.items() if v is not None})
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        self._last_log = self.timesteps
        self.lines += 1
        return record

    def save_checkpoint(self) -> Path:
        """Save ``checkpoints/step_<N>.pt`` and then its JSON marker; return the marker's path."""
        directory = self.run_dir / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        steps = int(self.agent.num_timesteps)
        stem = f"step_{steps:09d}"
        model = directory / f"{stem}{NATIVE_SUFFIX}"
        self.agent.save(model)  # written through a temporary file
        info = {
            "timesteps": steps,
            "model": model.name,
            "replay_buffer": None,
            "segment": self.segment,
            "train_time_s": round(self.total_train_time, 3),
            "episodes": self.episodes,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        json_path = directory / f"{stem}.json"
        write_json_atomic(json_path, info)
        self._last_ckpt = steps
        self.saved.append(json_path)
        if self.writer is not None:
            self.writer.flush()
        return json_path

    def _evaluate(self) -> None:
        assert self.evaluate_fn is not None
        self._last_eval = self.timesteps
        res = self.evaluate_fn(self.agent)
        row = {
            "timesteps": self.timesteps,
            "success_rate": res["success_rate"],
            "success_ci": res["success_ci"],
            "return_mean": res["return_mean"],
            "return_ci": res["return_ci"],
            "episodes": res["episodes"],
        }
        append_jsonl(self.run_dir / "evals.jsonl", row)
        self.eval_results.append(row)
        if self.writer is not None:
            self.writer.add_scalar("eval/env_return", float(res["return_mean"]), self.timesteps)
            self.writer.add_scalar("eval/success_rate", float(res["success_rate"]), self.timesteps)

    def finish(self) -> None:
        """Write the last line (if steps were taken since), close the bar and the writer."""
        if self.timesteps > self._last_log:
            self.write_line()
        self.close()

    def close(self) -> None:
        """Close the progress bar and flush and close TensorBoard."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


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

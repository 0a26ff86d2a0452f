"""Stable-Baselines3 callbacks used by the runner: episode metrics, checkpoints, progress, evaluation.

All of them work for on-policy (PPO) and off-policy (SAC, TD3) agents and for any
number of sub-environments. They read what the reward wrapper puts in each step's
``info``: ``env_reward`` (the environment's own, ground-truth reward) and
``is_success`` (from the task card's success signal).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from ..core.errors import RoboRewardError
from .records import EpisodeWindow, SegmentClock, append_jsonl, line_head
from .records import mean_or_none as _mean

__all__ = [
    "CheckpointCallback",
    "EpisodeMetricsCallback",
    "PeriodicEvalCallback",
    "ProgressBarCallback",
    "append_jsonl",
]


class EpisodeMetricsCallback(SegmentClock, BaseCallback):
    """Track episodes of the training envs and write ``metrics.jsonl`` every ``log_freq`` steps.

    For every finished episode it records the return of the reward the agent learns
    from (``learned_return``), the return of the environment's own reward
    (``env_return``, the ground truth), whether ``info["is_success"]`` was true at any
    step of it, and its length. Each line of ``metrics.jsonl`` reports the means over
    the last ``window`` finished episodes side by side, plus counters. The same values
    go to the SB3 logger (TensorBoard) under ``rollout/``.

    Args:
        path: the ``metrics.jsonl`` file (appended to, never truncated).
        log_freq: steps between lines.
        window: episodes averaged per line.
        segment: which training segment this is (0, then +1 per resume).
        start_timesteps: the step counter at the start of this segment.
        wall_time_offset: training seconds already spent in earlier segments.
        start_episodes: episodes already finished in earlier segments.
    """

    def __init__(
        self,
        path: str | Path,
        log_freq: int,
        window: int = 20,
        segment: int = 0,
        start_timesteps: int = 0,
        wall_time_offset: float = 0.0,
        start_episodes: int = 0,
    ):
        super().__init__()
        self.path = Path(path)
        self.log_freq = int(log_freq)
        self.window = int(window)
        self.segment = int(segment)
        self.start_timesteps = int(start_timesteps)
        self.wall_time_offset = float(wall_time_offset)
        self.recent = EpisodeWindow(self.window)
        self.episodes = int(start_episodes)
        self.lines = 0
        self._last_log = self.start_timesteps
        self._t0 = time.perf_counter()
        self._run_learned: np.ndarray | None = None
        self._run_env: np.ndarray | None = None
        self._run_success: np.ndarray | None = None
        self._run_len: np.ndarray | None = None

    def _init_callback(self) -> None:
        n = self.training_env.num_envs
        self._run_learned = np.zeros(n, dtype=np.float64)
        self._run_env = np.zeros(n, dtype=np.float64)
        self._run_success = np.zeros(n, dtype=bool)
        self._run_len = np.zeros(n, dtype=np.int64)
        self._t0 = time.perf_counter()

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        self._last_log = max(self._last_log, int(self.num_timesteps))

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64).reshape(-1)
        dones = np.asarray(self.locals["dones"], dtype=bool).reshape(-1)
        infos = self.locals["infos"]
        env_r = np.empty_like(rewards)
        for i, info in enumerate(infos):
            if "env_reward" not in info:
                raise RoboRewardError(
                    "the step info has no 'env_reward'; wrap the training env with robo_reward.SB3RewardWrapper"
                )
            env_r[i] = float(info["env_reward"])
            if info.get("is_success", False):
                self._run_success[i] = True
        self._run_learned += rewards
        self._run_env += env_r
        self._run_len += 1
        for i in np.flatnonzero(dones):
            self.recent.add(self._run_learned[i], self._run_env[i], self._run_success[i], self._run_len[i])
            self.episodes += 1
            self._run_learned[i] = self._run_env[i] = 0.0
            self._run_success[i] = False
            self._run_len[i] = 0
        if len(self.recent):
            self.logger.record("rollout/learned_return", _mean(self.recent.learned))
            self.logger.record("rollout/env_return", _mean(self.recent.env))
            self.logger.record("rollout/success_rate", _mean(self.recent.success))
            self.logger.record("rollout/ep_length", _mean(self.recent.lengths))
        if self.num_timesteps - self._last_log >= self.log_freq:
            self.write_line()
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps > self._last_log:
            self.write_line()

    def stats(self) -> dict[str, Any]:
        """Means over the last ``window`` finished episodes (``None`` before the first one)."""
        return self.recent.stats()

    def write_line(self) -> dict[str, Any]:
        """Write one ``metrics.jsonl`` line now and return it."""
        record = {
            **line_head(self.num_timesteps, self.segment, self.start_timesteps, self.wall_time_offset, self.elapsed),
            "episodes": self.episodes,
            **self.stats(),
        }
        append_jsonl(self.path, record)
        self._last_log = int(self.num_timesteps)
        self.lines += 1
        return record


class CheckpointCallback(BaseCallback):
    """Save a resumable checkpoint every ``freq`` steps, at a rollout boundary.

    A checkpoint is ``checkpoints/step_<N>.zip`` (the model), for off-policy agents
    ``step_<N>_replay_buffer.pkl``, and ``step_<N>.json`` with the step counter. The
    JSON is written last, atomically, so a checkpoint counts only once it is complete.
    Checkpoints are taken when a rollout starts, i.e. right after the previous policy
    update, so the saved parameters have seen every step the counter says.

    Args:
        directory: the ``checkpoints`` folder.
        freq: steps between checkpoints (0: never, except :meth:`save` calls).
        save_replay_buffer: also save the replay buffer (off-policy agents).
        metrics: the metrics callback, for elapsed training time and episode counts.
        segment: the training segment (recorded in the JSON).
        keep: how many checkpoints to keep (older ones are deleted; 0 keeps all).
    """

    def __init__(
        self,
        directory: str | Path,
        freq: int,
        save_replay_buffer: bool = False,
        metrics: EpisodeMetricsCallback | None = None,
        segment: int = 0,
        keep: int = 0,
    ):
        super().__init__()
        self.directory = Path(directory)
        self.freq = int(freq)
        self.save_replay_buffer = bool(save_replay_buffer)
        self.metrics = metrics
        self.segment = int(segment)
        self.keep = int(keep)
        self._last = 0
        self.saved: list[Path] = []

    def _on_training_start(self) -> None:
        self._last = int(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        if self.freq > 0 and self.num_timesteps - self._last >= self.freq:
            self.save()

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        """Save a checkpoint of the model now; return the path of its JSON."""
        self.directory.mkdir(parents=True, exist_ok=True)
        steps = int(self.model.num_timesteps)
        stem = f"step_{steps:09d}"
        zip_path = self.directory / f"{stem}.zip"
        tmp = self.directory / f"{stem}.zip.tmp"
        self.model.save(str(tmp))
        tmp.replace(zip_path)
        buf_name = None
        if self.save_replay_buffer and getattr(self.model, "replay_buffer", None) is not None:
            buf_path = self.directory / f"{stem}_replay_buffer.pkl"
            tmp_buf = self.directory / f"{stem}_replay_buffer.pkl.tmp"
            self.model.save_replay_buffer(str(tmp_buf))
            tmp_buf.replace(buf_path)
            buf_name = buf_path.name
        info = {
            "timesteps": steps,
            "model": zip_path.name,
            "replay_buffer": buf_name,
            "segment": self.segment,
            "train_time_s": round(self.metrics.total_train_time, 3) if self.metrics else None,
            "episodes": self.metrics.episodes if self.metrics else None,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        json_path = self.directory / f"{stem}.json"
        tmp_json = self.directory / f"{stem}.json.tmp"
        tmp_json.write_text(json.dumps(info, indent=2))
        tmp_json.replace(json_path)
        self._last = steps
        self.saved.append(json_path)
        self._prune()
        return json_path

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        all_json = sorted(self.directory.glob("step_*.json"))
        for old in all_json[: -self.keep]:
            stem = old.name[: -len(".json")]
            for p in (old, self.directory / f"{stem}.zip", self.directory / f"{stem}_replay_buffer.pkl"):
                p.unlink(missing_ok=True)


class ProgressBarCallback(BaseCallback):
    """A tqdm progress bar over the total step target, showing the latest episode means.

    Args:
        total: the step target of the whole run.
        metrics: where the learned/env return and success rate shown come from.
        disable: switch the bar off (e.g. ``--no-progress``).
    """

    def __init__(self, total: int, metrics: EpisodeMetricsCallback | None = None, disable: bool = False):
        super().__init__()
        self.total = int(total)
        self.metrics = metrics
        self.disable = disable
        self.bar: Any = None
        self._shown = 0
        self._last_postfix = 0.0

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self._shown = int(self.num_timesteps)
        self.bar = tqdm(
            total=self.total, initial=self._shown, unit="step", dynamic_ncols=True, disable=self.disable, desc="train"
        )

    def _on_step(self) -> bool:
        if self.bar is None:
            return True
        now = int(self.num_timesteps)
        self.bar.update(max(0, min(now, self.total) - self._shown))
        self._shown = max(self._shown, min(now, self.total))
        t = time.perf_counter()
        if self.metrics is not None and t - self._last_postfix > 1.0:
            s = self.metrics.stats()
            if s["window_episodes"]:
                self.bar.set_postfix(
                    learned=f"{s['learned_return']:.1f}", env=f"{s['env_return']:.1f}", succ=f"{s['success_rate']:.2f}",
                    refresh=False,
                )
            self._last_postfix = t
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PeriodicEvalCallback(BaseCallback):
    """Run a deterministic evaluation every ``freq`` steps; append it to ``evals.jsonl`` and TensorBoard.

    Args:
        evaluate_fn: called as ``evaluate_fn(model)`` and returns :func:`~robo_reward.train.evaluate.evaluate`'s dict.
        freq: steps between evaluations.
        path: the ``evals.jsonl`` file.
    """

    def __init__(self, evaluate_fn: Callable[[Any], dict[str, Any]], freq: int, path: str | Path):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.freq = int(freq)
        self.path = Path(path)
        self._last = 0
        self.results: list[dict[str, Any]] = []

    def _on_training_start(self) -> None:
        self._last = int(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        if self.freq > 0 and self.num_timesteps - self._last >= self.freq:
            self._last = int(self.num_timesteps)
            res = self.evaluate_fn(self.model)
            row = {
                "timesteps": int(self.num_timesteps),
                "success_rate": res["success_rate"],
                "success_ci": res["success_ci"],
                "return_mean": res["return_mean"],
                "return_ci": res["return_ci"],
                "episodes": res["episodes"],
            }
            append_jsonl(self.path, row)
            self.results.append(row)
            self.logger.record("eval/env_return", res["return_mean"])
            self.logger.record("eval/success_rate", res["success_rate"])

    def _on_step(self) -> bool:
        return True

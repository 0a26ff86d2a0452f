"""The records of a run whose agent reports to a hook instead of SB3 callbacks.

:class:`RunLog` holds what the built-in agents' :class:`~robo_reward.train.native.NativeRunLog`
and the offline agents' :class:`~robo_reward.train.offline.OfflineRunLog` share: the
training clock, the progress bar, TensorBoard, ``metrics.jsonl`` line bookkeeping,
checkpoints ``checkpoints/step_<N>.pt`` with their JSON marker written last, periodic
evaluations in ``evals.jsonl``, user hooks, and closing it all. The subclasses say what
a line, the summary's ``train`` block and the TensorBoard scalars hold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .records import SegmentClock, append_jsonl, line_head, write_json_atomic


class RunLog(SegmentClock):
    """Shared records of a hook-driven run: clock, progress bar, TensorBoard, lines, checkpoints, evaluations.

    Subclasses implement :meth:`write_line` and :meth:`stats`, and may override
    :meth:`_checkpoint_fields` (more fields in a checkpoint's JSON marker).

    Args:
        run_dir: the run folder.
        agent: the agent object (``save(path)``, ``num_timesteps``).
        agent_name: its ``--agent`` name (for the TensorBoard folder).
        total_steps: the run's step target (for the progress bar).
        log_freq: steps between ``metrics.jsonl`` lines.
        checkpoint_freq: steps between checkpoints (0: none, except :meth:`save_checkpoint` calls).
        segment: the training segment (0, then +1 per resume).
        start_timesteps: the step counter when this segment started.
        wall_time_offset: training seconds spent in earlier segments.
        start_episodes: episodes finished in earlier segments.
        tensorboard_dir: where to write TensorBoard events (``None``: none).
        evaluate_fn: ``evaluate_fn(agent)`` → an evaluation dict, run every ``eval_freq`` steps.
        eval_freq: steps between evaluations (0: never).
        progress: show a progress bar.
        hooks: user functions called with a metrics dict; one returning ``False`` stops training.
        bar_desc: the progress bar's label.
    """

    #: Suffix of checkpoint model files.
    checkpoint_suffix = ".pt"
    #: Whether due evaluations run before the line and the checkpoint of the same step (else after).
    eval_before_line = False
    #: Whether ``evals.jsonl`` rows carry the evaluation's ``length_mean``.
    eval_length = False

    def __init__(
        self,
        run_dir: Path,
        agent: Any,
        agent_name: str,
        total_steps: int,
        *,
        log_freq: int,
        checkpoint_freq: int,
        segment: int = 0,
        start_timesteps: int = 0,
        wall_time_offset: float = 0.0,
        start_episodes: int = 0,
        tensorboard_dir: Path | None = None,
        evaluate_fn: Callable[[Any], dict[str, Any]] | None = None,
        eval_freq: int = 0,
        progress: bool = True,
        hooks: Sequence[Callable[[dict[str, Any]], Any]] = (),
        bar_desc: str = "train",
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
        self.timesteps = self.start_timesteps
        self.lines = 0
        self.saved: list[Path] = []
        self.eval_results: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        self._last_log = self._last_ckpt = self._last_eval = self.start_timesteps
        self._t0 = time.perf_counter()
        self._eval_time = 0.0
        self.writer: Any = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(tensorboard_dir) / f"{agent_name}_{self.segment + 1}"),
                                        flush_secs=10)
        self.bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total_steps, initial=min(self.start_timesteps, self.total_steps),
                            unit="step", dynamic_ncols=True, desc=bar_desc)

    # ------------------------------------------------------------------ timing
    @property
    def last_checkpoint_steps(self) -> int:
        """The step count of the last checkpoint saved (the segment's start before the first)."""
        return self._last_ckpt

    def start(self) -> None:
        """Restart the clock (call right before training)."""
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ per report
    def _write_due_records(self, steps: int) -> None:
        """Write the line, the checkpoint and the evaluation that are due at ``steps``."""
        eval_due = self.evaluate_fn is not None and self.eval_freq > 0 and steps - self._last_eval >= self.eval_freq
        if eval_due and self.eval_before_line:
            self._evaluate()
        if steps - self._last_log >= self.log_freq:
            self.write_line()
        if self.checkpoint_freq > 0 and steps - self._last_ckpt >= self.checkpoint_freq and steps < self.total_steps:
            self.save_checkpoint()
        if eval_due and not self.eval_before_line:
            self._evaluate()

    def _advance_bar(self, steps: int, postfix: dict[str, str] | None) -> None:
        """Move the progress bar to ``steps`` and show ``postfix`` (``None``: keep the current one)."""
        if self.bar is None:
            return
        self.bar.update(max(0, min(steps, self.total_steps) - self.bar.n))
        if postfix is not None:
            self.bar.set_postfix(postfix, refresh=False)

    def _call_hooks(self, metrics: dict[str, Any]) -> bool:
        """Call every user hook with ``metrics``; ``False`` when one of them asks to stop."""
        stop = False
        for hook in self.hooks:
            if hook(metrics) is False:
                stop = True
        return not stop

    # ------------------------------------------------------------------ records
    def stats(self) -> dict[str, Any]:
        """The summary's ``train`` block."""
        raise NotImplementedError

    def write_line(self) -> dict[str, Any]:
        """Write one ``metrics.jsonl`` line now and return it."""
        raise NotImplementedError

    def _line_head(self, elapsed: float) -> dict[str, Any]:
        """The leading fields of a line (see :func:`~robo_reward.train.records.line_head`)."""
        return line_head(self.timesteps, self.segment, self.start_timesteps, self.wall_time_offset, elapsed)

    def _append_line(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` to ``metrics.jsonl``, count it and return it."""
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        self._last_log = self.timesteps
        self.lines += 1
        return record

    def _checkpoint_fields(self) -> dict[str, Any]:
        """More fields for a checkpoint's JSON marker (before ``saved_at``)."""
        return {}

    def save_checkpoint(self) -> Path:
        """Save ``checkpoints/step_<N>.pt`` and then its JSON marker; return the marker's path."""
        directory = self.run_dir / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        steps = int(self.agent.num_timesteps)
        stem = f"step_{steps:09d}"
        model = directory / f"{stem}{self.checkpoint_suffix}"
        self.agent.save(model)  # written through a temporary file
        info = {
            "timesteps": steps,
            "model": model.name,
            "replay_buffer": None,
            "segment": self.segment,
            "train_time_s": round(self.total_train_time, 3),
            "episodes": self.episodes,
            **self._checkpoint_fields(),
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
        """Run ``evaluate_fn`` now; write its row to ``evals.jsonl`` and TensorBoard and keep it as :attr:`last_eval`."""
        assert self.evaluate_fn is not None
        self._last_eval = self.timesteps
        t0 = time.perf_counter()
        res = self.evaluate_fn(self.agent)
        self._eval_time += time.perf_counter() - t0
        row = {
            "timesteps": self.timesteps,
            "success_rate": res["success_rate"],
            "success_ci": res["success_ci"],
            "return_mean": res["return_mean"],
            "return_ci": res["return_ci"],
        }
        if self.eval_length:
            row["length_mean"] = res.get("length_mean")
        row["episodes"] = res["episodes"]
        append_jsonl(self.run_dir / "evals.jsonl", row)
        self.eval_results.append(row)
        self.last_eval = row
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


__all__ = ["RunLog"]

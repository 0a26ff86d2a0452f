"""The control loop: run a policy on a robot at a fixed rate, behind the safety layer.

:class:`ControlLoop` (or :func:`run_policy`; on the command line ``robo-reward deploy
run``) repeats, every ``1 / rate_hz`` seconds:

1. read an observation from the robot;
2. if it is new and finite, run the policy; pass its action through the
   :class:`~robo_reward.deploy.safety.SafetyLayer` (non-finite block, clip, rate limit);
3. send the action; log the step.

Ticks are kept on an absolute schedule (``t0 + k * period``): the loop sleeps with
``time.sleep`` until ``spin_s`` before the tick and busy-waits the rest, which keeps
the period error to tens of microseconds on an idle machine. A cycle that ends after
the next tick is a *deadline miss*; after more than a whole period of lateness the
schedule skips ahead instead of bursting to catch up.

What happens on faults (every case is logged as an intervention with its reason):

================================  =============================================================
fault                             what the runtime does
================================  =============================================================
policy action NaN/inf             not sent; the last safe action is sent again
                                  (``on_nonfinite_action``: ``hold``/``safe``/``stop``)
policy action out of bounds       clipped (``clipped``), continues
policy action changes too fast    rate-limited (``rate_limited``), continues
no reply in time (robot stalls)   ``observation_timeout``: nothing new is sent (the robot keeps its
                                  last command; ``on_stale_observation: safe`` sends the safe action);
                                  recovers when observations come back
repeated reading (stale ``seq``)  ``stale_observation``: as above
observation with NaN/inf          ``nonfinite_observation``: as above (the policy is not run)
malformed message                 ``malformed_message``: as above; the client reconnects on its next call
no new observation for            **stop** (``watchdog``): send the safe action, end the run
``watchdog_periods`` periods
``max_consecutive_faults`` in a   **stop** (``too_many_faults``)
row
robot disconnects                 **stop** (``disconnect``): the safe action is sent on a new
                                  connection when possible
policy raises                     **stop** (``policy_exception``)
SIGINT / SIGTERM (Ctrl-C)         **stop** (``operator_stop``)
any other exception               **stop** (``exception``), then re-raised
================================  =============================================================

A run that ends without a safety stop (episode done, step or time limit) reports
``stop_reason == "completed"``; when the robot's episode did not end on its own, the
safe action is sent once at the end.

Logs (with ``log_dir``): ``episode_0000.npz``... one per episode (an offline dataset
in the D4RL layout — ``observations``, ``actions``, ``next_observations``,
``rewards``, ``terminals``, ``timeouts`` — plus per-step flags and timings; see
:func:`load_episode` and :func:`episodes_to_dataset`), ``interventions.jsonl`` (written
as they happen) and ``deploy_report.json`` (the :class:`DeployReport`).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..core.errors import ConfigError
from .errors import ProtocolError, RobotDisconnected, RobotError, RobotTimeout
from .robot import action_layout, observation_layout
from .safety import DeploySettings, Intervention, SafetyConfig, SafetyLayer

#: Reasons a run stops early (besides ``completed``).
STOP_REASONS = (
    "watchdog", "too_many_faults", "nonfinite_action", "policy_exception", "disconnect", "operator_stop", "exception",
)

_perf = time.perf_counter


def precise_sleep_until(deadline: float, spin_s: float = 2e-4, should_stop: Callable[[], bool] | None = None) -> float:
    """Sleep until ``time.perf_counter() >= deadline``; return how late it woke (seconds, ``>= 0``).

    Sleeps with ``time.sleep`` (in slices of at most 50 ms, checking ``should_stop``)
    until ``spin_s`` before the deadline, then busy-waits.
    """
    while True:
        left = deadline - _perf()
        if left <= 0:
            return -left
        if should_stop is not None and should_stop():
            return 0.0
        if left > spin_s:
            time.sleep(min(left - spin_s, 0.05))


def set_realtime_priority(priority: int | None) -> tuple[Any, str]:
    """Run the calling thread with ``SCHED_FIFO`` at ``priority`` (1-99); return ``(restore_token, note)``.

    Needs Linux and ``CAP_SYS_NICE`` (or root); otherwise nothing changes and the note
    says why. Pass the token to :func:`restore_priority` to undo.
    """
    import os

    if priority is None:
        return None, "normal scheduling"
    if not hasattr(os, "sched_setscheduler"):
        return None, "SCHED_FIFO is not available on this platform"
    try:
        old = (os.sched_getscheduler(0), os.sched_getparam(0))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (OSError, ValueError) as exc:
        return None, f"could not switch to SCHED_FIFO ({exc}); running with normal scheduling"
    return old, f"SCHED_FIFO priority {int(priority)}"


def restore_priority(token: Any) -> None:
    """Undo :func:`set_realtime_priority`."""
    import os

    if token is not None:
        try:
            os.sched_setscheduler(0, token[0], token[1])
        except OSError:
            pass


def _stats(values: Sequence[float] | np.ndarray, scale: float = 1e3) -> dict[str, float] | None:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None
    p50, p99 = np.percentile(a, [50, 99])
    return {"p50": float(p50 * scale), "p99": float(p99 * scale), "mean": float(a.mean() * scale),
            "max": float(a.max() * scale), "n": int(a.size)}


def timing_summary(
    starts: Sequence[float], segments: Sequence[int], period: float, *,
    lateness: Sequence[float] = (), inference: Sequence[float] = (), observation: Sequence[float] = (),
    action: Sequence[float] = (), work: Sequence[float] = (), deadline_misses: int = 0,
) -> dict[str, Any]:
    """The timing report of a run (milliseconds; ``period_error_pct`` in percent of the period).

    Args:
        starts: cycle start times (seconds).
        segments: the episode index of each cycle (periods are measured within episodes).
        period: the target period (seconds).
        lateness, inference, observation, action, work: per-cycle durations (seconds; NaN = none).
        deadline_misses: cycles that ended after the next tick.
    """
    s = np.asarray(starts, dtype=np.float64)
    seg = np.asarray(segments)
    periods = np.diff(s)[np.diff(seg) == 0] if s.size > 1 else np.zeros(0)
    err = np.abs(periods - period) / period
    n = int(s.size)
    return {
        "rate_hz": 1.0 / period,
        "target_period_ms": period * 1e3,
        "cycles": n,
        "period_ms": _stats(periods),
        "period_error_pct": _stats(err, 100.0),
        "start_lateness_ms": _stats(lateness),
        "inference_ms": _stats(inference),
        "observation_ms": _stats(observation),
        "action_ms": _stats(action),
        "cycle_work_ms": _stats(work),
        "deadline_misses": int(deadline_misses),
        "deadline_miss_pct": 100.0 * deadline_misses / n if n else 0.0,
    }


@dataclasses.dataclass
class DeployReport:
    """What a run did.

    Attributes:
        stop_reason: ``completed`` or one of :data:`STOP_REASONS`.
        detail: the stop's reason in words.
        steps: control cycles run (all episodes).
        episodes: one dict per episode (``index``, ``steps``, ``end``, ``return``, ``success``, ``log``).
        interventions: count of each intervention kind.
        timing: :func:`timing_summary`.
        rate_hz: the control rate.
        log_dir: where the logs are (``None``: not logged).
        final_action: the action sent when the run ended (``None``: none).
        error: the traceback of an unexpected exception.
        scheduling: how the loop's thread was scheduled (``normal scheduling``, ``SCHED_FIFO priority N``).
    """

    stop_reason: str = "completed"
    detail: str = ""
    steps: int = 0
    episodes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    interventions: dict[str, int] = dataclasses.field(default_factory=dict)
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)
    rate_hz: float = 0.0
    log_dir: str | None = None
    final_action: list[float] | None = None
    error: str | None = None
    scheduling: str = "normal scheduling"

    @property
    def safety_stop(self) -> bool:
        """Whether the run was stopped by the safety layer, a fault or the operator."""
        return self.stop_reason != "completed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        d = dataclasses.asdict(self)
        d["safety_stop"] = self.safety_stop
        return d


class _Stop(Exception):
    """Internal: end the run with a safety stop."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class _Episode:
    """Per-step records of one episode (lists, stacked when written)."""

    def __init__(self, index: int, obs_dim: int, action_dim: int):
        self.index = index
        self.D, self.A = obs_dim, action_dim
        self.rows: list[dict[str, Any]] = []
        self.last_action_row: int | None = None
        self.end = ""

    def add(self, **row: Any) -> dict[str, Any]:
        self.rows.append(row)
        return row

    def complete_transition(self, obs: np.ndarray | None, raw: Mapping[str, Any] | None) -> None:
        """Give the last row that sent an action its next observation, reward and end flags."""
        i = self.last_action_row
        if i is None:
            return
        row = self.rows[i]
        if row.get("next_obs") is not None:
            return
        row["next_obs"] = obs
        if raw is not None:
            r = raw.get("_reward")
            row["reward"] = float(r) if r is not None else np.nan
            row["terminal"] = bool(raw.get("_terminated", False))
            row["timeout"] = bool(raw.get("_truncated", False))
            row["success"] = raw.get("_success")
        self.last_action_row = None

    def arrays(self) -> dict[str, np.ndarray]:
        T, D, A = len(self.rows), self.D, self.A
        nan_d, nan_a = np.full(D, np.nan, np.float32), np.full(A, np.nan, np.float32)

        def stack(key: str, empty: np.ndarray, n: int) -> np.ndarray:
            out = np.empty((T, n), np.float32)
            for i, r in enumerate(self.rows):
                v = r.get(key)
                out[i] = empty if v is None else v
            return out

        def col(key: str, dtype: Any, default: Any) -> np.ndarray:
            return np.array([default if r.get(key) is None else r[key] for r in self.rows], dtype=dtype).reshape(T)

        out = {
            "observations": stack("obs", nan_d, D),
            "actions": stack("action", nan_a, A),
            "policy_actions": stack("policy_action", nan_a, A),
            "next_observations": stack("next_obs", nan_d, D),
            "rewards": col("reward", np.float32, np.nan),
            "terminals": col("terminal", bool, False),
            "timeouts": col("timeout", bool, False),
            "success": col("success", bool, False),
            "action_sent": col("sent", bool, False),
            "policy_ran": col("ran", bool, False),
            "fresh": col("fresh", bool, False),
            "intervened": col("intervened", bool, False),
            "seq": col("seq", np.int64, -1),
            "t": col("t", np.float64, np.nan),
            "lateness_s": col("lateness", np.float64, np.nan),
            "inference_s": col("inference", np.float64, np.nan),
            "observation_s": col("obs_latency", np.float64, np.nan),
            "action_s": col("send_latency", np.float64, np.nan),
            "work_s": col("work", np.float64, np.nan),
        }
        return out


def _episode_return(arrays: Mapping[str, np.ndarray]) -> float | None:
    r = arrays["rewards"]
    r = r[np.isfinite(r)]
    return float(r.sum()) if r.size else None


class ControlLoop:
    """Run ``policy`` on ``robot`` at a fixed rate behind the safety layer (see the module docstring).

    Args:
        policy: a :class:`~robo_reward.deploy.policy.Policy` (exported file or callable).
        robot: a :class:`~robo_reward.deploy.robot.Robot`; connected here if it is not yet
            (and then disconnected at the end).
        rate_hz: control rate (default: the settings', else the policy metadata's
            ``control_rate_hz``, else the robot's).
        settings: :class:`~robo_reward.deploy.safety.DeploySettings` or a
            :class:`~robo_reward.deploy.safety.SafetyConfig` (default settings otherwise).
        max_steps: steps per episode (``None``: until the episode ends or ``duration_s``).
        duration_s: wall-clock limit of the whole run.
        episodes: episodes to run; robots with ``reset`` are reset before each.
        seed: seed of the first reset (``seed + i`` for episode ``i``).
        log_dir: where to write episode files, interventions and the report (``None``: nowhere).
        spin_s: busy-wait this long before each tick.
        realtime_priority: run the loop's thread with ``SCHED_FIFO`` at this priority
            (1-99; Linux, needs ``CAP_SYS_NICE`` or root; falls back to normal scheduling
            with a logged note). ``None``: normal scheduling.
        handle_signals: stop on SIGINT/SIGTERM (only when run from the main thread).
        log: called with one line per notable event.
    """

    def __init__(
        self,
        policy: Any,
        robot: Any,
        *,
        rate_hz: float | None = None,
        settings: DeploySettings | SafetyConfig | None = None,
        max_steps: int | None = None,
        duration_s: float | None = None,
        episodes: int = 1,
        seed: int | None = None,
        log_dir: str | Path | None = None,
        spin_s: float = 2e-4,
        realtime_priority: int | None = None,
        handle_signals: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        if isinstance(settings, SafetyConfig):
            settings = DeploySettings(safety=settings)
        self.settings = settings or DeploySettings()
        self.safety_config = self.settings.safety
        meta = getattr(policy, "metadata", {}) or {}
        rate = rate_hz or self.settings.rate_hz or meta.get("control_rate_hz")
        if rate is None:
            rate = getattr(robot, "control_rate_hz", None)
        if rate is None or not float(rate) > 0:
            raise ConfigError("no control rate: pass rate_hz (--rate), set rate_hz in the deploy settings, "
                              "or export the policy with its task card")
        if max_steps is not None and max_steps < 1:
            raise ConfigError("max_steps must be >= 1")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError("duration_s must be positive")
        if episodes < 1:
            raise ConfigError("episodes must be >= 1")
        if spin_s < 0:
            raise ConfigError("spin_s must be >= 0")
        self.policy, self.robot = policy, robot
        self.rate_hz = float(rate)
        self.period = 1.0 / self.rate_hz
        self.max_steps, self.duration_s, self.episodes = max_steps, duration_s, int(episodes)
        self.seed = seed
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.spin_s = float(spin_s)
        if realtime_priority is not None and not 1 <= int(realtime_priority) <= 99:
            raise ConfigError(f"realtime_priority must be in 1..99, got {realtime_priority}")
        self.realtime_priority = realtime_priority
        self.handle_signals = handle_signals
        self.log = log or (lambda line: None)
        self._stop_request: tuple[str, str] | None = None
        self.intervention_log: list[Intervention] = []
        self._ilog_file: Any = None

    # ------------------------------------------------------------------ control
    def request_stop(self, reason: str = "operator_stop", detail: str = "stop requested") -> None:
        """Ask the loop to stop at the next cycle (thread- and signal-safe); it sends the safe action."""
        if self._stop_request is None:
            self._stop_request = (reason, detail)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request_stop("operator_stop", f"received {signal.Signals(signum).name}")

    # ------------------------------------------------------------------ helpers
    def _intervene(self, ep: _Episode, step: int, kind: str, detail: str, policy_action: Any = None,
                   sent: Any = None) -> None:
        item = Intervention(
            step=step, episode=ep.index, time_s=round(_perf() - self._t0, 6), kind=kind, detail=detail,
            policy_action=None if policy_action is None else [float(x) for x in np.asarray(policy_action).reshape(-1)],
            sent_action=None if sent is None else [float(x) for x in np.asarray(sent).reshape(-1)],
        )
        self.report.interventions[kind] = self.report.interventions.get(kind, 0) + 1
        if len(self.intervention_log) < 100_000:
            self.intervention_log.append(item)
        if self._ilog_file is not None:
            self._ilog_file.write(json.dumps(item.to_dict()) + "\n")
            self._ilog_file.flush()
        if kind in STOP_REASONS:
            self.log(f"STOP ({kind}) at step {step}: {detail}")

    def _set_timeout(self, seconds: float) -> None:
        if hasattr(self.robot, "timeout"):
            try:
                self.robot.timeout = max(float(seconds), 1e-4)
            except (AttributeError, TypeError):
                pass

    def _send(self, action: np.ndarray) -> None:
        self.robot.send_action(self._act_layout.split(np.asarray(action, dtype=np.float64)))
        self.safety.mark_sent(action)

    def _send_stop_action(self) -> tuple[np.ndarray | None, str]:
        """Send the stop action (best effort); return it (or ``None``) and a note."""
        action = self.safety.stop_action()
        if action is None:
            return None, "no safe action to send (safe_action: hold and nothing was sent)"
        self._set_timeout(self.safety_config.stop_timeout_s)
        try:
            self._send(action)
        except Exception as exc:  # the robot may be gone: say so, do not raise
            return None, f"the safe action could not be sent ({type(exc).__name__}: {exc})"
        return action, "safe action sent"

    # ------------------------------------------------------------------ the run
    def run(self) -> DeployReport:
        """Run all episodes; return the :class:`DeployReport` (also written to ``log_dir``)."""
        self.report = DeployReport(rate_hz=self.rate_hz, log_dir=str(self.log_dir) if self.log_dir else None)
        self._t0 = _perf()
        robot, policy = self.robot, self.policy
        connected_here = False
        old_handlers: dict[int, Any] = {}
        old_timeout = getattr(robot, "timeout", None)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._ilog_file = (self.log_dir / "interventions.jsonl").open("w")
        timing: dict[str, list[Any]] = {k: [] for k in ("start", "seg", "late", "inf", "obs", "act", "work")}
        self._misses = 0
        prio_token: Any = None
        unexpected: BaseException | None = None
        try:
            if not robot.is_connected:
                robot.connect()
                connected_here = True
            meta = getattr(policy, "metadata", {}) or {}
            self._obs_layout = observation_layout(robot.observation_features, policy.obs_dim,
                                                  meta.get("observation_fields") or None)
            self._act_layout = action_layout(robot.action_features, policy.action_dim)
            limits = getattr(robot, "action_limits", None)
            self.safety = SafetyLayer(self.safety_config, policy.action_low, policy.action_high, self.rate_hz, limits)
            if self.handle_signals and threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    old_handlers[sig] = signal.signal(sig, self._on_signal)
            prio_token, self.report.scheduling = set_realtime_priority(self.realtime_priority)
            if self.realtime_priority is not None:
                self.log(f"scheduling: {self.report.scheduling}")
            for i in range(self.episodes):
                ep = _Episode(i, policy.obs_dim, policy.action_dim)
                try:
                    self._run_episode(ep, timing)
                except _Stop as stop:
                    sent, note = self._send_stop_action()
                    self.report.stop_reason, self.report.detail = stop.kind, f"{stop.detail}; {note}"
                    self.report.final_action = None if sent is None else sent.tolist()
                    ep.end = stop.kind
                    self._intervene(ep, self.report.steps, stop.kind, self.report.detail, sent=sent)
                finally:
                    self._finish_episode(ep)
                if self.report.safety_stop:
                    break
                if self._deadline_reached():
                    break
            if not self.report.safety_stop and self.report.episodes and self.report.episodes[-1]["end"] != "done":
                sent, note = self._send_stop_action()
                self.report.final_action = None if sent is None else sent.tolist()
                if sent is None:
                    self.log(f"end of run: {note}")
        except KeyboardInterrupt:
            sent, note = self._send_stop_action() if hasattr(self, "safety") else (None, "")
            self.report.stop_reason, self.report.detail = "operator_stop", f"KeyboardInterrupt; {note}"
            self.report.final_action = None if sent is None else sent.tolist()
        except ConfigError:
            raise
        except Exception as exc:
            unexpected = exc
            note = ""
            if hasattr(self, "safety"):
                sent, note = self._send_stop_action()
                self.report.final_action = None if sent is None else sent.tolist()
            self.report.stop_reason = "exception"
            self.report.detail = f"{type(exc).__name__}: {exc}; {note}"
            self.report.error = traceback.format_exc()
            self.log(f"STOP (exception): {self.report.detail}")
        finally:
            restore_priority(prio_token)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if hasattr(robot, "timeout"):
                try:
                    robot.timeout = old_timeout
                except (AttributeError, TypeError):
                    pass
            if connected_here:
                try:
                    robot.disconnect()
                except Exception:
                    pass
            self.report.timing = timing_summary(
                timing["start"], timing["seg"], self.period, lateness=timing["late"], inference=timing["inf"],
                observation=timing["obs"], action=timing["act"], work=timing["work"], deadline_misses=self._misses,
            )
            if self._ilog_file is not None:
                self._ilog_file.close()
                self._ilog_file = None
            if self.log_dir is not None:
                (self.log_dir / "deploy_report.json").write_text(json.dumps(self.report.to_dict(), indent=2, default=str))
        if unexpected is not None:
            raise unexpected
        return self.report

    def _deadline_reached(self) -> bool:
        return self.duration_s is not None and _perf() - self._t0 >= self.duration_s

    def _finish_episode(self, ep: _Episode) -> None:
        arrays = ep.arrays()
        entry: dict[str, Any] = {"index": ep.index, "steps": len(ep.rows), "end": ep.end or "stopped",
                                 "return": _episode_return(arrays),
                                 "success": bool(arrays["success"].any()) if len(ep.rows) else False, "log": None}
        if self.log_dir is not None:
            path = self.log_dir / f"episode_{ep.index:04d}.npz"
            meta = {"episode": ep.index, "end": entry["end"], "rate_hz": self.rate_hz,
                    "observation_features": self._obs_layout.names if hasattr(self, "_obs_layout") else None,
                    "robot": getattr(self.robot, "name", None),
                    "policy": {k: (getattr(self.policy, "metadata", {}) or {}).get(k)
                               for k in ("file", "policy_format", "task", "training_run")}}
            np.savez_compressed(path, meta=np.array(json.dumps(meta, default=str)), **arrays)
            entry["log"] = str(path)
        self.report.episodes.append(entry)

    def _run_episode(self, ep: _Episode, timing: dict[str, list[Any]]) -> None:
        robot, policy, safety, cfg = self.robot, self.policy, self.safety, self.safety_config
        period = self.period
        req_timeout = cfg.request_timeout_periods * period
        self._set_timeout(max(req_timeout, cfg.stop_timeout_s))
        reset = getattr(robot, "reset", None)
        if callable(reset):
            seed = None if self.seed is None else self.seed + ep.index
            try:
                reset(seed)
            except RobotDisconnected as exc:
                raise _Stop("disconnect", f"the robot disconnected on reset: {exc}") from None
            except RobotError as exc:
                if getattr(exc, "code", None) != "unsupported":
                    raise _Stop("exception", f"the robot could not be reset: {exc}") from None
        safety.reset()
        self._set_timeout(req_timeout)
        wd_s = cfg.watchdog_periods * period
        last_fresh = _perf()
        last_seq: int | None = None
        faults = 0
        steps = 0
        next_tick = _perf()
        should_stop = lambda: self._stop_request is not None  # noqa: E731
        while True:
            if self._stop_request is not None:
                raise _Stop(*self._stop_request)
            if self.max_steps is not None and steps >= self.max_steps:
                ep.end = "max_steps"
                self._final_observation(ep)
                return
            if self._deadline_reached():
                ep.end = "duration"
                self._final_observation(ep)
                return
            precise_sleep_until(next_tick, self.spin_s, should_stop)
            if self._stop_request is not None:
                raise _Stop(*self._stop_request)
            t_cycle = _perf()
            late = max(t_cycle - next_tick, 0.0)
            step = self.report.steps
            row = ep.add(t=t_cycle - self._t0, lateness=late, seq=None, fresh=False, ran=False, sent=False,
                         intervened=False)
            # 1. observation
            raw = None
            fault: tuple[str, str] | None = None
            try:
                raw = robot.get_observation()
            except RobotTimeout as exc:
                fault = ("observation_timeout", f"no observation within {req_timeout * 1e3:.1f} ms ({exc})")
            except ProtocolError as exc:
                fault = ("malformed_message", str(exc))
            except RobotDisconnected as exc:
                raise _Stop("disconnect", f"lost the robot while reading an observation: {exc}") from None
            except RobotError as exc:
                fault = ("robot_error", str(exc))
            t_obs = _perf()
            row["obs_latency"] = t_obs - t_cycle
            obs_vec = None
            if raw is not None:
                seq = raw.get("_seq")
                row["seq"] = seq
                if seq is not None and last_seq is not None and seq <= last_seq:
                    fault = ("stale_observation", f"reading {seq} is not newer than {last_seq}")
                else:
                    try:
                        obs_vec = self._obs_layout.flatten(raw)
                    except ProtocolError as exc:
                        fault = ("malformed_message", str(exc))
                    if obs_vec is not None and not np.all(np.isfinite(obs_vec)):
                        bad = np.flatnonzero(~np.isfinite(obs_vec)).tolist()
                        fault = ("nonfinite_observation", f"non-finite observation entries {bad}")
                        obs_vec = None
            if obs_vec is not None:
                last_fresh, last_seq = t_obs, raw.get("_seq")  # type: ignore[union-attr]
                if not safety.has_reference and all(k in raw for k in self._act_layout.names):  # type: ignore[operator]
                    try:  # the robot reports its commanded quantities: rate-limit from where it is
                        safety.set_reference(self._act_layout.flatten(raw))  # type: ignore[arg-type]
                    except ProtocolError:
                        pass
                row["obs"], row["fresh"] = obs_vec.copy(), True
                ep.complete_transition(row["obs"], raw)
                if raw.get("_done"):  # type: ignore[union-attr]
                    ep.rows.pop()  # the final observation is not a step of its own
                    ep.end = "done"
                    return
            # 2. decide
            to_send: np.ndarray | None = None
            if obs_vec is not None:
                t_inf = _perf()
                try:
                    action = policy(obs_vec)
                except Exception as exc:
                    raise _Stop("policy_exception", f"the policy raised {type(exc).__name__}: {exc}") from None
                row["inference"] = _perf() - t_inf
                row["ran"] = True
                if np.size(action) == policy.action_dim:
                    row["policy_action"] = np.asarray(action, dtype=np.float32).reshape(-1).copy()
                res = safety.filter(action)
                to_send = res.action
                step_fault = False
                for kind, detail in res.reasons:
                    self._intervene(ep, step, kind, detail, action, to_send)
                    row["intervened"] = True
                    step_fault |= kind == "nonfinite_action"
                if res.stop:
                    raise _Stop("nonfinite_action", "the policy returned a non-finite action (on_nonfinite_action: stop)")
                faults = faults + 1 if step_fault else 0
            else:
                faults += 1
                age = t_obs - last_fresh
                assert fault is not None
                if age >= wd_s:
                    raise _Stop("watchdog", f"no new observation for {age / period:.1f} periods "
                                            f"(limit {cfg.watchdog_periods:g}); last problem: {fault[0]}: {fault[1]}")
                if cfg.on_stale_observation == "safe":
                    to_send = safety.stop_action()
                self._intervene(ep, step, fault[0], fault[1] + ("; sent the safe action" if to_send is not None
                                                                else "; holding (nothing new sent)"), None, to_send)
                row["intervened"] = True
            if faults >= cfg.max_consecutive_faults:
                raise _Stop("too_many_faults", f"{faults} faulty steps in a row (limit {cfg.max_consecutive_faults})")
            # 3. send
            t_send = _perf()
            if to_send is not None:
                try:
                    self._send(to_send)
                    row["sent"], row["action"] = True, np.asarray(to_send, dtype=np.float32)
                    ep.last_action_row = len(ep.rows) - 1
                except RobotTimeout as exc:
                    row["sent"], row["action"] = True, np.asarray(to_send, dtype=np.float32)
                    self._intervene(ep, step, "action_not_acknowledged", str(exc), None, to_send)
                    row["intervened"] = True
                except ProtocolError as exc:
                    self._intervene(ep, step, "malformed_message", f"while sending an action: {exc}", None, to_send)
                    row["intervened"] = True
                except RobotDisconnected as exc:
                    raise _Stop("disconnect", f"lost the robot while sending an action: {exc}") from None
                except RobotError as exc:
                    faults += 1
                    self._intervene(ep, step, "robot_error", f"the robot refused the action: {exc}", None, to_send)
                    row["intervened"] = True
            t_end = _perf()
            row["send_latency"] = t_end - t_send if to_send is not None else None
            row["work"] = t_end - t_cycle
            timing["start"].append(t_cycle)
            timing["seg"].append(ep.index)
            timing["late"].append(late)
            timing["inf"].append(row.get("inference", np.nan))
            timing["obs"].append(row["obs_latency"])
            timing["act"].append(row["send_latency"] if row["send_latency"] is not None else np.nan)
            timing["work"].append(row["work"])
            steps += 1
            self.report.steps += 1
            # 4. schedule
            next_tick += period
            if t_end > next_tick:
                self._misses += 1
                behind = t_end - next_tick
                if behind > period:
                    next_tick += np.floor(behind / period) * period

    def _final_observation(self, ep: _Episode) -> None:
        """After a step/time limit: one more reading completes the last transition (best effort)."""
        if ep.last_action_row is None:
            return
        try:
            raw = self.robot.get_observation()
            obs = self._obs_layout.flatten(raw)
        except Exception:
            return
        if np.all(np.isfinite(obs)):
            ep.complete_transition(obs, raw)


def run_policy(policy: Any, robot: Any, **kwargs: Any) -> DeployReport:
    """``ControlLoop(policy, robot, **kwargs).run()``."""
    return ControlLoop(policy, robot, **kwargs).run()


# ----------------------------------------------------------------------------- episode files


def load_episode(path: str | Path) -> dict[str, Any]:
    """Read an episode file: its arrays, and its ``meta`` dict.

    Raises:
        ConfigError: the file does not exist or is not an episode file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no episode file at {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            out: dict[str, Any] = {k: data[k] for k in data.files}
    except Exception as exc:
        raise ConfigError(f"{p} is not an episode file: {exc}") from None
    if "observations" not in out:
        raise ConfigError(f"{p} is not an episode file (no observations)")
    out["meta"] = json.loads(str(out["meta"])) if "meta" in out else {}
    return out


def episodes_to_dataset(paths: Iterable[str | Path] | str | Path, *, policy_steps_only: bool = False) -> dict[str, np.ndarray]:
    """Concatenate episode files into one offline dataset (D4RL layout).

    A step is a transition when an action was sent and the next observation is known.
    With ``policy_steps_only``, steps where the safety layer replaced the policy's
    action (hold, safe action) are left out; clipped and rate-limited steps stay (their
    ``actions`` are what the robot received).

    Args:
        paths: episode files, or a deploy log folder (every ``episode_*.npz`` in it).

    Returns:
        ``observations``, ``actions``, ``next_observations``, ``rewards``,
        ``terminals``, ``timeouts`` and ``episode`` (the file index of each row).
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        paths = sorted(Path(paths).glob("episode_*.npz"))
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    keys = ("observations", "actions", "next_observations", "rewards", "terminals", "timeouts")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*keys, "episode")}
    for i, path in enumerate(paths):
        ep = load_episode(path)
        keep = ep["action_sent"] & np.all(np.isfinite(ep["next_observations"]), axis=1)
        keep &= np.all(np.isfinite(ep["actions"]), axis=1)
        if policy_steps_only:
            keep &= ep["policy_ran"] & np.all(np.isfinite(ep["policy_actions"]), axis=1)
        for k in keys:
            parts[k].append(ep[k][keep])
        parts["episode"].append(np.full(int(keep.sum()), i, dtype=np.int64))
    if not parts["episode"]:
        raise ConfigError("no episode files given")
    return {k: np.concatenate(v) for k, v in parts.items()}


__all__ = [
    "ControlLoop",
    "DeployReport",
    "STOP_REASONS",
    "episodes_to_dataset",
    "load_episode",
    "precise_sleep_until",
    "restore_priority",
    "run_policy",
    "set_realtime_priority",
    "timing_summary",
]

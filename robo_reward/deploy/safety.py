"""The safety layer between a policy and a robot, and its settings.

Every action the runtime sends passes through :class:`SafetyLayer`:

1. **non-finite block** — an action with NaN or ±inf is never sent; the layer sends
   the last safe action again (``on_nonfinite_action: hold``), the safe action
   (``safe``), or stops the run (``stop``);
2. **clip** to the action bounds: the intersection of the policy's action space, the
   robot's own limits and ``action_low``/``action_high`` from the settings;
3. **rate limit** — each entry changes by at most ``max_action_rate / rate_hz`` per step
   (``max_action_rate`` is in action units per second, so the limit does not depend on
   the control rate), starting from the safe action. With ``safe_action: hold``
   (position-controlled robots) it starts from the robot's measured state when the
   robot reports it under the action's feature names (as LeRobot arms do:
   ``shoulder_pan.pos`` in both), otherwise the first action is not rate-limited.

The safe action sent when a run stops is not rate-limited: stopping wins.

The runtime adds the checks that need time (see :mod:`robo_reward.deploy.runtime`):
the observation-freshness watchdog (``watchdog_periods``), stopping with the safe
action on exceptions, disconnects, repeated faults (``max_consecutive_faults``) and
operator stops. Every intervention is logged with its reason.

Settings come from, in increasing priority: the task card's ``deploy:`` section (when
the card schema has one), a YAML file, and command-line flags::

    rate_hz: 50                       # control rate (default: the policy's, from the task's env dt)
    safety:
      action_low: -0.5                # a number or one per action entry (tightens the policy's bounds)
      action_high: 0.5
      max_action_rate: 10.0           # units per second; null = no rate limit
      safe_action: zeros              # zeros | center | hold | [v0, v1, ...]
      on_nonfinite_action: hold       # hold | safe | stop
      on_stale_observation: hold      # hold (send nothing new) | safe (send the safe action)
      watchdog_periods: 3             # no new observation for this many periods -> safe action, stop
      max_consecutive_faults: 10      # this many faulty steps in a row -> safe action, stop
      request_timeout_periods: 0.8    # how long one request to the robot may take, in periods
      stop_timeout_s: 0.5             # how long the final safe action may take to be acknowledged
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import ConfigError


class SafetyConfig(BaseModel):
    """Safety settings (see the module docstring for the YAML form). Unknown keys are errors.

    Attributes:
        action_low, action_high: bounds (one number for every entry, or one per entry)
            intersected with the policy's and the robot's; ``None``: theirs only.
        max_action_rate: the largest change of each action entry per second (one number
            or one per entry); ``None``: no rate limit.
        safe_action: what is sent when the runtime stops or cannot act: ``zeros`` (the
            default; an error when zero lies outside the bounds), ``center`` (middle of the
            bounds), ``hold`` (the last action sent again, nothing if none was sent: for
            position-controlled robots) or an explicit list.
        on_nonfinite_action: ``hold`` (send the last safe action again), ``safe`` (send the
            safe action) or ``stop``.
        on_stale_observation: while no new observation arrives (before the watchdog
            fires): ``hold`` (send nothing new: the robot keeps its last command) or
            ``safe`` (send the safe action every period).
        watchdog_periods: stop (sending the safe action) when no new, finite observation
            has arrived for this many control periods.
        max_consecutive_faults: stop after this many steps in a row on which the policy
            could not act (non-finite action or observation, robot error replies).
        request_timeout_periods: the longest one request to the robot may wait, as a
            fraction of the control period (capped by the time left in the period).
        stop_timeout_s: the longest the final safe action may wait for its acknowledgement.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_low: float | list[float] | None = None
    action_high: float | list[float] | None = None
    max_action_rate: float | list[float] | None = None
    safe_action: Literal["zeros", "center", "hold"] | list[float] = "zeros"
    on_nonfinite_action: Literal["hold", "safe", "stop"] = "hold"
    on_stale_observation: Literal["hold", "safe"] = "hold"
    watchdog_periods: float = Field(3.0, gt=0)
    max_consecutive_faults: int = Field(10, ge=1)
    request_timeout_periods: float = Field(0.8, gt=0, le=10)
    stop_timeout_s: float = Field(0.5, gt=0, le=60)

    @field_validator("max_action_rate")
    @classmethod
    def _positive_rate(cls, v: Any) -> Any:
        vals = v if isinstance(v, list) else [v] if v is not None else []
        if any(not np.isfinite(x) or x <= 0 for x in vals):
            raise ValueError("max_action_rate must be positive and finite")
        return v

    @field_validator("action_low", "action_high", "safe_action")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        vals = v if isinstance(v, list) else [v] if isinstance(v, (int, float)) else []
        if any(not np.isfinite(x) for x in vals):
            raise ValueError("must be finite")
        return v


class DeploySettings(BaseModel):
    """The ``deploy:`` settings of a task: control rate and safety.

    Attributes:
        rate_hz: the control rate (``None``: the exported policy's, from the env's ``dt``).
        safety: the :class:`SafetyConfig`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_hz: float | None = Field(None, gt=0, le=10_000)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)


def _validation_message(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(
                f"  {loc}: unknown key; valid keys: rate_hz, safety ({', '.join(SafetyConfig.model_fields)})"
            )
        else:
            lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r:.60})")
    return f"invalid deploy settings{where}:\n" + "\n".join(lines)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if k == "safety" and isinstance(v, Mapping) and isinstance(out.get("safety"), Mapping):
            out["safety"] = {**out["safety"], **v}
        else:
            out[k] = v
    return out


def make_deploy_settings(data: Mapping[str, Any] | None, where: str = "") -> DeploySettings:
    """Validate a mapping (``{rate_hz, safety}``, optionally under a top-level ``deploy`` key).

    Raises:
        ConfigError: unknown keys or bad values (every problem listed).
    """
    if data is None:
        return DeploySettings()
    if not isinstance(data, Mapping):
        raise ConfigError(f"deploy settings{where} must be a mapping, got {type(data).__name__}")
    if set(data) == {"deploy"}:
        data = data["deploy"] or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"deploy settings{where}: 'deploy' must be a mapping")
    try:
        return DeploySettings.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, where)) from None


def load_deploy_settings(
    card: Any = None, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> DeploySettings:
    """Deploy settings from the card's ``deploy`` section ← a YAML file ← ``overrides``.

    ``card`` is a :class:`~robo_reward.envs.cards.TaskCard` (or a mapping); its ``deploy``
    attribute is read when the card schema has one. ``overrides`` use the same layout
    (``{"rate_hz": 100, "safety": {"max_action_rate": 5}}``); ``None`` values are ignored.

    Raises:
        ConfigError: a missing or malformed file, unknown keys or bad values.
    """
    merged: dict[str, Any] = {}
    if card is not None:
        section = card.get("deploy") if isinstance(card, Mapping) else getattr(card, "deploy", None)
        if isinstance(section, BaseModel):
            section = section.model_dump()
        if section:
            make_deploy_settings(section, f" (task card {getattr(card, 'name', '')!s})")
            merged = _merge(merged, section)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"deploy settings file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse YAML in {p}: {exc}") from None
        if isinstance(data, Mapping) and set(data) == {"deploy"}:
            data = data["deploy"] or {}
        make_deploy_settings(data, f" ({p})")
        merged = _merge(merged, data)
    if overrides:
        clean: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None and k != "safety"}
        safety = {k: v for k, v in (overrides.get("safety") or {}).items() if v is not None}
        if safety:
            clean["safety"] = safety
        merged = _merge(merged, clean)
    return make_deploy_settings(merged, "")


# ----------------------------------------------------------------------------- the layer


@dataclasses.dataclass
class Intervention:
    """One thing the safety layer or the runtime did instead of what the policy asked.

    Attributes:
        step: the control step (counted over the whole run).
        episode: the episode index.
        time_s: seconds since the run started.
        kind: ``nonfinite_action``, ``clipped``, ``rate_limited``, ``stale_observation``,
            ``observation_timeout``, ``nonfinite_observation``, ``malformed_message``,
            ``robot_error``, ``action_not_acknowledged``, or a stop reason: ``watchdog``,
            ``too_many_faults``, ``policy_exception``, ``disconnect``, ``operator_stop``,
            ``exception``.
        detail: the reason in words.
        policy_action: what the policy asked for (``None`` when it did not run).
        sent_action: what was sent instead (``None``: nothing was sent).
    """

    step: int
    episode: int
    time_s: float
    kind: str
    detail: str
    policy_action: list[float] | None = None
    sent_action: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (non-finite numbers as strings)."""
        def clean(v: list[float] | None) -> Any:
            return None if v is None else [x if np.isfinite(x) else str(x) for x in v]

        d = dataclasses.asdict(self)
        d["policy_action"], d["sent_action"] = clean(self.policy_action), clean(self.sent_action)
        return d


@dataclasses.dataclass
class FilterResult:
    """What :meth:`SafetyLayer.filter` decided.

    Attributes:
        action: the action to send (``None``: send nothing).
        reasons: ``(kind, detail)`` of each intervention (empty when the action passed unchanged).
        stop: the run must stop (``on_nonfinite_action: stop``).
    """

    action: np.ndarray | None
    reasons: list[tuple[str, str]]
    stop: bool = False


def _vector(value: float | Sequence[float] | None, n: int, name: str) -> np.ndarray | None:
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.size == 1:
        return np.full(n, float(a[0]))
    if a.shape != (n,):
        raise ConfigError(f"safety setting {name} has {a.size} entries; the action has {n} (give one or {n})")
    return a


def _fmt(a: np.ndarray, idx: np.ndarray) -> str:
    return ", ".join(f"[{i}] {a[i]:.4g}" for i in np.flatnonzero(idx)[:8])


class SafetyLayer:
    """Checks and corrects actions before they reach the robot (see the module docstring).

    Args:
        config: the settings.
        action_low, action_high: the policy's action bounds (flat, finite).
        rate_hz: the control rate (turns ``max_action_rate`` into a per-step limit).
        robot_limits: the robot's own ``(low, high)``, when it has them.

    Attributes:
        low, high: the bounds actions are clipped to.
        max_delta: the per-step change limit (``None``: no limit).
        safe: the safe action (``None`` with ``safe_action: hold``).
        last_sent: the last action the robot acknowledged or was sent (see :meth:`mark_sent`).
    """

    def __init__(
        self,
        config: SafetyConfig,
        action_low: Sequence[float],
        action_high: Sequence[float],
        rate_hz: float,
        robot_limits: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        low = np.asarray(action_low, dtype=np.float64).reshape(-1)
        high = np.asarray(action_high, dtype=np.float64).reshape(-1)
        n = low.size
        if high.shape != (n,):
            raise ConfigError(f"action bounds have different sizes: {low.size} and {high.size}")
        if robot_limits is not None:
            rl, rh = (np.asarray(x, dtype=np.float64).reshape(-1) for x in robot_limits)
            if rl.shape != (n,) or rh.shape != (n,):
                raise ConfigError(f"the robot's action limits have {rl.size} entries; the policy's action has {n}")
            low, high = np.maximum(low, rl), np.minimum(high, rh)
        cl, ch = _vector(config.action_low, n, "action_low"), _vector(config.action_high, n, "action_high")
        if cl is not None:
            low = np.maximum(low, cl)
        if ch is not None:
            high = np.minimum(high, ch)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError(
                "the action bounds are not finite; set safety.action_low and safety.action_high for this policy"
            )
        if np.any(low > high):
            raise ConfigError(f"the action bounds are empty: low {low.tolist()} > high {high.tolist()}")
        if not rate_hz > 0:
            raise ConfigError(f"rate_hz must be positive, got {rate_hz}")
        self.config = config
        self.n = n
        self.low, self.high = low, high
        rate = _vector(config.max_action_rate, n, "max_action_rate")
        self.max_delta = None if rate is None else rate / float(rate_hz)
        sa = config.safe_action
        if sa == "hold":
            self.safe: np.ndarray | None = None
        elif sa == "center":
            self.safe = (low + high) / 2.0
        else:
            safe = np.zeros(n) if sa == "zeros" else _vector(sa, n, "safe_action")
            assert safe is not None
            if np.any(safe < low) or np.any(safe > high):
                raise ConfigError(
                    f"the safe action {safe.tolist()} lies outside the action bounds {low.tolist()}..{high.tolist()}; "
                    "set safety.safe_action (e.g. 'center' or a list)"
                )
            self.safe = safe
        self.last_sent: np.ndarray | None = None
        self._prev: np.ndarray | None = None if self.safe is None else self.safe.copy()

    def reset(self) -> None:
        """Forget the previous action (the rate limit starts again from the safe action)."""
        self.last_sent = None
        self._prev = None if self.safe is None else self.safe.copy()

    def hold_action(self) -> np.ndarray | None:
        """The action to repeat when the policy cannot act: the last one sent, else the safe action."""
        if self.last_sent is not None:
            return self.last_sent.copy()
        return None if self.safe is None else self.safe.copy()

    def stop_action(self) -> np.ndarray | None:
        """The action sent when stopping: the safe action (``hold``: the last one sent, or nothing)."""
        if self.safe is not None:
            return self.safe.copy()
        return None if self.last_sent is None else self.last_sent.copy()

    def set_reference(self, action: Any) -> None:
        """Start the rate limit from ``action`` (clipped into the bounds) without marking it sent.

        The runtime calls it with the robot's measured command when the safe action is
        ``hold`` and the robot reports its state under the action's feature names.
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape == (self.n,) and np.all(np.isfinite(a)):
            self._prev = np.minimum(np.maximum(a, self.low), self.high)

    @property
    def has_reference(self) -> bool:
        """Whether the rate limit has a previous action to start from."""
        return self._prev is not None

    def mark_sent(self, action: np.ndarray) -> None:
        """Record that ``action`` was sent (the next rate limit starts from it)."""
        self.last_sent = np.array(action, dtype=np.float64, copy=True)
        self._prev = self.last_sent

    def filter(self, action: Any) -> FilterResult:
        """Apply the non-finite block, the clip and the rate limit to a flat policy action."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.n,):
            return FilterResult(
                self.hold_action(), [("nonfinite_action", f"the policy returned {a.size} values, expected {self.n}")],
                self.config.on_nonfinite_action == "stop",
            )
        finite = np.isfinite(a)
        if not finite.all():
            detail = f"non-finite policy action at {np.flatnonzero(~finite).tolist()}"
            mode = self.config.on_nonfinite_action
            if mode == "stop":
                return FilterResult(self.stop_action(), [("nonfinite_action", detail + "; stopping")], True)
            out = self.hold_action() if mode == "hold" else (self.safe.copy() if self.safe is not None else self.hold_action())
            return FilterResult(out, [("nonfinite_action", detail + f"; sent the {mode} action instead")])
        reasons: list[tuple[str, str]] = []
        clipped = np.minimum(np.maximum(a, self.low), self.high)
        over = clipped != a
        if over.any():
            reasons.append(("clipped", f"outside the bounds at {_fmt(a, over)}"))
        out = clipped
        if self.max_delta is not None and self._prev is not None:
            limited = np.minimum(np.maximum(clipped, self._prev - self.max_delta), self._prev + self.max_delta)
            changed = limited != clipped
            if changed.any():
                reasons.append(("rate_limited", f"change limited at {_fmt(clipped - self._prev, changed)}"))
            out = limited
        return FilterResult(out, reasons)


__all__ = [
    "DeploySettings",
    "FilterResult",
    "Intervention",
    "SafetyConfig",
    "SafetyLayer",
    "load_deploy_settings",
    "make_deploy_settings",
]

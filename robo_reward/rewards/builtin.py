"""Built-in reward plugins: ``env``, ``sparse-success``, ``python`` and ``constant``."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from ..core.errors import ConfigError, RewardComputationError
from ..core.registry import register_reward
from ..core.success import SuccessSignal, import_object
from ..core.types import RewardOutput, RewardPlugin, TransitionBatch


@register_reward("env")
class EnvReward(RewardPlugin):
    """The environment's own reward (a baseline: wrapping with it changes nothing)."""

    requires = frozenset({"env_reward"})

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """The env's own reward of each row, as the plugin's reward."""
        return RewardOutput(batch.env_reward)


@register_reward("constant")
class ConstantReward(RewardPlugin):
    """A constant reward ``value`` every step (for tests and overhead benchmarks)."""

    requires = frozenset()

    def __init__(self, value: float = 0.0):
        self.value = float(value)
        if not np.isfinite(self.value):
            raise ConfigError(f"constant reward value must be finite, got {value!r}")
        self._cache: dict[int, RewardOutput] = {}

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """The constant for every row (a cached, read-only output)."""
        n = len(batch.env_ids)
        out = self._cache.get(n)
        if out is None:
            # the same read-only output every call for a batch size: nobody may change it in place
            reward = np.full(n, self.value, dtype=np.float32)
            reward.flags.writeable = False
            out = self._cache[n] = RewardOutput(reward, MappingProxyType({}))  # type: ignore[arg-type]
        return out


@register_reward("sparse-success")
class SparseSuccessReward(RewardPlugin):
    """``value`` (default 1) on steps where the task's success signal holds, else 0.

    The success signal comes from the task card, or from ``key`` (an ``info`` key,
    optionally compared ``>= threshold``, or ``<= threshold`` with ``below=True``) or
    ``predicate`` (``"module:function"``).
    """

    requires = frozenset({"info", "next_obs"})

    def __init__(
        self,
        key: str | None = None,
        threshold: float | None = None,
        below: bool = False,
        predicate: str | None = None,
        value: float = 1.0,
        task: Any = None,
    ):
        if key is not None or predicate is not None:
            self.signal = SuccessSignal(info_key=key, threshold=threshold, below=bool(below), predicate=predicate)
        elif task is not None and getattr(task, "success", None) is not None:
            self.signal = task.success_signal()
        else:
            raise ConfigError(
                "sparse-success needs a success signal: use it with a task card that defines one, "
                "or give key=INFO_KEY (optionally threshold=...) or predicate=module:function"
            )
        self.value = float(value)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """``value`` where the task's success signal holds, else 0."""
        ok = self.signal.evaluate(batch.next_obs, batch.infos or [{}] * len(batch))
        r = ok.astype(np.float32) * np.float32(self.value)
        return RewardOutput(r, {"success": ok.astype(np.float32)})


@register_reward("python")
class PythonReward(RewardPlugin):
    """A reward function given as an importable ``"module:function"``.

    With ``batched=True`` (default) the function is called as ``fn(batch)`` and returns
    ``float[n]``, a :class:`RewardOutput`, or a mapping of named terms (summed into the
    reward). With ``batched=False`` it is called once per row as
    ``fn(obs, action, next_obs, info)`` and returns a float or a mapping of terms.
    Extra ``kwargs`` are passed to the function.
    """

    requires = frozenset({"obs", "action", "next_obs", "info"})

    def __init__(self, fn: str | Callable[..., Any], batched: bool = True, kwargs: Mapping[str, Any] | None = None):
        self.fn = import_object(fn, "reward function") if isinstance(fn, str) else fn
        if not callable(self.fn):
            raise ConfigError(f"python reward: {fn!r} is not callable")
        self.fn_name = fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))
        self.batched = bool(batched)
        self.kwargs = dict(kwargs or {})

    def _terms(self, value: Any, n: int) -> RewardOutput:
        if isinstance(value, RewardOutput):
            return value
        if isinstance(value, Mapping):
            terms = {str(k): np.asarray(v, dtype=np.float32).reshape(n) for k, v in value.items()}
            if not terms:
                raise RewardComputationError(f"python reward {self.fn_name} returned an empty mapping")
            return RewardOutput(np.sum(list(terms.values()), axis=0).astype(np.float32), terms)
        return RewardOutput(np.asarray(value, dtype=np.float32).reshape(n))

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Call the user's function on the batch and validate its output."""
        n = len(batch)
        try:
            if self.batched:
                return self._terms(self.fn(batch, **self.kwargs), n)
            rows = []
            for i in range(n):
                row = lambda x: None if x is None else ({k: v[i] for k, v in x.items()} if isinstance(x, dict) else x[i])  # noqa: E731
                rows.append(
                    self.fn(row(batch.obs), row(batch.action), row(batch.next_obs), batch.infos[i] if batch.infos else {}, **self.kwargs)
                )
        except RewardComputationError:
            raise
        except Exception as exc:
            raise RewardComputationError(f"python reward {self.fn_name} raised {type(exc).__name__}: {exc}") from exc
        if rows and isinstance(rows[0], Mapping):
            keys = list(rows[0])
            terms = {k: np.asarray([r[k] for r in rows], dtype=np.float32) for k in keys}
            return RewardOutput(np.sum(list(terms.values()), axis=0).astype(np.float32), terms)
        return RewardOutput(np.asarray(rows, dtype=np.float32))


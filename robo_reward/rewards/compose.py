"""Reward composition: sums, potential-based shaping, normalisation, clipping and progress refinements.

Every class here is a :class:`~robo_reward.core.types.RewardPlugin` that wraps one or
more *child* rewards. A child is given as anything :func:`~robo_reward.core.registry.make_reward`
accepts (a name, a ``"name:k=v"`` spec string, a ``{"name": ...}`` mapping or an already
built plugin), so compositions nest freely and can be written in YAML run configs::

    reward:
      name: sum
      rewards:
        - {name: normalize, reward: "python:fn=mypkg.rewards:reach"}
        - "constant:value=-0.01"
      weights: [1.0, 1.0]

Registered names:

* ``sum`` — :class:`WeightedSum`, ``Σ w_i r_i``;
* ``shaping`` — :class:`PotentialShaping`, ``r + γΦ(s') − Φ(s)`` (Ng et al. 1999);
* ``normalize`` — :class:`RunningNormalize`, divide by the running std of the discounted
  return (as SB3 ``VecNormalize``) or standardise the raw reward;
* ``clip`` — :class:`Clip`, clip to ``[low, high]``;
* ``progress-clip`` — :class:`ProgressClip`, ``min(r − η, 0)`` (Gao et al. 2024);
* ``progress-delta`` — :class:`ProgressDelta`, the online (causal) delta mechanism
  ``r_t − r_{t−1}`` (Gao et al. 2024).

:func:`delta_rewards` is the offline (look-ahead) delta mechanism, for relabelling
whole trajectories.

Terms: a composition reports its children's rewards and their own terms under
prefixed names (``"0:constant"``, ``"0:constant/success"``, ``"base"``, ``"raw"``,
``"raw/<term>"``), so multi-critic agents and loggers see every part.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.errors import ConfigError, RewardComputationError
from ..core.registry import make_reward, register_reward
from ..core.success import import_object
from ..core.types import RewardOutput, RewardPlugin, TransitionBatch

__all__ = [
    "Clip",
    "PotentialShaping",
    "ProgressClip",
    "ProgressDelta",
    "RunningNormalize",
    "WeightedSum",
    "delta_rewards",
]


# --------------------------------------------------------------------------- helpers


def _finite_float(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return out


def _gamma(value: Any, what: str) -> float:
    g = _finite_float(value, what)
    if not 0.0 <= g <= 1.0:
        raise ConfigError(f"{what} must lie in [0, 1] (a discount factor), got {value!r}")
    return g


def _make_child(spec: Any, task: Any, owner: str, what: str = "reward") -> RewardPlugin:
    if spec is None:
        raise ConfigError(
            f"{owner} needs a child reward: give {what}=<spec> (a name, 'name:k=v' string, mapping or RewardPlugin)"
        )
    try:
        return make_reward(spec, task=task)
    except ConfigError as exc:
        raise type(exc)(f"{owner}: bad child reward {spec!r}: {exc}") from exc


def _child_label(child: RewardPlugin) -> str:
    return child.name or type(child).__name__


def _env_ids(batch: TransitionBatch) -> np.ndarray:
    ids = np.asarray(batch.env_ids).astype(np.int64, copy=False).reshape(-1)
    if ids.size and ids.min() < 0:
        raise RewardComputationError(f"env_ids must be non-negative sub-env indices, got {ids.tolist()[:10]}")
    return ids


def _bool_rows(x: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=bool).reshape(-1)
    if arr.shape != (n,):
        raise RewardComputationError(f"batch.{what} has shape {arr.shape}, expected ({n},)")
    return arr


def _prefixed(prefix: str, out: RewardOutput) -> dict[str, np.ndarray]:
    terms = {prefix: out.reward}
    for k, v in out.terms.items():
        terms[f"{prefix}/{k}"] = v
    return terms


def _mask_vector(mask: Any) -> np.ndarray:
    m = np.asarray(mask, dtype=bool).reshape(-1)
    return m


class _PerEnvArray:
    """A float64 vector indexed by sub-env id that grows on demand (lazy sizing)."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.float64)

    def ensure(self, size: int) -> None:
        if size > self.values.shape[0]:
            grown = np.zeros(size, dtype=np.float64)
            grown[: self.values.shape[0]] = self.values
            self.values = grown

    def reset(self, mask: np.ndarray) -> None:
        self.ensure(mask.shape[0])
        self.values[: mask.shape[0]][mask] = 0.0


class _SingleChild(RewardPlugin):
    """Shared plumbing of plugins that transform one child reward."""

    requires = frozenset()

    def __init__(self, reward: Any, task: Any = None):
        self.child = _make_child(reward, task, type(self).__name__)
        self.requires = frozenset(self.child.requires)

    def reset(self, mask: np.ndarray) -> None:
        """Forward the reset to the child."""
        self.child.reset(mask)

    def _child_out(self, batch: TransitionBatch) -> RewardOutput:
        return self.child(batch)


# --------------------------------------------------------------------------- sum


@register_reward("sum")
class WeightedSum(RewardPlugin):
    """A weighted sum of rewards, ``Σ_i w_i r_i``.

    Args:
        rewards: the child rewards, a non-empty list of specs (names, ``"name:k=v"``
            strings, mappings or plugins).
        weights: one finite float per child (default: all 1).
        names: optional term names, one per child (default ``"<i>:<child name>"``).
        task: task card handed to children that take one.

    Terms: each child's (unweighted) reward under its term name, and each child's own
    terms as ``"<term name>/<child term>"``. ``requires`` is the union of the children's.
    """

    requires = frozenset()

    def __init__(
        self,
        rewards: Sequence[Any],
        weights: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        task: Any = None,
    ):
        if isinstance(rewards, (str, Mapping, RewardPlugin)) or not isinstance(rewards, Sequence):
            raise ConfigError(
                f"sum: 'rewards' must be a list of reward specs, got {type(rewards).__name__} {rewards!r}; "
                "write rewards=[spec1, spec2, ...]"
            )
        if len(rewards) == 0:
            raise ConfigError("sum: 'rewards' is empty; give at least one child reward")
        self.children: list[RewardPlugin] = [
            _make_child(spec, task, "sum", what=f"rewards[{i}]") for i, spec in enumerate(rewards)
        ]
        k = len(self.children)
        if weights is None:
            w = [1.0] * k
        else:
            if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
                raise ConfigError(f"sum: 'weights' must be a list of {k} numbers, got {weights!r}")
            if len(weights) != k:
                raise ConfigError(
                    f"sum: got {len(weights)} weights for {k} rewards; give exactly one weight per reward"
                )
            w = [_finite_float(x, f"sum: weights[{i}]") for i, x in enumerate(weights)]
        self.weights = np.asarray(w, dtype=np.float64)
        if names is None:
            self.names = [f"{i}:{_child_label(c)}" for i, c in enumerate(self.children)]
        else:
            if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != k:
                raise ConfigError(f"sum: 'names' must be a list of {k} strings, one per reward, got {names!r}")
            self.names = [str(x) for x in names]
            if len(set(self.names)) != k:
                raise ConfigError(f"sum: 'names' must be unique, got {self.names}")
            if any("/" in x or not x for x in self.names):
                raise ConfigError(f"sum: 'names' must be non-empty and contain no '/', got {self.names}")
        req: frozenset[str] = frozenset()
        for c in self.children:
            req = req | frozenset(c.requires)
        self.requires = req

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return ``Σ w_i r_i`` with every child's reward and terms."""
        total = np.zeros(len(batch), dtype=np.float64)
        terms: dict[str, np.ndarray] = {}
        for name, w, child in zip(self.names, self.weights, self.children):
            out = child(batch)
            total += w * out.reward.astype(np.float64)
            terms.update(_prefixed(name, out))
        return RewardOutput(total.astype(np.float32), terms)

    def reset(self, mask: np.ndarray) -> None:
        """Forward the reset to every child."""
        for c in self.children:
            c.reset(mask)


# --------------------------------------------------------------------------- shaping


@register_reward("shaping")
class PotentialShaping(RewardPlugin):
    """Potential-based shaping ``F = γΦ(s') − Φ(s)`` added to a base reward (Ng et al. 1999).

    Shaping of this form leaves the optimal policies of the base reward unchanged,
    provided ``gamma`` equals the agent's discount. Over an episode ``s_0 … s_T`` the
    shaping terms telescope: ``Σ_t γ^t F_t = γ^T Φ(s_T) − Φ(s_0)``.

    Args:
        potential: Φ, one of: ``"module:function"`` (imported), a Python callable, or
            any object with ``__call__(obs) -> float[n]`` (e.g. a learned potential
            network). It is called batched on the ``[n, ...]`` observation array (or
            the dict of arrays of a ``Dict`` space) and must return ``n`` finite floats.
        reward: the base reward spec; ``None`` (default) gives the shaping term alone.
        gamma: the discount in ``γΦ(s')`` (default 0.99); use the agent's discount.
        terminal_potential_zero: on terminal transitions (``batch.terminated``) take
            ``Φ(s') = 0`` (default ``True``), the convention under which shaping keeps
            the optimal policies of episodic tasks. Truncated (time-limit) transitions
            are not terminal and keep ``Φ(s')``.
        task: task card handed to the base reward if it takes one.

    Terms: ``"base"`` (the base reward, 0 without one), ``"shaping"`` (``F``) and the
    base reward's own terms as ``"base/<term>"``.
    """

    requires = frozenset({"obs", "next_obs"})

    def __init__(
        self,
        potential: str | Callable[[Any], Any],
        reward: Any = None,
        gamma: float = 0.99,
        terminal_potential_zero: bool = True,
        task: Any = None,
    ):
        if potential is None:
            raise ConfigError("shaping needs potential='module:function' or a callable obs[n, ...] -> float[n]")
        if isinstance(potential, RewardPlugin):
            raise ConfigError(
                "shaping: potential is a RewardPlugin, which scores transitions, not states; "
                "give a callable obs[n, ...] -> float[n] (e.g. a learned value network's forward)"
            )
        fn = import_object(potential, "shaping potential") if isinstance(potential, str) else potential
        if not callable(fn):
            raise ConfigError(f"shaping: potential {potential!r} is not callable; give 'module:function' or a callable")
        self.potential = fn
        self.potential_name = (
            potential if isinstance(potential, str) else getattr(fn, "__qualname__", type(fn).__name__)
        )
        self.gamma = _gamma(gamma, "shaping: gamma")
        self.terminal_potential_zero = bool(terminal_potential_zero)
        self.base: RewardPlugin | None = None if reward is None else _make_child(reward, task, "shaping")
        self.requires = frozenset({"obs", "next_obs"}) | (self.base.requires if self.base else frozenset())

    def _phi(self, obs: Any, n: int, which: str) -> np.ndarray:
        if obs is None:
            raise RewardComputationError(
                f"shaping: batch.{which} is None; the wrapper must supply it (shaping requires 'obs' and 'next_obs')"
            )
        try:
            value = self.potential(obs)
        except Exception as exc:
            raise RewardComputationError(
                f"shaping potential {self.potential_name} raised {type(exc).__name__}: {exc}"
            ) from exc
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0 and n == 1:
            arr = arr.reshape(1)
        if arr.shape == (n, 1):
            arr = arr.reshape(n)
        if arr.shape != (n,):
            raise RewardComputationError(
                f"shaping potential {self.potential_name} returned shape {arr.shape} for {which}, expected ({n},): "
                "it must be batched, one value per row"
            )
        if not np.isfinite(arr).all():
            raise RewardComputationError(
                f"shaping potential {self.potential_name} returned non-finite values for {which} "
                f"in rows {np.flatnonzero(~np.isfinite(arr)).tolist()[:10]}"
            )
        return arr

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return ``base + γΦ(s') − Φ(s)`` (with ``Φ(s') = 0`` on terminal rows if configured)."""
        n = len(batch)
        phi_s = self._phi(batch.obs, n, "obs")
        phi_next = self._phi(batch.next_obs, n, "next_obs")
        if self.terminal_potential_zero:
            term = _bool_rows(batch.terminated, n, "terminated")
            phi_next = np.where(term, 0.0, phi_next)
        shaping = self.gamma * phi_next - phi_s
        terms: dict[str, np.ndarray] = {}
        if self.base is not None:
            base_out = self.base(batch)
            base = base_out.reward.astype(np.float64)
            terms.update(_prefixed("base", base_out))
        else:
            base = np.zeros(n, dtype=np.float64)
            terms["base"] = base.astype(np.float32)
        terms["shaping"] = shaping.astype(np.float32)
        return RewardOutput((base + shaping).astype(np.float32), terms)

    def reset(self, mask: np.ndarray) -> None:
        """Forward the reset to the base reward (shaping itself is stateless)."""
        if self.base is not None:
            self.base.reset(mask)


# --------------------------------------------------------------------------- normalisation


class _RunningMeanStd:
    """Exact running mean and population variance (Chan et al. parallel update).

    Starts at ``count = 0`` (then ``mean = 0``, ``var = 1``); after any updates ``mean``
    and ``var`` equal ``np.mean`` and ``np.var`` of everything seen.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 1.0
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        b_count = x.size
        b_mean = float(x.mean())
        b_var = float(x.var())
        if self.count == 0:
            self.mean, self.var, self.count = b_mean, b_var, b_count
            return
        tot = self.count + b_count
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * b_count + delta * delta * self.count * b_count / tot
        self.mean = self.mean + delta * b_count / tot
        self.var = m2 / tot
        self.count = tot


@register_reward("normalize")
class RunningNormalize(_SingleChild):
    """Scale a child reward by running statistics, like SB3 ``VecNormalize`` / CleanRL ``NormalizeReward``.

    ``kind="return"`` (default): keep, per sub-env, the discounted return
    ``G ← γG + r`` (zeroed at episode ends and by :meth:`reset`), keep the running
    variance of every ``G`` seen, and return ``r / sqrt(var(G) + epsilon)`` (no mean
    is subtracted, so the sign of the reward is kept).

    ``kind="reward"``: keep the running mean and variance of the raw reward itself and
    return ``(r − mean) / sqrt(var + epsilon)``.

    Statistics are updated with the current step *before* it is normalised (as SB3
    does), and are exact: after any number of steps ``var`` equals ``np.var`` over every
    value seen. Early in training the variance rests on few samples (zero after a single
    step), so the first rewards can be scaled up strongly; wrap in :class:`Clip` if that
    matters for your agent.

    Per-env returns are indexed by ``batch.env_ids`` (a batch may hold only some of the
    sub-envs) and grow lazily to the largest env id or reset-mask length seen.

    Args:
        reward: the child reward spec.
        gamma: discount of the running return (``kind="return"`` only), default 0.99.
        epsilon: added to the variance before the square root, default 1e-8.
        update: update the statistics (set ``False``, or the :attr:`update` attribute,
            to freeze them for evaluation).
        kind: ``"return"`` or ``"reward"``.
        task: task card handed to the child if it takes one.

    Terms: ``"raw"`` (the child's reward) and the child's terms as ``"raw/<term>"``.
    Use :meth:`state_dict` / :meth:`load_state_dict` to checkpoint the statistics.
    """

    KINDS = ("return", "reward")

    def __init__(
        self,
        reward: Any,
        gamma: float = 0.99,
        epsilon: float = 1e-8,
        update: bool = True,
        kind: str = "return",
        task: Any = None,
    ):
        super().__init__(reward, task)
        if kind not in self.KINDS:
            raise ConfigError(f"normalize: kind must be one of {list(self.KINDS)}, got {kind!r}")
        self.kind = kind
        self.gamma = _gamma(gamma, "normalize: gamma")
        self.epsilon = _finite_float(epsilon, "normalize: epsilon")
        if self.epsilon <= 0:
            raise ConfigError(f"normalize: epsilon must be > 0, got {epsilon!r}")
        self.update = bool(update)
        self._stats = _RunningMeanStd()
        self._returns = _PerEnvArray()

    @property
    def mean(self) -> float:
        """Running mean of the tracked quantity (returns or rewards)."""
        return self._stats.mean

    @property
    def var(self) -> float:
        """Running population variance of the tracked quantity (1 before any update)."""
        return self._stats.var

    @property
    def count(self) -> int:
        """Number of values the statistics were computed from."""
        return self._stats.count

    @property
    def returns(self) -> np.ndarray:
        """A copy of the per-sub-env running discounted returns."""
        return self._returns.values.copy()

    def _update_returns(self, ids: np.ndarray, r: np.ndarray, done: np.ndarray) -> np.ndarray:
        if ids.size == 0:
            return np.zeros(0, dtype=np.float64)
        self._returns.ensure(int(ids.max()) + 1)
        G = self._returns.values
        if np.unique(ids).size == ids.size:
            g = self.gamma * G[ids] + r
            G[ids] = np.where(done, 0.0, g)
            return g
        # Several rows for one sub-env: take them in order, as consecutive steps.
        g = np.empty(ids.size, dtype=np.float64)
        for i, e in enumerate(ids):
            g[i] = self.gamma * G[e] + r[i]
            G[e] = 0.0 if done[i] else g[i]
        return g

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return the child's reward normalised by the running statistics."""
        out = self._child_out(batch)
        r = out.reward.astype(np.float64)
        n = len(batch)
        if self.kind == "return":
            ids = _env_ids(batch)
            g = self._update_returns(ids, r, _bool_rows(batch.done, n, "done"))
            if self.update:
                self._stats.update(g)
            scaled = r / np.sqrt(self._stats.var + self.epsilon)
        else:
            if self.update:
                self._stats.update(r)
            scaled = (r - self._stats.mean) / np.sqrt(self._stats.var + self.epsilon)
        return RewardOutput(scaled.astype(np.float32), _prefixed("raw", out))

    def reset(self, mask: np.ndarray) -> None:
        """Zero the running return of the sub-envs in ``mask`` (the statistics are kept)."""
        m = _mask_vector(mask)
        self._returns.reset(m)
        super().reset(m)

    def state_dict(self) -> dict[str, Any]:
        """Return the statistics and per-env returns (plus the child's state if it has one)."""
        state: dict[str, Any] = {
            "kind": self.kind,
            "gamma": self.gamma,
            "mean": self._stats.mean,
            "var": self._stats.var,
            "count": self._stats.count,
            "returns": self._returns.values.copy(),
        }
        child_sd = getattr(self.child, "state_dict", None)
        if callable(child_sd):
            state["child"] = child_sd()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ConfigError: keys are missing, or the state was saved with another ``kind``.
        """
        missing = [k for k in ("kind", "mean", "var", "count", "returns") if k not in state]
        if missing:
            raise ConfigError(f"normalize: state dict lacks {missing}; pass what state_dict() returned")
        if state["kind"] != self.kind:
            raise ConfigError(
                f"normalize: state was saved with kind={state['kind']!r} but this reward has kind={self.kind!r}"
            )
        var = float(state["var"])
        count = int(state["count"])
        if not (math.isfinite(var) and var >= 0 and count >= 0 and math.isfinite(float(state["mean"]))):
            raise ConfigError(
                f"normalize: invalid statistics in state dict (mean={state['mean']}, var={var}, count={count}); "
                "pass what state_dict() returned"
            )
        self._stats.mean = float(state["mean"])
        self._stats.var = var
        self._stats.count = count
        self._returns.values = np.asarray(state["returns"], dtype=np.float64).reshape(-1).copy()
        if "child" in state:
            child_load = getattr(self.child, "load_state_dict", None)
            if callable(child_load):
                child_load(state["child"])


# --------------------------------------------------------------------------- clip


@register_reward("clip")
class Clip(_SingleChild):
    """Clip a child reward to ``[low, high]``.

    Args:
        reward: the child reward spec.
        low: lower bound, default -1 (``None``: unbounded below).
        high: upper bound, default 1 (``None``: unbounded above). At least one bound
            is needed, and ``low <= high``.
        task: task card handed to the child if it takes one.

    Terms: ``"raw"`` (the unclipped reward) and the child's terms as ``"raw/<term>"``.
    """

    def __init__(self, reward: Any, low: float | None = -1.0, high: float | None = 1.0, task: Any = None):
        if low is None and high is None:
            raise ConfigError("clip: give low=..., high=... or both; with neither it would do nothing")
        self.low = None if low is None else _finite_float(low, "clip: low")
        self.high = None if high is None else _finite_float(high, "clip: high")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ConfigError(f"clip: low ({self.low}) is greater than high ({self.high}); swap them")
        super().__init__(reward, task)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return the child's reward clipped to ``[low, high]``."""
        out = self._child_out(batch)
        r = np.clip(out.reward, self.low, self.high).astype(np.float32)
        return RewardOutput(r, _prefixed("raw", out))


# --------------------------------------------------------------------------- progress (Gao et al. 2024)


@register_reward("progress-clip")
class ProgressClip(_SingleChild):
    """The clip mechanism of Gao et al. 2024: ``r' = min(r − eta, 0)``.

    Bounding a dense (progress / process) reward above by 0 means that a longer episode
    can never collect more reward, so the agent cannot farm reward by lengthening
    episodes or repeating good-looking steps.

    Args:
        reward: the child reward spec.
        eta: the threshold η subtracted before clipping (default 0).
        task: task card handed to the child if it takes one.

    Terms: ``"raw"`` and the child's terms as ``"raw/<term>"``.
    """

    def __init__(self, reward: Any, eta: float = 0.0, task: Any = None):
        self.eta = _finite_float(eta, "progress-clip: eta")
        super().__init__(reward, task)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return ``min(r − eta, 0)``."""
        out = self._child_out(batch)
        r = np.minimum(out.reward.astype(np.float64) - self.eta, 0.0).astype(np.float32)
        return RewardOutput(r, _prefixed("raw", out))


def delta_rewards(r: Any, episode_ends: Any = None) -> np.ndarray:
    """The *offline* (look-ahead) delta mechanism of Gao et al. 2024, for relabelling.

    For one trajectory ``r_0 … r_{T−1}``::

        d_k = r_k − r_{k+1}   for k < T − 1
        d_{T−1} = r_{T−1}

    so the return from any step telescopes to that step's own reward,
    ``Σ_{t ≥ k} d_t = r_k``: the value of a step is what the reward model said about
    it, and repeating steps cannot be farmed. It needs ``r_{k+1}``, so it is for stored
    trajectories; the causal form for a live env is :class:`ProgressDelta`.

    Args:
        r: a 1-D array of rewards.
        episode_ends: optional ``bool`` array of the same length marking the last step of
            each episode, for a flat array holding several consecutive trajectories; each
            is transformed on its own (the final segment ends at the end of the array).

    Returns:
        A float array of the same shape (float64 unless ``r`` is already floating).

    Raises:
        ConfigError: ``r`` is not 1-D or ``episode_ends`` does not match it.
    """
    arr = np.asarray(r)
    if arr.ndim != 1:
        raise ConfigError(f"delta_rewards expects a 1-D array of one trajectory's rewards, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    d = arr.copy()
    if arr.size > 1:
        d[:-1] = arr[:-1] - arr[1:]
    if episode_ends is not None:
        ends = np.asarray(episode_ends, dtype=bool)
        if ends.shape != arr.shape:
            raise ConfigError(
                f"delta_rewards: episode_ends has shape {ends.shape} but r has shape {arr.shape}; "
                "give one flag per step"
            )
        # The last step of every episode keeps its own reward (no look-ahead across episodes).
        d[ends] = arr[ends]
    return d


@register_reward("progress-delta")
class ProgressDelta(_SingleChild):
    """The *online* (causal) delta mechanism of Gao et al. 2024, for a live env.

    In a live env ``r_{t+1}`` is not known yet, so the look-ahead form of
    :func:`delta_rewards` cannot be used. This plugin returns instead::

        r'_t = r_t − r_{t−1},   r_{−1} = 0 at each episode start

    per sub-env (indexed by ``batch.env_ids``; the previous reward is forgotten at the
    end of an episode and by :meth:`reset`). The return over steps ``0 … k`` then
    telescopes to ``Σ_{t ≤ k} r'_t = r_k``: the agent is paid for the *change* of the
    progress reward, so looping back to an earlier state earns nothing net.

    Args:
        reward: the child reward spec (a progress / process reward).
        task: task card handed to the child if it takes one.

    Terms: ``"raw"`` and the child's terms as ``"raw/<term>"``.
    """

    def __init__(self, reward: Any, task: Any = None):
        super().__init__(reward, task)
        self._prev = _PerEnvArray()

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Return ``r_t − r_{t−1}`` per sub-env."""
        out = self._child_out(batch)
        r = out.reward.astype(np.float64)
        ids = _env_ids(batch)
        done = _bool_rows(batch.done, len(batch), "done")
        if ids.size == 0:
            return RewardOutput(np.zeros(0, dtype=np.float32), _prefixed("raw", out))
        self._prev.ensure(int(ids.max()) + 1)
        prev = self._prev.values
        if np.unique(ids).size == ids.size:
            d = r - prev[ids]
            prev[ids] = np.where(done, 0.0, r)
        else:
            # Several rows for one sub-env: take them in order, as consecutive steps.
            d = np.empty(ids.size, dtype=np.float64)
            for i, e in enumerate(ids):
                d[i] = r[i] - prev[e]
                prev[e] = 0.0 if done[i] else r[i]
        return RewardOutput(d.astype(np.float32), _prefixed("raw", out))

    def reset(self, mask: np.ndarray) -> None:
        """Start new episodes (``r_{−1} = 0``) for the sub-envs in ``mask``."""
        m = _mask_vector(mask)
        self._prev.reset(m)
        super().reset(m)

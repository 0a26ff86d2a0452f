"""Distances between reward functions: EPIC (Gleave et al. 2020) and STARC (Skalse et al. 2023).

Two rewards that differ only by potential shaping ``γΦ(s') − Φ(s)`` or by a positive
scale have the same optimal policies (Ng et al. 1999); a useful distance between
rewards should be (close to) zero for them and large for rewards that rank policies
differently. Both distances here first *canonicalise* a reward (remove shaping), then
compare the canonical rewards in a scale-free way.

**EPIC** — Gleave, Dennis, Legg, Russell, Leike, "Quantifying Differences in Reward
Functions", ICLR 2021 (arXiv:2006.13900). With ``S, S' ~ D_S`` and ``A ~ D_A``
independent (a *coverage* distribution)::

    C(R)(s, a, s') = R(s, a, s') + E[γ R(s', A, S') − R(s, A, S') − γ R(S, A, S')]
    D_EPIC(R_A, R_B) = sqrt((1 − ρ(C(R_A), C(R_B))) / 2)

with ``ρ`` the Pearson correlation over transitions ``(s, a, s')`` drawn from a
coverage distribution ``D``. ``D_EPIC ∈ [0, 1]``: 0 for rewards equal up to shaping
and positive scale, 1 for ``R_B = −R_A``.

**STARC** — Skalse, Farnik, Motwani, Jenner, Gleave, Abate, "STARC: A General Framework
For Quantifying Differences Between Reward Functions", ICLR 2024 (arXiv:2309.15257).
A STARC metric is ``d(R_A, R_B) = m(s(R_A), s(R_B))`` with ``s(R) = c(R) / n(c(R))``
(``s(R) = c(R)`` when ``n(c(R)) = 0``), ``c`` a canonicalisation function, ``n`` a
norm and ``m`` a metric. Implemented here: the *value-adjusted levelling* (VAL)
canonicalisation with the uniformly random policy ``π``::

    c(R)(s, a, s') = E_{S' ~ τ(s, a)}[R(s, a, S') − V^π(s) + γ V^π(S')]

(independent of the ``s'`` argument), ``n`` = the L2 norm and ``m`` = the L2
distance, as in the authors' released experiment code (``lucyfarnik/starc``, whose
``distance_funcs`` normalise by the L2 norm and take the L2 norm of the difference).
With the L2 norm on both, ``d ∈ [0, 2]``: 0 for rewards equal up to shaping and
positive scale, ``√2`` for orthogonal canonical rewards, 2 for ``R_B = −R_A``.
:func:`starc_distance` returns this value; divide by 2 for a ``[0, 1]`` scale. The
L2 norm is taken over ``(s, a)`` pairs, uniformly weighted by default (the
unweighted L2 norm over all ``(s, a, s')`` triples gives the same distance, since
``c(R)`` does not depend on ``s'``); the sample-based version weights pairs by the
distribution they were sampled from. Terminal states follow
:mod:`robo_reward.tabular`'s convention (``V(terminal) = 0``), so shaping with
``Φ(terminal) = 0`` is removed exactly.

Both come in an *exact* tabular form (full enumeration of a :class:`TabularMDP`) and a
*sample-based* form for continuous spaces, where a reward is a batched callable
``r(obs, act, next_obs) -> float[n]`` (or a :class:`~robo_reward.core.types.RewardPlugin`):

* :func:`epic_distance_sampled` needs only samples of states and actions (or a dataset
  of transitions): EPIC evaluates rewards on arbitrary, even physically impossible,
  transitions ``(s', A, S')``.
* STARC needs the dynamics. VAL's canonical reward is ``c(s, a) = Q^π(s, a) − V^π(s)``,
  the advantage under ``π``, and there are two estimators:

  - :func:`starc_distance_rollouts` — Monte Carlo: from each coverage state of a
    Gymnasium env whose state can be restored (MuJoCo: ``env.unwrapped.set_state``),
    :func:`simulate_env_advantage_rollouts` simulates rollouts that start with the
    sampled action or with a ``π`` action; the difference of their discounted returns
    is an unbiased estimate of ``c(s, a)`` (up to the ``γ^H`` tail). No function fitting;
    the default of ``robo-reward reward compare``.
  - :func:`starc_distance_sampled` — a fitted ``V^π`` (:func:`fit_value`: LSTD on
    features, or fitted policy evaluation with a small MLP) on next states from
    :func:`simulate_transitions` (a ``sample_next(obs, act, k)`` callable) or
    :func:`simulate_env_transitions`. Cheap, and exact in the limit for tabular
    features, but on continuous tasks the result depends on the function class: ``c``
    is a TD residual of the fitted ``V``, so its errors enter the distance directly
    (cross-fitting keeps a flexible ``V`` from absorbing ``c``, not from being wrong).

Distances treat the problem as continuing (discounted), as both papers do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..core.errors import ConfigError, RewardComputationError
from ..core.types import RewardPlugin, TransitionBatch
from ..tabular import TabularMDP, as_reward_array, policy_evaluation, policy_matrix, uniform_policy

__all__ = [
    "RewardFn",
    "Transitions",
    "SimulatedTransitions",
    "pearson_distance",
    "epic_canonicalize",
    "epic_distance",
    "val_canonicalize",
    "starc_standardize",
    "starc_distance",
    "as_reward_fn",
    "epic_canonicalize_sampled",
    "epic_distance_sampled",
    "simulate_transitions",
    "simulate_env_transitions",
    "AdvantageRollouts",
    "simulate_env_advantage_rollouts",
    "starc_distance_rollouts",
    "random_features",
    "fit_value",
    "val_canonicalize_sampled",
    "starc_distance_sampled",
]

#: A batched reward function: ``r(obs[n, ...], act[n, ...], next_obs[n, ...]) -> float[n]``.
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


# =========================================================================== shared


def pearson_distance(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """``sqrt((1 − ρ) / 2)`` with ``ρ`` the (optionally weighted) Pearson correlation of ``x`` and ``y``.

    A constant input has no correlation with anything; by convention ``ρ = 1`` when
    both are constant (they are equivalent rewards) and ``ρ = 0`` when only one is.

    Raises:
        ConfigError: shapes differ, weights are negative or all zero, or values are not finite.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ConfigError(f"pearson_distance needs two non-empty arrays of the same size, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError("pearson_distance got NaN or infinite values")
    if weights is None:
        w = np.full(x.shape, 1.0 / x.size)
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != x.shape or (w < 0).any() or w.sum() <= 0:
            raise ConfigError("weights must be non-negative, not all zero, and one per value")
        w = w / w.sum()
    xc = x - w @ x
    yc = y - w @ y
    vx, vy = w @ (xc * xc), w @ (yc * yc)
    scale = max(np.abs(x).max(), np.abs(y).max(), 1e-300)
    tiny = (1e-12 * scale) ** 2
    if vx <= tiny and vy <= tiny:
        rho = 1.0
    elif vx <= tiny or vy <= tiny:
        rho = 0.0
    else:
        rho = float(np.clip((w @ (xc * yc)) / np.sqrt(vx * vy), -1.0, 1.0))
    return float(np.sqrt(max(0.0, (1.0 - rho) / 2.0)))


def _rng(seed: int | None, salt: int) -> np.random.Generator:
    """A generator for one use: the same ``seed`` with different ``salt`` gives independent streams.

    (Two ``default_rng(0)`` streams drawing integers in different ranges are correlated,
    which would correlate, e.g., user-sampled states with the actions drawn here.)
    """
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(salt), int(seed)])


def _dist(p: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if p is None:
        return np.full(n, 1.0 / n)
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n,) or (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise ConfigError(f"{what} must be a probability vector of shape ({n},)")
    return p


# =========================================================================== tabular EPIC


def epic_canonicalize(
    mdp: TabularMDP,
    reward: np.ndarray | None = None,
    *,
    state_dist: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
) -> np.ndarray:
    """EPIC's canonically shaped reward ``C(R)[s, a, s']`` (Gleave et al. 2020, Definition 4.1).

    Args:
        mdp: gives the sizes and ``γ`` (transitions are not used: EPIC is dynamics-free).
        reward: broadcastable to ``[S, A, S]`` (default: ``mdp.reward``).
        state_dist: ``D_S`` over states (default uniform).
        action_dist: ``D_A`` over actions (default uniform).
    """
    S, A, g = mdp.n_states, mdp.n_actions, mdp.gamma
    R = mdp.reward if reward is None else as_reward_array(reward, S, A)
    ds, da = _dist(state_dist, S, "state_dist"), _dist(action_dist, A, "action_dist")
    # m(x) = E_{A~D_A, S'~D_S}[R(x, A, S')]
    m = np.einsum("xat,a,t->x", R, da, ds)
    mean_all = float(ds @ m)
    return R + g * m[None, None, :] - m[:, None, None] - g * mean_all


def epic_distance(
    mdp: TabularMDP,
    reward_a: np.ndarray,
    reward_b: np.ndarray,
    *,
    state_dist: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
    transition_dist: np.ndarray | None = None,
) -> float:
    """Exact EPIC distance between two rewards of a tabular MDP, in ``[0, 1]``.

    Args:
        mdp: sizes and ``γ``.
        reward_a, reward_b: rewards broadcastable to ``[S, A, S]``.
        state_dist, action_dist: the coverage distributions ``D_S``, ``D_A`` of the
            canonicalisation (default uniform).
        transition_dist: weights ``[S, A, S]`` of the Pearson correlation (default
            ``D_S × D_A × D_S``, the independent coverage distribution of the paper).
    """
    S, A = mdp.n_states, mdp.n_actions
    ca = epic_canonicalize(mdp, reward_a, state_dist=state_dist, action_dist=action_dist)
    cb = epic_canonicalize(mdp, reward_b, state_dist=state_dist, action_dist=action_dist)
    if transition_dist is None:
        ds, da = _dist(state_dist, S, "state_dist"), _dist(action_dist, A, "action_dist")
        w = ds[:, None, None] * da[None, :, None] * ds[None, None, :]
    else:
        w = np.asarray(transition_dist, dtype=np.float64)
        if w.shape != (S, A, S):
            raise ConfigError(f"transition_dist must have shape [{S}, {A}, {S}], got {w.shape}")
    return pearson_distance(ca, cb, w)


# =========================================================================== tabular STARC


def val_canonicalize(mdp: TabularMDP, reward: np.ndarray | None = None, policy: np.ndarray | None = None) -> np.ndarray:
    """STARC's value-adjusted levelling ``c(R)(s, a) = E_{S'}[R(s,a,S') + γ V^π(S')] − V^π(s)``, shape ``[S, A]``.

    ``c(R)(s, a, s')`` does not depend on ``s'``; broadcast with ``c[:, :, None]`` for
    the ``[S, A, S]`` form. ``policy`` defaults to the uniformly random policy; rows of
    terminal states are 0.
    """
    R = mdp.reward if reward is None else as_reward_array(reward, mdp.n_states, mdp.n_actions)
    pi = uniform_policy(mdp) if policy is None else policy_matrix(mdp, policy)
    V = policy_evaluation(mdp, pi, R)
    cont = (~mdp.terminal).astype(np.float64)
    c = (mdp.transitions * (R + mdp.gamma * (cont * V)[None, None, :])).sum(axis=2) - V[:, None]
    c[mdp.terminal] = 0.0
    return c


def _sa_weights(mdp: TabularMDP, weights: np.ndarray | None) -> np.ndarray:
    S, A = mdp.n_states, mdp.n_actions
    if weights is None:
        w = np.ones((S, A))
        w[mdp.terminal] = 0.0
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (S, A) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"weights must be non-negative [{S}, {A}] and not all zero")
    return w / w.sum()


def starc_standardize(
    mdp: TabularMDP,
    reward: np.ndarray | None = None,
    *,
    policy: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """``s(R) = c(R) / ‖c(R)‖₂`` over ``(s, a)`` (``c(R)`` itself when its norm is 0), shape ``[S, A]``.

    ``weights`` weight the L2 norm over ``(s, a)`` (default uniform over non-terminal states).
    """
    c = val_canonicalize(mdp, reward, policy)
    w = _sa_weights(mdp, weights)
    norm = float(np.sqrt((w * c * c).sum()))
    scale = max(np.abs(c).max(), 1e-300)
    return c / norm if norm > 1e-12 * scale and norm > 0 else c


def starc_distance(
    mdp: TabularMDP,
    reward_a: np.ndarray,
    reward_b: np.ndarray,
    *,
    policy: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> float:
    """Exact STARC distance (VAL canonicalisation, L2 normalisation, L2 distance), in ``[0, 2]``.

    Args:
        mdp: the MDP (transitions, ``γ``, terminal states).
        reward_a, reward_b: rewards broadcastable to ``[S, A, S]``.
        policy: ``π`` of the canonicalisation (default uniformly random).
        weights: ``[S, A]`` weights of the L2 norm and distance (default uniform over
            non-terminal states).
    """
    w = _sa_weights(mdp, weights)
    sa = starc_standardize(mdp, reward_a, policy=policy, weights=w)
    sb = starc_standardize(mdp, reward_b, policy=policy, weights=w)
    return float(np.sqrt((w * (sa - sb) ** 2).sum()))


# =========================================================================== reward callables


class _NoInfo(Mapping):
    """Stands in for ``info`` on transitions that were not simulated: any read raises."""

    def _fail(self, *_: Any) -> Any:
        raise ConfigError(
            "this reward reads the step's `info`, which exists only for transitions produced by the simulator; "
            "EPIC evaluates rewards on transitions that were never simulated — compare it with STARC "
            "(starc_distance_sampled / `reward compare`), which only uses simulated transitions"
        )

    __getitem__ = _fail  # type: ignore[assignment]
    __iter__ = _fail  # type: ignore[assignment]
    __contains__ = _fail  # type: ignore[assignment]
    get = _fail  # type: ignore[assignment]

    def __len__(self) -> int:
        return 0


def _plugin_fn(plugin: RewardPlugin) -> RewardFn:
    if "frames" in plugin.requires:
        raise ConfigError(
            f"reward {plugin.name or type(plugin).__name__!r} scores rendered frames; reward distances "
            "evaluate rewards on many off-trajectory transitions and do not render them"
        )

    def fn(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        n = len(act)
        batch = TransitionBatch(
            terminated=np.zeros(n, bool),
            truncated=np.zeros(n, bool),
            env_reward=np.full(n, np.nan, np.float32),
            env_ids=np.arange(n),
            obs=obs,
            action=act,
            next_obs=next_obs,
            infos=[_NoInfo()] * n,
        )
        try:
            return plugin(batch).reward
        except RewardComputationError as exc:
            if "not finite" in str(exc):
                raise ConfigError(
                    f"reward {plugin.name or type(plugin).__name__!r} uses the env's own reward, which only "
                    "simulated transitions have; EPIC evaluates rewards on transitions that were never simulated. "
                    "Compare it with STARC instead (starc_distance_rollouts / starc_distance_sampled / `reward compare`)"
                ) from None
            raise ConfigError(
                f"reward {plugin.name or type(plugin).__name__!r} could not be evaluated on transitions that were "
                f"not simulated: {exc}"
            ) from exc

    return fn


def as_reward_fn(reward: Any, task: Any = None) -> RewardFn:
    """Turn a reward into a batched callable ``r(obs, act, next_obs) -> float[n]``.

    Accepts such a callable, a :class:`~robo_reward.core.types.RewardPlugin`, or a reward
    spec for :func:`robo_reward.make_reward` (``task`` is passed on). Plugins are given
    no ``info`` and no env reward (transitions that were never simulated have neither):
    a plugin that reads them raises :class:`ConfigError`.
    """
    if isinstance(reward, RewardPlugin):
        return _plugin_fn(reward)
    if isinstance(reward, (str, Mapping)):
        from ..core.registry import make_reward

        return _plugin_fn(make_reward(reward, task=task))
    if callable(reward):
        return reward
    raise ConfigError(
        f"a reward must be a callable r(obs, act, next_obs), a RewardPlugin or a reward spec; got {type(reward).__name__}"
    )


def _call(fn: RewardFn, obs: Any, act: Any, next_obs: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(fn(obs, act, next_obs), dtype=np.float64).reshape(-1)
    if out.shape != (n,):
        raise ConfigError(f"{what} returned shape {out.shape} for a batch of {n}; it must return float[n]")
    if not np.all(np.isfinite(out)):
        raise ConfigError(f"{what} returned NaN or infinite values")
    return out


def _rows(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, Mapping):
        return {k: _rows(v, idx) for k, v in x.items()}
    return np.asarray(x)[idx]


def _len(x: Any) -> int:
    if isinstance(x, Mapping):
        return _len(next(iter(x.values())))
    return int(np.asarray(x).shape[0])


def _concat(a: Any, b: Any) -> Any:
    if isinstance(a, Mapping):
        return {k: _concat(a[k], b[k]) for k in a}
    return np.concatenate([np.asarray(a), np.asarray(b)], axis=0)


# =========================================================================== sample-based EPIC


@dataclass
class Transitions:
    """A batch of transitions ``(obs[n, ...], action[n, ...], next_obs[n, ...])``."""

    obs: Any
    action: Any
    next_obs: Any

    def __post_init__(self) -> None:
        n = _len(self.obs)
        if _len(self.action) != n or _len(self.next_obs) != n:
            raise ConfigError("Transitions: obs, action and next_obs must have the same number of rows")

    def __len__(self) -> int:
        return _len(self.obs)


Sampler = Callable[[int, np.random.Generator], Any]


def epic_canonicalize_sampled(
    reward: Any,
    transitions: Transitions,
    state_samples: Any,
    action_samples: Any,
    gamma: float,
) -> np.ndarray:
    """EPIC canonical reward of each transition, by Monte Carlo (Gleave et al. 2020, §4.1).

    The expectations over ``A ~ D_A`` and ``S' ~ D_S`` are means over the ``M`` pairs
    ``(action_samples[j], state_samples[j])``; the constant term pairs them with a
    shuffled copy of the states. Rewards that differ by potential shaping get
    canonical rewards that differ by a constant (exactly, for any samples), which the
    Pearson correlation ignores.

    Args:
        reward: a reward (see :func:`as_reward_fn`).
        transitions: the ``n`` transitions to canonicalise.
        state_samples: ``M`` states from ``D_S`` (``M`` at least 2).
        action_samples: ``M`` actions from ``D_A``.
        gamma: discount.

    Returns:
        ``float64[n]``.
    """
    fn = as_reward_fn(reward)
    n, M = len(transitions), _len(state_samples)
    if M < 2 or _len(action_samples) != M:
        raise ConfigError("epic canonicalisation needs at least 2 state samples and as many action samples")
    # Ordering shared by all rewards (same samples => shaping cancels exactly).
    perm = np.roll(np.arange(M), 1)
    base = _call(fn, transitions.obs, transitions.action, transitions.next_obs, n, "reward")

    def mean_from(states: Any) -> np.ndarray:
        """E_{A,S'}[R(x, A, S')] for each row x of ``states``, over the M sample pairs."""
        k = _len(states)
        out = np.empty(k)
        chunk = max(1, 200_000 // M)
        for lo in range(0, k, chunk):
            idx = np.arange(lo, min(k, lo + chunk))
            x = _rows(states, np.repeat(idx, M))
            a = _rows(action_samples, np.tile(np.arange(M), len(idx)))
            s2 = _rows(state_samples, np.tile(np.arange(M), len(idx)))
            vals = _call(fn, x, a, s2, len(idx) * M, "reward")
            out[lo : lo + len(idx)] = vals.reshape(len(idx), M).mean(axis=1)
        return out

    m_next = mean_from(transitions.next_obs)
    m_cur = mean_from(transitions.obs)
    const = _call(
        fn, _rows(state_samples, perm), action_samples, state_samples, M, "reward"
    ).mean()
    return base + gamma * m_next - m_cur - gamma * const


def epic_distance_sampled(
    reward_a: Any,
    reward_b: Any,
    *,
    gamma: float,
    transitions: Transitions | None = None,
    state_sampler: Sampler | None = None,
    action_sampler: Sampler | None = None,
    n_transitions: int = 2048,
    n_mean: int = 512,
    seed: int | None = 0,
) -> float:
    """Sample-based EPIC distance for continuous (or any) spaces, in ``[0, 1]``.

    The Pearson correlation is taken over ``transitions`` (a dataset, e.g. from
    rollouts) or, without them, over ``n_transitions`` independent draws
    ``(S, A, S')`` from the samplers (the paper's product coverage distribution). The
    canonicalisation's ``D_S`` and ``D_A`` are ``state_sampler`` / ``action_sampler``,
    or, when not given, ``n_mean`` states drawn from the dataset's observations and
    next observations and ``n_mean`` of its actions (independently shuffled).

    Args:
        reward_a, reward_b: rewards (callables, plugins or specs; see :func:`as_reward_fn`).
        gamma: discount.
        transitions: a dataset of transitions.
        state_sampler, action_sampler: ``sampler(n, rng) -> [n, ...]``.
        n_transitions: transitions to draw when no dataset is given.
        n_mean: samples for each expectation in the canonicalisation.
        seed: seed of the sampling.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
    rng = _rng(seed, 0xE91C)
    if transitions is None:
        if state_sampler is None or action_sampler is None:
            raise ConfigError("epic_distance_sampled needs transitions, or both state_sampler and action_sampler")
        transitions = Transitions(
            state_sampler(n_transitions, rng), action_sampler(n_transitions, rng), state_sampler(n_transitions, rng)
        )
    if len(transitions) < 2:
        raise ConfigError("epic_distance_sampled needs at least 2 transitions")
    if state_sampler is not None:
        states = state_sampler(n_mean, rng)
    else:
        pool = _concat(transitions.obs, transitions.next_obs)
        states = _rows(pool, rng.integers(0, _len(pool), size=n_mean))
    if action_sampler is not None:
        actions = action_sampler(n_mean, rng)
    else:
        actions = _rows(transitions.action, rng.integers(0, len(transitions), size=n_mean))
    ca = epic_canonicalize_sampled(reward_a, transitions, states, actions, gamma)
    cb = epic_canonicalize_sampled(reward_b, transitions, states, actions, gamma)
    return pearson_distance(ca, cb)


# =========================================================================== simulated transitions


@dataclass
class SimulatedTransitions:
    """States with an action each and ``k`` simulated next states: the data of sample-based STARC.

    Attributes:
        obs: ``[n, ...]`` observations of the sampled states (from a coverage distribution).
        action: ``[n, ...]`` one action per state, drawn from the canonicalisation policy
            ``π`` (uniformly random by default).
        next_obs: ``[n, k, ...]`` next observations from the simulator.
        terminated: ``bool[n, k]``, the next state is terminal (its value counts as 0).
        env_reward: ``float[n, k]`` the env's own reward of each simulated step, if known.
        infos: ``n`` lists of ``k`` info dicts of the simulated steps, if known.
    """

    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    env_reward: np.ndarray | None = None
    infos: list[list[dict]] | None = None

    def __post_init__(self) -> None:
        self.obs = np.asarray(self.obs)
        self.action = np.asarray(self.action)
        self.next_obs = np.asarray(self.next_obs)
        n = self.obs.shape[0]
        if self.next_obs.ndim < 2 or self.next_obs.shape[0] != n or self.action.shape[0] != n:
            raise ConfigError("SimulatedTransitions: obs [n, ...], action [n, ...], next_obs [n, k, ...] must share n")
        k = self.next_obs.shape[1]
        self.terminated = np.asarray(self.terminated, dtype=bool)
        if self.terminated.shape != (n, k):
            raise ConfigError(f"terminated must have shape ({n}, {k}), got {self.terminated.shape}")
        if self.env_reward is not None:
            self.env_reward = np.asarray(self.env_reward, dtype=np.float64)
            if self.env_reward.shape != (n, k):
                raise ConfigError(f"env_reward must have shape ({n}, {k}), got {self.env_reward.shape}")

    @property
    def n(self) -> int:
        """Number of sampled states."""
        return int(self.obs.shape[0])

    @property
    def k(self) -> int:
        """Simulated next states per state."""
        return int(self.next_obs.shape[1])

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(obs, action, next_obs)`` repeated to ``n * k`` rows (row ``i * k + j``)."""
        rep = np.repeat(np.arange(self.n), self.k)
        return self.obs[rep], self.action[rep], self.next_obs.reshape(self.n * self.k, *self.next_obs.shape[2:])

    def subset(self, index: np.ndarray) -> "SimulatedTransitions":
        """The rows ``index`` as a new object."""
        return SimulatedTransitions(
            self.obs[index],
            self.action[index],
            self.next_obs[index],
            self.terminated[index],
            None if self.env_reward is None else self.env_reward[index],
            None if self.infos is None else [self.infos[i] for i in np.asarray(index).reshape(-1)],
        )

    def evaluate(self, reward: Any, task: Any = None) -> np.ndarray:
        """The reward of every simulated step, ``float64[n, k]``.

        ``reward`` is an array ``[n, k]``, a callable ``r(obs, act, next_obs)``, a
        :class:`RewardPlugin` or a reward spec. Plugins get the env reward and infos of
        the simulation where known (so the ``env`` reward works here).
        """
        n, k = self.n, self.k
        if isinstance(reward, np.ndarray):
            arr = np.asarray(reward, dtype=np.float64)
            if arr.shape != (n, k):
                raise ConfigError(f"a reward array must have shape ({n}, {k}), got {arr.shape}")
            return arr
        if isinstance(reward, (str, Mapping)):
            from ..core.registry import make_reward

            reward = make_reward(reward, task=task)
        obs, act, nxt = self.flat()
        if isinstance(reward, RewardPlugin):
            if "frames" in reward.requires:
                raise ConfigError(f"reward {reward.name!r} scores rendered frames; reward distances do not render")
            infos = (
                [info for row in self.infos for info in row] if self.infos is not None else [_NoInfo()] * (n * k)
            )
            env_r = self.env_reward.reshape(-1) if self.env_reward is not None else np.full(n * k, np.nan)
            batch = TransitionBatch(
                terminated=self.terminated.reshape(-1),
                truncated=np.zeros(n * k, bool),
                env_reward=env_r.astype(np.float32),
                env_ids=np.arange(n * k),
                obs=obs,
                action=act,
                next_obs=nxt,
                infos=infos,
            )
            try:
                out = reward(batch).reward
            except RewardComputationError as exc:
                raise ConfigError(
                    f"reward {reward.name or type(reward).__name__!r} could not be evaluated on these transitions "
                    f"({exc}); it may need the env's own reward, which only simulated transitions from "
                    "simulate_env_transitions carry"
                ) from exc
            return np.asarray(out, dtype=np.float64).reshape(n, k)
        if callable(reward):
            return _call(reward, obs, act, nxt, n * k, "reward").reshape(n, k)
        raise ConfigError(f"cannot evaluate a reward of type {type(reward).__name__}")


def simulate_transitions(
    obs: np.ndarray,
    sample_next: Callable[..., np.ndarray],
    action_sampler: Sampler,
    *,
    k: int = 1,
    terminal_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int | None = 0,
) -> SimulatedTransitions:
    """Sample one action per state and ``k`` next states from a simulator callable.

    Args:
        obs: ``[n, ...]`` states from the coverage distribution.
        sample_next: ``sample_next(obs, act, k) -> next_obs[k, ...]`` for one state
            and action (if it accepts an ``rng`` keyword, a generator is passed).
        action_sampler: ``sampler(n, rng) -> actions[n, ...]``, the policy ``π`` of the
            canonicalisation (uniformly random for STARC's VAL).
        k: next states per state (1 suffices for deterministic simulators).
        terminal_fn: ``terminal_fn(next_obs[m, ...]) -> bool[m]`` (default: never terminal).
        seed: seed of the action sampling.
    """
    import inspect

    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    rng = _rng(seed, 0x51A7)
    obs = np.asarray(obs)
    n = obs.shape[0]
    act = np.asarray(action_sampler(n, rng))
    try:
        takes_rng = "rng" in inspect.signature(sample_next).parameters
    except (TypeError, ValueError):
        takes_rng = False
    nexts = []
    for i in range(n):
        nx = sample_next(obs[i], act[i], k, rng=rng) if takes_rng else sample_next(obs[i], act[i], k)
        nx = np.asarray(nx)
        if nx.shape[0] != k:
            raise ConfigError(f"sample_next returned {nx.shape[0]} next states, expected k={k}")
        nexts.append(nx)
    next_obs = np.stack(nexts)
    if terminal_fn is None:
        term = np.zeros((n, k), dtype=bool)
    else:
        term = np.asarray(terminal_fn(next_obs.reshape(n * k, *next_obs.shape[2:])), dtype=bool).reshape(n, k)
    return SimulatedTransitions(obs, act, next_obs, term)


class _StateAccess:
    """Save and restore the simulator state of a Gymnasium env (MuJoCo, MetaWorld, classic control)."""

    def __init__(self, env: Any):
        self.u = env.unwrapped
        u = self.u
        if hasattr(u, "get_env_state") and hasattr(u, "set_env_state"):
            self.kind = "metaworld"
        elif hasattr(u, "set_state") and hasattr(u, "data") and hasattr(u.data, "qpos"):
            self.kind = "mujoco"
        elif hasattr(u, "state") and u.state is not None:
            self.kind = "attr"
        else:
            raise ConfigError(
                f"cannot save and restore the state of {type(u).__name__}: STARC needs next states sampled from "
                "a given state. Supported: MuJoCo envs (set_state), MetaWorld (set_env_state) and envs with a "
                "`state` attribute; otherwise pass sample_next=... to simulate_transitions"
            )

    def get(self) -> Any:
        u = self.u
        extra = {k: copy.deepcopy(getattr(u, k)) for k in ("curr_path_length", "_prev_obs", "_last_stable_obs", "_last_rand_vec") if hasattr(u, k)}
        if self.kind == "metaworld":
            return ("mw", copy.deepcopy(u.get_env_state()), extra)
        if self.kind == "mujoco":
            d = u.data
            act = d.act.copy() if getattr(d, "act", None) is not None and d.act.size else None
            return ("mj", (d.qpos.copy(), d.qvel.copy(), act, float(d.time)), extra)
        return ("attr", copy.deepcopy(u.state), extra)

    def set(self, snap: Any) -> None:
        kind, state, extra = snap
        u = self.u
        if kind == "mw":
            u.set_env_state(copy.deepcopy(state))
        elif kind == "mj":
            qpos, qvel, act, t = state
            u.set_state(qpos, qvel)
            if act is not None:
                u.data.act[:] = act
            u.data.time = t
        else:
            u.state = copy.deepcopy(state)
        for k, v in extra.items():
            setattr(u, k, copy.deepcopy(v))


def simulate_env_transitions(
    env: Any,
    n_states: int,
    *,
    k: int = 1,
    seed: int | None = 0,
    rollout_policy: Callable[[np.ndarray, np.random.Generator], Any] | None = None,
    progress: bool = False,
) -> tuple[SimulatedTransitions, Transitions]:
    """Collect coverage states by random rollouts of a Gymnasium env and simulate a step from each.

    Rollouts with ``rollout_policy`` (default: uniformly random actions) visit ``n_states``
    states; at each, the simulator state is saved, an action is drawn uniformly from the
    action space (STARC's uniform ``π``) and ``k`` next states are simulated by restoring
    the state and stepping the *unwrapped* env (no time limit, no wrappers). For MuJoCo,
    the state is ``qpos``/``qvel`` (``env.unwrapped.set_state``).

    Returns:
        ``(simulated, rollouts)``: the :class:`SimulatedTransitions` (with the env reward
        and infos of each simulated step) and the rollout :class:`Transitions`
        (a coverage dataset for :func:`epic_distance_sampled`).

    Raises:
        ConfigError: the env's state cannot be saved and restored.
    """
    if n_states < 2 or k < 1:
        raise ConfigError("simulate_env_transitions needs n_states >= 2 and k >= 1")
    rng = _rng(seed, 0x3E9A)
    space = env.action_space
    space.seed(int(rng.integers(2**31)))
    obs_l, act_l, next_l, term_l, rew_l, info_l = [], [], [], [], [], []
    r_obs, r_act, r_next = [], [], []
    it: Iterator[int] = range(n_states)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="simulating transitions", leave=False)
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    access = _StateAccess(env)
    u = access.u
    for _ in it:
        snap = access.get()
        a = space.sample()
        nx_k, term_k, rew_k, info_k = [], [], [], []
        for _j in range(k):
            access.set(snap)
            nx, r, term, _trunc, info = u.step(a)
            nx_k.append(np.asarray(nx))
            term_k.append(bool(term))
            rew_k.append(float(r))
            info_k.append(dict(info))
        access.set(snap)
        obs_l.append(np.asarray(obs))
        act_l.append(np.asarray(a))
        next_l.append(np.stack(nx_k))
        term_l.append(term_k)
        rew_l.append(rew_k)
        info_l.append(info_k)
        # advance the rollout through the wrapped env (time limits, resets)
        ra = rollout_policy(obs, rng) if rollout_policy is not None else space.sample()
        nobs, _r, term, trunc, _info = env.step(ra)
        r_obs.append(np.asarray(obs))
        r_act.append(np.asarray(ra))
        r_next.append(np.asarray(nobs))
        obs = nobs
        if term or trunc:
            obs, _ = env.reset()
    sim = SimulatedTransitions(
        np.stack(obs_l), np.stack(act_l), np.stack(next_l), np.array(term_l), np.array(rew_l), info_l
    )
    return sim, Transitions(np.stack(r_obs), np.stack(r_act), np.stack(r_next))


# =========================================================================== Monte Carlo advantages


@dataclass
class AdvantageRollouts:
    """Monte Carlo data for sample-based STARC on a simulator whose state can be restored.

    VAL's canonical reward with policy ``π`` is ``c(s, a) = Q^π(s, a) − V^π(s)``, the
    advantage of ``a`` under ``π``. For each of ``n`` coverage states ``s`` with a sampled
    action ``a``, four rollouts of ``horizon`` steps are simulated from ``s``: rollouts 0
    and 2 start with ``a``, rollouts 1 and 3 with an action drawn from ``π``; all then
    follow ``π``. Rollouts 0/1 share their later actions, as do 2/3 (common random
    numbers, which lowers the variance of the differences). So ``G₀ − G₁`` and
    ``G₂ − G₃`` are two independent, unbiased (up to the ``γ^horizon`` tail) estimates of
    ``c(s, a)`` for any reward, whose product is unbiased for ``c(s, a)²``.

    Attributes:
        obs, action, next_obs: ``[n, 4, H, ...]`` every simulated step.
        terminated: ``bool[n, 4, H]``, the step ended the episode.
        alive: ``bool[n, 4, H]``, the step happened (false after termination).
        env_reward: ``float[n, 4, H]`` the env's own reward of each step.
        infos: ``n * 4 * H`` info dicts in row order (``None`` for padding), or ``None``.
        gamma: the discount the rollouts were sized for.
    """

    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    alive: np.ndarray
    env_reward: np.ndarray
    infos: list | None
    gamma: float

    @property
    def n(self) -> int:
        """Number of coverage states."""
        return int(self.obs.shape[0])

    @property
    def horizon(self) -> int:
        """Steps per rollout."""
        return int(self.obs.shape[2])

    def evaluate(self, reward: Any, task: Any = None) -> np.ndarray:
        """The reward of every simulated step, ``float64[n, 4, H]`` (0 where not ``alive``)."""
        n, H = self.n, self.horizon
        m = n * 4 * H
        flat = SimulatedTransitions(
            self.obs.reshape(m, *self.obs.shape[3:]),
            self.action.reshape(m, *self.action.shape[3:]),
            self.next_obs.reshape(m, 1, *self.next_obs.shape[3:]),
            self.terminated.reshape(m, 1),
            self.env_reward.reshape(m, 1),
            None if self.infos is None else [[i if i is not None else {}] for i in self.infos],
        )
        alive = self.alive.reshape(-1)
        if isinstance(reward, np.ndarray):
            r = np.asarray(reward, dtype=np.float64)
            if r.shape != (n, 4, H):
                raise ConfigError(f"a reward array must have shape ({n}, 4, {H}), got {r.shape}")
            return np.where(self.alive, r, 0.0)
        out = np.zeros(m)
        sub = flat.subset(np.flatnonzero(alive))
        out[alive] = sub.evaluate(reward, task=task)[:, 0]
        return out.reshape(n, 4, H)

    def advantages(self, reward: Any, task: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Two independent estimates of ``c(s, a) = Q^π(s, a) − V^π(s)`` for each state, ``(float[n], float[n])``."""
        r = self.evaluate(reward, task=task)
        G = (r * self.gamma ** np.arange(self.horizon)[None, None, :]).sum(axis=2)
        return G[:, 0] - G[:, 1], G[:, 2] - G[:, 3]


def simulate_env_advantage_rollouts(
    env: Any,
    n_states: int,
    *,
    gamma: float,
    horizon: int | None = None,
    tail: float = 0.01,
    seed: int | None = 0,
    progress: bool = False,
) -> tuple[AdvantageRollouts, Transitions]:
    """Visit ``n_states`` states by random rollouts of a Gymnasium env and simulate Monte Carlo advantage rollouts.

    See :class:`AdvantageRollouts`. ``π`` is the uniformly random policy over the action
    space. Simulated steps use the *unwrapped* env, restored to the saved state before
    each rollout (MuJoCo: ``qpos``/``qvel`` via ``set_state``); a rollout stops when the
    env terminates (later rewards count as 0, ``V(terminal) = 0``).

    Args:
        env: the env (e.g. from :func:`robo_reward.envs.make_env`).
        n_states: coverage states.
        gamma: discount of the distance.
        horizon: steps per rollout (default: the smallest ``H`` with ``γ^H <= tail``).
        tail: see ``horizon``.
        seed: seed of the rollouts and actions.

    Returns:
        ``(rollouts, coverage)``: the :class:`AdvantageRollouts` and the coverage
        :class:`Transitions` of the wrapped env (for :func:`epic_distance_sampled`).

    Raises:
        ConfigError: the env's state cannot be saved and restored, or bad settings.
    """
    if not 0.0 < gamma < 1.0:
        raise ConfigError(f"Monte Carlo advantages need 0 < gamma < 1, got {gamma}")
    if n_states < 2:
        raise ConfigError("simulate_env_advantage_rollouts needs n_states >= 2")
    if horizon is None:
        if not 0.0 < tail < 1.0:
            raise ConfigError(f"tail must be in (0, 1), got {tail}")
        horizon = int(np.ceil(np.log(tail) / np.log(gamma)))
    H = int(horizon)
    if H < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    rng = _rng(seed, 0xAD7A)
    space = env.action_space
    space.seed(int(rng.integers(2**31)))
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    access = _StateAccess(env)
    u = access.u
    if isinstance(obs, Mapping):
        raise ConfigError("Monte Carlo advantage rollouts support array observations, not dict observations")
    obs_shape, act_shape = np.asarray(obs).shape, np.asarray(space.sample()).shape
    O = np.zeros((n_states, 4, H, *obs_shape))
    NO = np.zeros_like(O)
    Ac = np.zeros((n_states, 4, H, *act_shape), dtype=np.asarray(space.sample()).dtype)
    term = np.zeros((n_states, 4, H), dtype=bool)
    alive = np.zeros((n_states, 4, H), dtype=bool)
    rew = np.zeros((n_states, 4, H))
    infos: list = [None] * (n_states * 4 * H)
    r_obs, r_act, r_next = [], [], []
    it: Iterator[int] = range(n_states)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="simulating rollouts", leave=False)
    for i in it:
        snap = access.get()
        a0 = space.sample()
        for pair in range(2):
            later = [space.sample() for _ in range(H - 1)]
            first = (a0, space.sample())
            for j in range(2):
                col = 2 * pair + j
                access.set(snap)
                o = np.asarray(obs)
                for t in range(H):
                    a = first[j] if t == 0 else later[t - 1]
                    nx, r, te, _tr, info = u.step(a)
                    O[i, col, t], Ac[i, col, t], NO[i, col, t] = o, a, nx
                    rew[i, col, t], term[i, col, t], alive[i, col, t] = r, te, True
                    infos[(i * 4 + col) * H + t] = dict(info)
                    o = np.asarray(nx)
                    if te:
                        break
        access.set(snap)
        ra = space.sample()
        nobs, _r, te, tr, _info = env.step(ra)
        r_obs.append(np.asarray(obs))
        r_act.append(np.asarray(ra))
        r_next.append(np.asarray(nobs))
        obs = nobs
        if te or tr:
            obs, _ = env.reset()
    data = AdvantageRollouts(O, Ac, NO, term, alive, rew, infos, float(gamma))
    return data, Transitions(np.stack(r_obs), np.stack(r_act), np.stack(r_next))


def starc_distance_rollouts(reward_a: Any, reward_b: Any, data: AdvantageRollouts, *, task: Any = None) -> float:
    """Sample-based STARC distance from Monte Carlo advantage rollouts, in ``[0, 2]``.

    VAL canonicalisation with the uniform policy (``c = A^π``, estimated by
    :meth:`AdvantageRollouts.advantages`), L2 normalisation under the coverage
    distribution, L2 distance; norms and the inner product use the product of the
    two independent estimates, so the Monte Carlo noise does not bias them. Needs no
    value-function fit, only a simulator whose state can be restored.

    Args:
        reward_a, reward_b: arrays ``[n, 4, H]``, callables ``r(obs, act, next_obs)``,
            plugins or reward specs.
        data: from :func:`simulate_env_advantage_rollouts`.
        task: task card passed to :func:`robo_reward.make_reward` for specs.
    """
    a1, a2 = data.advantages(reward_a, task=task)
    b1, b2 = data.advantages(reward_b, task=task)
    scale = max(float(np.abs(np.concatenate([a1, a2, b1, b2])).max()), 1e-300)
    return _cosine_distance(float(a1 @ a2), float(b1 @ b2), float(a1 @ b2 + a2 @ b1) / 2.0, scale)


# =========================================================================== fitted V^π


def random_features(
    reference_obs: np.ndarray, n_features: int = 256, *, bandwidth: float | None = None, seed: int | None = 0
) -> Callable[[np.ndarray], np.ndarray]:
    """Features ``[1, z, sqrt(2/m) cos(W z + b)]`` of standardised observations ``z`` (random Fourier features).

    ``z`` standardises each observation dimension by ``reference_obs``'s mean and std;
    ``W ~ N(0, 1/bandwidth²)`` with ``bandwidth`` defaulting to ``sqrt(d)``.
    """
    ref = np.asarray(reference_obs, dtype=np.float64).reshape(len(reference_obs), -1)
    mu, sd = ref.mean(axis=0), ref.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    d = ref.shape[1]
    rng = np.random.default_rng(seed)
    bw = float(np.sqrt(d)) if bandwidth is None else float(bandwidth)
    W = rng.normal(scale=1.0 / bw, size=(d, n_features))
    b = rng.uniform(0, 2 * np.pi, size=n_features)

    def phi(obs: np.ndarray) -> np.ndarray:
        z = (np.asarray(obs, dtype=np.float64).reshape(len(obs), -1) - mu) / sd
        return np.concatenate([np.ones((len(z), 1)), z, np.sqrt(2.0 / n_features) * np.cos(z @ W + b)], axis=1)

    return phi


def fit_value(
    data: SimulatedTransitions,
    rewards: np.ndarray,
    gamma: float,
    *,
    method: str = "lstd",
    features: Callable[[np.ndarray], np.ndarray] | str | None = None,
    ridge: float = 1e-6,
    seed: int | None = 0,
    mlp_hidden: Sequence[int] = (64, 64),
    mlp_iterations: int = 30,
    mlp_steps: int = 100,
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit ``V^π`` of a reward from simulated transitions (the actions in ``data`` are π's).

    Methods:

    * ``"lstd"`` — least-squares temporal difference (Bradtke & Barto 1996) on
      ``features`` (a callable ``obs[m, ...] -> float[m, F]``; ``"identity"`` for the raw
      observation, e.g. one-hot states; default :func:`random_features`):
      ``w = (Φᵀ(Φ − γ Φ̄') + λI)⁻¹ Φᵀ r̄`` with ``Φ̄'`` the mean over the ``k`` next
      states (zero where terminal). Exact in the limit for tabular (one-hot) features.
    * ``"mlp"`` — fitted policy evaluation with a small torch MLP: ``mlp_iterations``
      rounds of regressing ``V(s)`` on ``r̄ + γ mean_k V_old(s'_k)``.

    Args:
        data: the simulated transitions.
        rewards: ``float[n, k]`` reward of every simulated step.
        gamma: discount (< 1).
        ridge: L2 regularisation, relative to the mean squared feature norm.

    Returns:
        ``V(obs[m, ...]) -> float64[m]``.
    """
    if not 0.0 <= gamma < 1.0:
        raise ConfigError(f"fitting V^π needs 0 <= gamma < 1, got {gamma}")
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (data.n, data.k):
        raise ConfigError(f"rewards must have shape ({data.n}, {data.k}), got {r.shape}")
    cont = (~data.terminated).astype(np.float64)
    nk = data.next_obs.reshape(data.n * data.k, *data.next_obs.shape[2:])
    if method == "lstd":
        if features is None:
            phi = random_features(np.concatenate([data.obs.reshape(data.n, -1), nk.reshape(len(nk), -1)]), seed=seed)
        elif features == "identity":
            phi = lambda o: np.asarray(o, dtype=np.float64).reshape(len(o), -1)  # noqa: E731
        elif callable(features):
            phi = features
        else:
            raise ConfigError(f"features must be a callable, 'identity' or None, got {features!r}")
        F0 = np.asarray(phi(data.obs), dtype=np.float64)
        F1 = np.asarray(phi(nk), dtype=np.float64).reshape(data.n, data.k, -1)
        F1 = (F1 * cont[:, :, None]).mean(axis=1)
        rbar = r.mean(axis=1)
        A = F0.T @ (F0 - gamma * F1)
        lam = ridge * max(float((F0 * F0).sum()) / F0.shape[1], 1e-12)
        w = np.linalg.solve(A + lam * np.eye(A.shape[0]), F0.T @ rbar)

        def value(obs: np.ndarray) -> np.ndarray:
            return np.asarray(phi(obs), dtype=np.float64) @ w

        return value
    if method == "mlp":
        from ..core.errors import require

        torch = require("torch", "sb3", "fitting V^π with an MLP")
        g = torch.Generator().manual_seed(int(seed or 0))
        X0 = torch.as_tensor(data.obs.reshape(data.n, -1), dtype=torch.float32)
        X1 = torch.as_tensor(nk.reshape(len(nk), -1), dtype=torch.float32)
        mu = torch.cat([X0, X1]).mean(0)
        sd = torch.cat([X0, X1]).std(0).clamp_min(1e-6)
        scale = float(max(np.abs(r).max(), 1e-8)) / (1.0 - gamma)
        layers: list[Any] = []
        d = X0.shape[1]
        for h in mlp_hidden:
            lin = torch.nn.Linear(d, h)
            torch.nn.init.normal_(lin.weight, std=(1.0 / d) ** 0.5, generator=g)
            torch.nn.init.zeros_(lin.bias)
            layers += [lin, torch.nn.Tanh()]
            d = h
        last = torch.nn.Linear(d, 1)
        torch.nn.init.normal_(last.weight, std=(1.0 / d) ** 0.5, generator=g)
        torch.nn.init.zeros_(last.bias)
        layers.append(last)
        net = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        Z0, Z1 = (X0 - mu) / sd, (X1 - mu) / sd
        rb = torch.as_tensor(r.mean(axis=1) / scale, dtype=torch.float32)
        cm = torch.as_tensor(cont, dtype=torch.float32)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model: more threads only add overhead (restored below)
        try:
            for _ in range(mlp_iterations):
                with torch.no_grad():
                    v1 = net(Z1).reshape(data.n, data.k)
                    target = rb + gamma * (cm * v1).mean(1)
                for _ in range(mlp_steps):
                    opt.zero_grad()
                    loss = ((net(Z0).squeeze(1) - target) ** 2).mean()
                    loss.backward()
                    opt.step()
        finally:
            torch.set_num_threads(threads)

        def value_mlp(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                z = (torch.as_tensor(np.asarray(obs).reshape(len(obs), -1), dtype=torch.float32) - mu) / sd
                return net(z).squeeze(1).double().numpy() * scale

        return value_mlp
    raise ConfigError(f"unknown value-fitting method {method!r}; use 'lstd' or 'mlp'")


def val_canonicalize_sampled(
    data: SimulatedTransitions,
    rewards: np.ndarray,
    value: Callable[[np.ndarray], np.ndarray],
    gamma: float,
    columns: slice | np.ndarray | None = None,
) -> np.ndarray:
    """Sample VAL canonical reward of each sampled ``(s, a)``: ``mean_k[r_k + γ V(s'_k)] − V(s)``, ``float[n]``.

    ``columns`` restricts the mean to some of the ``k`` next states (used for the
    split-half estimate in :func:`starc_distance_sampled`).
    """
    r = np.asarray(rewards, dtype=np.float64)
    cont = (~data.terminated).astype(np.float64)
    nk = data.next_obs.reshape(data.n * data.k, *data.next_obs.shape[2:])
    v1 = np.asarray(value(nk), dtype=np.float64).reshape(data.n, data.k)
    v0 = np.asarray(value(data.obs), dtype=np.float64)
    q = r + gamma * cont * v1
    if columns is not None:
        q = q[:, columns]
    return q.mean(axis=1) - v0


def _cosine_distance(aa: float, bb: float, ab: float, scale: float) -> float:
    """L2 distance of the unit vectors, from squared norms and the inner product (zero vectors stay zero)."""
    tiny = (1e-12 * scale) ** 2
    za, zb = aa <= tiny, bb <= tiny
    if za and zb:
        return 0.0
    if za or zb:
        return 1.0
    cos = float(np.clip(ab / np.sqrt(aa * bb), -1.0, 1.0))
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * cos)))


def starc_distance_sampled(
    reward_a: Any,
    reward_b: Any,
    data: SimulatedTransitions,
    *,
    gamma: float,
    value_method: str = "lstd",
    features: Callable[[np.ndarray], np.ndarray] | str | None = None,
    folds: int = 2,
    task: Any = None,
    seed: int | None = 0,
    **fit_kwargs: Any,
) -> float:
    """Sample-based STARC distance (VAL with the sampling policy, L2, L2), in ``[0, 2]``.

    For each reward: evaluate it on the simulated steps, fit ``V^π``
    (:func:`fit_value`) and canonicalise each sampled ``(s, a)``
    (:func:`val_canonicalize_sampled`). The distance between the L2-normalised
    canonical rewards (L2 under the sampling distribution of ``(s, a)``) is computed
    from their norms and inner product: ``d = sqrt(2 − 2 cos)``. The VAL expectation
    over ``S'`` must be taken *before* squaring; with ``k >= 2`` next states per
    sample, norms and inner products are estimated from two independent halves of
    the next states (``E[ĉ₁ ĉ₂] = E[c²]``), so simulator noise does not bias the
    result. With ``k == 1`` that is only exact for deterministic simulators (MuJoCo);
    for stochastic ones use ``k >= 2``. With states and actions sampled uniformly from
    a tabular MDP (one-hot observations), ``features="identity"`` and ``k >= 2``, this
    converges to :func:`starc_distance` as samples grow.

    Args:
        reward_a, reward_b: arrays ``[n, k]``, callables ``r(obs, act, next_obs)``,
            plugins or reward specs (see :meth:`SimulatedTransitions.evaluate`).
        data: from :func:`simulate_transitions` or :func:`simulate_env_transitions`.
        gamma: discount (< 1).
        value_method, features, fit_kwargs: see :func:`fit_value`.
        folds: cross-fitting folds: ``V^π`` is fitted on the other folds and evaluated
            on each one (1: fit and evaluate on all samples, which lets a flexible
            ``V`` absorb the canonical reward and shrinks distances).
        task: task card passed to :func:`robo_reward.make_reward` for specs.
    """
    if folds < 1 or (folds > 1 and data.n < 2 * folds):
        raise ConfigError(f"folds must be >= 1 and leave at least 2 samples per fold (n={data.n}, folds={folds})")
    halves = data.k >= 2
    one = slice(0, data.k // 2)
    two = slice(data.k // 2, 2 * (data.k // 2))
    # Cross-fitting: V^π is fitted on the other folds and evaluated on this one, so the
    # canonical reward (a TD residual) is not shrunk towards 0 by fitting its own noise.
    order = _rng(seed, 0xF01D).permutation(data.n)
    parts = np.array_split(order, folds) if folds > 1 else [order]
    full = [np.empty(data.n), np.empty(data.n)]
    split = [(np.empty(data.n), np.empty(data.n)), (np.empty(data.n), np.empty(data.n))]
    for j, reward in enumerate((reward_a, reward_b)):
        r = data.evaluate(reward, task=task)
        for part in parts:
            train = np.setdiff1d(order, part) if folds > 1 else part
            V = fit_value(
                data.subset(train), r[train], gamma, method=value_method, features=features, seed=seed, **fit_kwargs
            )
            sub = data.subset(part)
            full[j][part] = val_canonicalize_sampled(sub, r[part], V, gamma)
            if halves:
                split[j][0][part] = val_canonicalize_sampled(sub, r[part], V, gamma, one)
                split[j][1][part] = val_canonicalize_sampled(sub, r[part], V, gamma, two)
    scale = max(float(np.abs(full[0]).max()), float(np.abs(full[1]).max()), 1e-300)
    if not halves:
        a, b = full
        return _cosine_distance(float(a @ a), float(b @ b), float(a @ b), scale)
    (a1, a2), (b1, b2) = split
    # E[c1 c2] over independent halves of the next states is unbiased for E[c²]: the
    # simulator noise of a single draw does not inflate the norms.
    return _cosine_distance(float(a1 @ a2), float(b1 @ b2), float(a1 @ b2 + a2 @ b1) / 2.0, scale)

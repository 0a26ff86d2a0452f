"""Tabular MDPs: random gridworlds, value iteration, Q*/A*, optimal policies, policy evaluation.

Small exact tools used by the reward distances (:mod:`robo_reward.metrics`) and the
regret preference model (:mod:`robo_reward.rewards.preference.regret`), and useful on
their own for tests and teaching.

Conventions (every function here follows them):

* ``S`` states, ``A`` actions. Transitions ``P[s, a, s']`` (rows sum to 1).
* A reward is an array broadcastable to ``[S, A, S]``: ``R[s, a, s']``. A state reward
  ``[S]`` is read as a reward for *entering* ``s'`` (shape ``[1, 1, S]``); give
  ``R[:, None, None]`` yourself for a reward on the state left. ``[S, A]`` is
  ``R(s, a)``.
* ``terminal[s]`` marks absorbing end states: the reward of the transition *into*
  a terminal state is received, and from then on nothing (``V(terminal) = 0``,
  ``Q(terminal, ·) = 0``). This is the same convention as the ``shaping`` reward,
  where ``Φ(s') = 0`` on terminal transitions.
* ``gamma`` may be 1 only when every policy that matters reaches a terminal state
  (value iteration then stops when it converges, or raises).

Example::

    from robo_reward.tabular import random_gridworld, value_iteration, optimal_policy
    world = random_gridworld(5, seed=0)
    V, Q = value_iteration(world.mdp)
    pi = optimal_policy(world.mdp)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .core.errors import ConfigError

__all__ = [
    "TabularMDP",
    "GridWorld",
    "Segments",
    "as_reward_array",
    "bellman_backup",
    "value_iteration",
    "policy_iteration",
    "q_values",
    "optimal_advantage",
    "optimal_policy",
    "greedy_policy",
    "uniform_policy",
    "policy_matrix",
    "policy_evaluation",
    "policy_q_values",
    "expected_return",
    "normalized_return",
    "random_mdp",
    "random_gridworld",
    "sample_segments",
]


# --------------------------------------------------------------------------- MDP


@dataclass
class TabularMDP:
    """A finite MDP: transitions, a reward, a discount, terminal states and a start distribution.

    Attributes:
        transitions: ``P[s, a, s']``, shape ``[S, A, S]``, rows summing to 1.
        reward: ``R[s, a, s']`` (anything broadcastable to ``[S, A, S]``; see the module notes).
        gamma: discount in ``[0, 1]``.
        terminal: ``bool[S]``, absorbing end states (``None``: none).
        initial: start distribution ``float[S]`` (``None``: uniform over non-terminal states).

    Raises:
        ConfigError: shapes that do not fit, probabilities that are negative or do not
            sum to 1, a discount outside ``[0, 1]``.
    """

    transitions: np.ndarray
    reward: np.ndarray
    gamma: float = 0.9
    terminal: np.ndarray | None = None
    initial: np.ndarray | None = None

    def __post_init__(self) -> None:
        P = np.asarray(self.transitions, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2] or P.shape[0] == 0 or P.shape[1] == 0:
            raise ConfigError(f"transitions must have shape [S, A, S] with S, A > 0, got {P.shape}")
        if not np.all(np.isfinite(P)) or (P < -1e-12).any():
            raise ConfigError("transitions must be finite and non-negative")
        sums = P.sum(axis=2)
        if not np.allclose(sums, 1.0, atol=1e-6):
            bad = np.argwhere(~np.isclose(sums, 1.0, atol=1e-6))[:5].tolist()
            raise ConfigError(f"transition probabilities must sum to 1 over s'; (s, a) rows {bad} do not")
        self.transitions = P
        S, A = P.shape[:2]
        self.reward = as_reward_array(self.reward, S, A)
        if not (0.0 <= float(self.gamma) <= 1.0):
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        self.gamma = float(self.gamma)
        if self.terminal is None:
            self.terminal = np.zeros(S, dtype=bool)
        else:
            term = np.asarray(self.terminal)
            if term.shape != (S,):
                raise ConfigError(f"terminal must have shape ({S},), got {term.shape}")
            self.terminal = term.astype(bool)
        if self.initial is None:
            live = ~self.terminal
            if not live.any():
                raise ConfigError("every state is terminal; give at least one non-terminal state")
            self.initial = live / live.sum()
        else:
            init = np.asarray(self.initial, dtype=np.float64)
            if init.shape != (S,) or (init < 0).any() or not np.isclose(init.sum(), 1.0):
                raise ConfigError(f"initial must be a probability vector of shape ({S},)")
            self.initial = init

    @property
    def n_states(self) -> int:
        """Number of states ``S``."""
        return int(self.transitions.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.transitions.shape[1])

    def with_reward(self, reward: np.ndarray) -> "TabularMDP":
        """The same MDP with another reward (shallow copy; arrays are shared)."""
        return replace(self, reward=as_reward_array(reward, self.n_states, self.n_actions))

    def expected_reward(self, reward: np.ndarray | None = None) -> np.ndarray:
        """``r̄(s, a) = Σ_s' P(s'|s, a) R(s, a, s')``, shape ``[S, A]`` (0 in terminal states)."""
        R = self.reward if reward is None else as_reward_array(reward, self.n_states, self.n_actions)
        rbar = (self.transitions * R).sum(axis=2)
        rbar[self.terminal] = 0.0
        return rbar


def as_reward_array(reward: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    """Broadcast a reward to ``float64[S, A, S]`` (``[S]`` means "reward for entering s'").

    Raises:
        ConfigError: the shape cannot be read as a reward of this MDP, or values are not finite.
    """
    R = np.asarray(reward, dtype=np.float64)
    S, A = n_states, n_actions
    if R.shape == (S,):
        R = R[None, None, :]
    elif R.shape == (S, A):
        R = R[:, :, None]
    try:
        R = np.broadcast_to(R, (S, A, S)).copy()
    except ValueError:
        raise ConfigError(
            f"a reward must be broadcastable to [S, A, S] = [{S}, {A}, {S}] (or be [S] or [S, A]), got {np.shape(reward)}"
        ) from None
    if not np.all(np.isfinite(R)):
        raise ConfigError("the reward has NaN or infinite entries")
    return R


def _reward(mdp: TabularMDP, reward: np.ndarray | None) -> np.ndarray:
    return mdp.reward if reward is None else as_reward_array(reward, mdp.n_states, mdp.n_actions)


def _cont(mdp: TabularMDP) -> np.ndarray:
    """``1 - terminal``: the discount factor applied to ``V(s')``."""
    return (~mdp.terminal).astype(np.float64)


# --------------------------------------------------------------------------- Bellman


def bellman_backup(mdp: TabularMDP, V: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
    """``Q(s, a) = Σ_s' P(s'|s,a) [R(s,a,s') + γ (1 - terminal(s')) V(s')]``; ``Q = 0`` in terminal states."""
    R = _reward(mdp, reward)
    target = R + mdp.gamma * (_cont(mdp) * V)[None, None, :]
    Q = (mdp.transitions * target).sum(axis=2)
    Q[mdp.terminal] = 0.0
    return Q


def value_iteration(
    mdp: TabularMDP,
    reward: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal values by value iteration: returns ``(V*[S], Q*[S, A])``.

    Iterates ``V ← max_a Q(V)`` until the largest change is below ``tol``, then
    finishes with one exact policy-evaluation step of the greedy policy (so ``V*``
    and ``Q*`` are consistent to machine precision when the greedy policy is stable).

    Raises:
        ConfigError: no convergence within ``max_iter`` sweeps (for ``gamma == 1``: some
            policy never reaches a terminal state and collects unbounded reward).
    """
    R = _reward(mdp, reward)
    V = np.zeros(mdp.n_states)
    for _ in range(int(max_iter)):
        Q = bellman_backup(mdp, V, R)
        V_new = Q.max(axis=1)
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < tol:
            break
    else:
        raise ConfigError(
            f"value iteration did not converge in {max_iter} sweeps (last change {delta:.3g}); "
            "with gamma=1 every policy must reach a terminal state, or use gamma < 1"
        )
    pi = greedy_policy(Q)
    try:
        V_exact = policy_evaluation(mdp, pi, R)
        Q_exact = bellman_backup(mdp, V_exact, R)
        if np.abs(Q_exact.max(axis=1) - V_exact).max() <= max(1e3 * tol, 1e-8):
            return V_exact, Q_exact
    except ConfigError:
        pass
    return V, Q


def policy_iteration(
    mdp: TabularMDP,
    reward: np.ndarray | None = None,
    *,
    policy: np.ndarray | None = None,
    max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal values by policy iteration: returns ``(V*[S], Q*[S, A], π*[S])``.

    Exact (each step solves a linear system) and fast when warm-started from a
    ``policy`` close to optimal, e.g. the optimal policy of a slightly different
    reward — which is how :mod:`robo_reward.rewards.preference.regret` uses it.
    Falls back to :func:`value_iteration` when a policy cannot be evaluated
    (``gamma == 1`` and the policy never terminates).
    """
    R = _reward(mdp, reward)
    pi = np.zeros(mdp.n_states, dtype=np.int64) if policy is None else np.asarray(policy, dtype=np.int64)
    for _ in range(int(max_iter)):
        try:
            V = policy_evaluation(mdp, pi, R)
        except ConfigError:
            V, Q = value_iteration(mdp, R)
            return V, Q, greedy_policy(Q, tol=1e-9)
        Q = bellman_backup(mdp, V, R)
        best = Q.max(axis=1)
        # keep the current action unless another is strictly better (avoids cycling on ties)
        keep = Q[np.arange(mdp.n_states), pi] >= best - 1e-10 * (1.0 + np.abs(best))
        if keep.all():
            return V, Q, pi
        pi = np.where(keep, pi, Q.argmax(axis=1))
    V, Q = value_iteration(mdp, R)
    return V, Q, greedy_policy(Q, tol=1e-9)


def q_values(mdp: TabularMDP, reward: np.ndarray | None = None) -> np.ndarray:
    """``Q*[S, A]`` of ``reward`` (default: the MDP's)."""
    return value_iteration(mdp, reward)[1]


def optimal_advantage(mdp: TabularMDP, reward: np.ndarray | None = None) -> np.ndarray:
    """``A*(s, a) = Q*(s, a) - V*(s)`` (≤ 0, 0 for optimal actions and in terminal states), shape ``[S, A]``."""
    V, Q = value_iteration(mdp, reward)
    return Q - V[:, None]


def greedy_policy(Q: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Deterministic greedy policy ``int[S]``: the first action within ``tol`` of ``max_a Q(s, a)``."""
    Q = np.asarray(Q, dtype=np.float64)
    best = Q.max(axis=1, keepdims=True)
    return np.argmax(Q >= best - tol, axis=1)


def optimal_policy(mdp: TabularMDP, reward: np.ndarray | None = None) -> np.ndarray:
    """A deterministic optimal policy ``int[S]`` (ties broken towards the lowest action index)."""
    return greedy_policy(q_values(mdp, reward), tol=1e-9)


def uniform_policy(mdp: TabularMDP) -> np.ndarray:
    """The uniformly random policy as ``float[S, A]``."""
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


def policy_matrix(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """A policy as probabilities ``float[S, A]``: accepts ``int[S]`` (deterministic) or ``float[S, A]``.

    Raises:
        ConfigError: wrong shape, action index out of range, or rows that are not distributions.
    """
    pol = np.asarray(policy)
    S, A = mdp.n_states, mdp.n_actions
    if pol.shape == (S,) and np.issubdtype(pol.dtype, np.integer):
        if (pol < 0).any() or (pol >= A).any():
            raise ConfigError(f"a deterministic policy must hold action indices in [0, {A})")
        out = np.zeros((S, A))
        out[np.arange(S), pol] = 1.0
        return out
    if pol.shape != (S, A):
        raise ConfigError(f"a policy must be int[{S}] or float[{S}, {A}], got shape {pol.shape}")
    pol = pol.astype(np.float64)
    if (pol < -1e-12).any() or not np.allclose(pol.sum(axis=1), 1.0, atol=1e-6):
        raise ConfigError("a stochastic policy's rows must be probability distributions over actions")
    return pol


def policy_evaluation(mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
    """``V^π[S]`` exactly, by solving ``(I - γ P_π C) V = r_π`` (``C``: not terminal).

    Raises:
        ConfigError: the system is singular (``gamma == 1`` and ``π`` never terminates).
    """
    R = _reward(mdp, reward)
    pi = policy_matrix(mdp, policy)
    rbar = mdp.expected_reward(R)  # [S, A]
    r_pi = (pi * rbar).sum(axis=1)
    P_pi = np.einsum("sa,sat->st", pi, mdp.transitions) * _cont(mdp)[None, :]
    live = ~mdp.terminal
    P_pi[~live] = 0.0
    M = np.eye(mdp.n_states) - mdp.gamma * P_pi
    try:
        V = np.linalg.solve(M, r_pi)
    except np.linalg.LinAlgError:
        raise ConfigError(
            "policy evaluation is singular: with gamma=1 the policy must reach a terminal state from every state"
        ) from None
    if not np.all(np.isfinite(V)) or np.abs(M @ V - r_pi).max() > 1e-6 * (1 + np.abs(r_pi).max()):
        raise ConfigError(
            "policy evaluation is ill-conditioned: with gamma=1 the policy must reach a terminal state from every state"
        )
    V[mdp.terminal] = 0.0
    return V


def policy_q_values(mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
    """``Q^π[S, A]`` of a policy (one Bellman backup of :func:`policy_evaluation`)."""
    R = _reward(mdp, reward)
    return bellman_backup(mdp, policy_evaluation(mdp, policy, R), R)


def expected_return(
    mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray | None = None, initial: np.ndarray | None = None
) -> float:
    """Expected discounted return of ``policy`` from the start distribution (default ``mdp.initial``)."""
    V = policy_evaluation(mdp, policy, reward)
    d0 = mdp.initial if initial is None else np.asarray(initial, dtype=np.float64)
    return float(d0 @ V)


def normalized_return(mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray | None = None) -> float:
    """``(J(π) - J(uniform)) / (J(π*) - J(uniform))`` under ``reward``: 1 optimal, 0 as good as random.

    Returns 1.0 when every policy is as good as the uniform one (nothing to gain).
    """
    R = _reward(mdp, reward)
    V_star, _ = value_iteration(mdp, R)
    j_star = float(mdp.initial @ V_star)
    j_rand = expected_return(mdp, uniform_policy(mdp), R)
    j_pi = expected_return(mdp, policy, R)
    gap = j_star - j_rand
    if gap <= 1e-12 * (1 + abs(j_star)):
        return 1.0
    return (j_pi - j_rand) / gap


# --------------------------------------------------------------------------- generators


def random_mdp(
    n_states: int,
    n_actions: int,
    *,
    gamma: float = 0.9,
    branching: int | None = None,
    seed: int | np.random.Generator | None = None,
) -> TabularMDP:
    """A random MDP: Dirichlet transitions (over ``branching`` random successors) and a Gaussian ``R[s, a, s']``.

    Args:
        n_states, n_actions: sizes.
        gamma: discount.
        branching: successors per ``(s, a)`` (default: all states).
        seed: seed or generator.
    """
    if n_states < 1 or n_actions < 1:
        raise ConfigError("random_mdp needs n_states >= 1 and n_actions >= 1")
    rng = np.random.default_rng(seed)
    k = n_states if branching is None else int(branching)
    if not 1 <= k <= n_states:
        raise ConfigError(f"branching must be in [1, {n_states}], got {branching}")
    P = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            succ = rng.choice(n_states, size=k, replace=False)
            P[s, a, succ] = rng.dirichlet(np.ones(k))
    R = rng.normal(size=(n_states, n_actions, n_states))
    return TabularMDP(P, R, gamma=gamma)


#: Moves of the gridworld actions: up, right, down, left (row, column deltas).
GRID_MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))


@dataclass
class GridWorld:
    """A gridworld with typed cells and a reward linear in cell-type features.

    The reward of a transition is the weight of the type of the cell *entered*:
    ``R(s, a, s') = w · φ(s')`` with ``φ`` the one-hot cell type, which is the shape of
    the reward in Knox et al. 2022's delivery domain (a cost per cell type, and
    terminal goal / hazard cells).

    Attributes:
        size: ``(rows, cols)``.
        cell_types: ``int[rows * cols]`` type of every cell (state ``s = row * cols + col``).
        type_names: name of each type.
        weights: true reward weight of each type (``float[K]``).
        terminal_types: ``bool[K]``, types whose cells end the episode.
        mdp: the :class:`TabularMDP` (its reward is ``features @ weights``).
        features: ``float[S, K]`` one-hot cell types.
    """

    size: tuple[int, int]
    cell_types: np.ndarray
    type_names: tuple[str, ...]
    weights: np.ndarray
    terminal_types: np.ndarray
    mdp: TabularMDP
    features: np.ndarray = field(repr=False)

    def reward_from_weights(self, weights: np.ndarray) -> np.ndarray:
        """The ``[S]`` entering-reward of type weights ``w`` (``features @ w``)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.features.shape[1],):
            raise ConfigError(f"weights must have shape ({self.features.shape[1]},), got {w.shape}")
        return self.features @ w

    def render(self, policy: np.ndarray | None = None) -> str:
        """A text picture: one letter per cell type, or the policy's arrows on non-terminal cells."""
        rows, cols = self.size
        arrows = "^>v<"
        out = []
        for r in range(rows):
            line = []
            for c in range(cols):
                s = r * cols + c
                t = int(self.cell_types[s])
                if policy is not None and not self.terminal_types[t]:
                    line.append(arrows[int(policy[s])])
                else:
                    line.append(self.type_names[t][0].upper() if self.terminal_types[t] else self.type_names[t][0])
            out.append(" ".join(line))
        return "\n".join(out)


def _grid_transitions(rows: int, cols: int, slip: float) -> np.ndarray:
    S, A = rows * cols, len(GRID_MOVES)
    P = np.zeros((S, A, S))
    for r in range(rows):
        for c in range(cols):
            s = r * cols + c
            for a in range(A):
                for b, (dr, dc) in enumerate(GRID_MOVES):
                    p = (1.0 - slip) if a == b else slip / (A - 1)
                    if p == 0.0:
                        continue
                    rr, cc = r + dr, c + dc
                    t = rr * cols + cc if (0 <= rr < rows and 0 <= cc < cols) else s  # bump into the wall: stay
                    P[s, a, t] += p
    return P


def random_gridworld(
    size: int | tuple[int, int] = 5,
    *,
    gamma: float = 0.95,
    slip: float = 0.0,
    n_goals: int = 1,
    hazard_frac: float = 0.1,
    type_probs: Sequence[float] = (0.5, 0.3, 0.2),
    weights: Sequence[float] | None = None,
    seed: int | np.random.Generator | None = None,
) -> GridWorld:
    """A random gridworld in the style of Knox et al. 2022's delivery domain.

    Cell types: ``road``, ``mud``, ``grass`` (non-terminal, each with its own per-step
    cost), ``goal`` (terminal, positive) and ``hazard`` (terminal, negative). Actions
    move up/right/down/left; bumping into the edge stays put; with ``slip`` the move
    goes in one of the other three directions instead.

    Args:
        size: side length or ``(rows, cols)``.
        gamma: discount.
        slip: probability of a random other move.
        n_goals: number of goal cells.
        hazard_frac: fraction of cells that are hazards.
        type_probs: probabilities of road / mud / grass among the other cells.
        weights: true weights of ``(road, mud, grass, goal, hazard)``; default random:
            road ``-1``, mud ``U(-10, -1)``, grass ``U(-3, 0)``, goal ``U(5, 30)``, hazard ``U(-50, -5)``.
        seed: seed or generator.
    """
    rng = np.random.default_rng(seed)
    rows, cols = (size, size) if isinstance(size, (int, np.integer)) else tuple(int(x) for x in size)
    if rows < 1 or cols < 1 or rows * cols < n_goals + 1:
        raise ConfigError(f"gridworld size {size!r} is too small for {n_goals} goal(s)")
    if not 0.0 <= slip < 1.0:
        raise ConfigError(f"slip must be in [0, 1), got {slip}")
    probs = np.asarray(type_probs, dtype=np.float64)
    if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
        raise ConfigError("type_probs must be three non-negative numbers (road, mud, grass)")
    S = rows * cols
    names = ("road", "mud", "grass", "goal", "hazard")
    terminal_types = np.array([False, False, False, True, True])
    types = rng.choice(3, size=S, p=probs / probs.sum())
    cells = rng.permutation(S)
    n_haz = min(int(round(hazard_frac * S)), S - n_goals - 1)
    types[cells[:n_goals]] = 3
    types[cells[n_goals : n_goals + n_haz]] = 4
    if weights is None:
        w = np.array(
            [-1.0, rng.uniform(-10, -1), rng.uniform(-3, 0), rng.uniform(5, 30), rng.uniform(-50, -5)]
        )
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (5,):
            raise ConfigError("weights must be five numbers: road, mud, grass, goal, hazard")
    features = np.eye(5)[types]
    terminal = terminal_types[types]
    P = _grid_transitions(rows, cols, slip)
    mdp = TabularMDP(P, features @ w, gamma=gamma, terminal=terminal)
    return GridWorld((rows, cols), types, names, w, terminal_types, mdp, features)


# --------------------------------------------------------------------------- segments


@dataclass
class Segments:
    """Trajectory segments of a tabular MDP, padded to a common length.

    Attributes:
        states: ``int[n, L]`` states ``s_t``.
        actions: ``int[n, L]`` actions ``a_t``.
        next_states: ``int[n, L]`` states ``s_{t+1}``.
        mask: ``bool[n, L]``, false for padding after the segment reached a terminal state.
    """

    states: np.ndarray
    actions: np.ndarray
    next_states: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def __getitem__(self, index) -> "Segments":
        return Segments(self.states[index], self.actions[index], self.next_states[index], self.mask[index])

    def returns(self, mdp: TabularMDP, reward: np.ndarray | None = None, discount: bool = True) -> np.ndarray:
        """Partial return of each segment, ``Σ_t γ^t R(s_t, a_t, s_{t+1})`` (``discount=False``: plain sum)."""
        R = _reward(mdp, reward)
        r = R[self.states, self.actions, self.next_states] * self.mask
        if discount:
            r = r * mdp.gamma ** np.arange(r.shape[1])[None, :]
        return r.sum(axis=1)


def sample_segments(
    mdp: TabularMDP,
    n: int,
    length: int = 3,
    *,
    policy: np.ndarray | None = None,
    start: np.ndarray | None = None,
    seed: int | np.random.Generator | None = None,
) -> Segments:
    """Sample ``n`` segments of ``length`` steps.

    Start states come from ``start`` (a distribution over states; default uniform over
    non-terminal states) and actions from ``policy`` (``float[S, A]`` or ``int[S]``;
    default uniformly random). A segment that enters a terminal state stops there
    (the rest is padding, ``mask`` false).
    """
    if n < 0 or length < 1:
        raise ConfigError("sample_segments needs n >= 0 and length >= 1")
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    pi = uniform_policy(mdp) if policy is None else policy_matrix(mdp, policy)
    if start is None:
        d0 = (~mdp.terminal) / (~mdp.terminal).sum()
    else:
        d0 = np.asarray(start, dtype=np.float64)
        if d0.shape != (S,) or (d0 < 0).any() or not np.isclose(d0.sum(), 1.0):
            raise ConfigError(f"start must be a probability vector of shape ({S},)")
    states = np.zeros((n, length), dtype=np.int64)
    actions = np.zeros((n, length), dtype=np.int64)
    nexts = np.zeros((n, length), dtype=np.int64)
    mask = np.zeros((n, length), dtype=bool)
    s = rng.choice(S, size=n, p=d0)
    alive = ~mdp.terminal[s]
    cum_pi = np.cumsum(pi, axis=1)
    cum_P = np.cumsum(mdp.transitions, axis=2)
    for t in range(length):
        a = np.minimum((rng.random(n)[:, None] > cum_pi[s]).sum(axis=1), A - 1)
        s2 = np.minimum((rng.random(n)[:, None] > cum_P[s, a]).sum(axis=1), S - 1)
        states[:, t], actions[:, t], nexts[:, t], mask[:, t] = s, a, s2, alive
        alive = alive & ~mdp.terminal[s2]
        s = np.where(alive, s2, s)
    # padding repeats the last live state with action 0 and is masked out
    return Segments(states, actions, nexts, mask)

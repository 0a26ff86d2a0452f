"""The regret preference model (Knox et al. 2022) and the partial-return model, for tabular MDPs.

Knox, Hatgis-Kessell, Booth, Niekum, Stone, Allievi, "Models of human preference for
learning reward functions", Transactions on Machine Learning Research (arXiv:2206.02231).

**Partial return** (the usual RLHF assumption): a person prefers the segment with the
larger sum of rewards::

    P(σ₁ ≻ σ₂) = logistic(Σ_t r(σ₁) − Σ_t r(σ₂))

**Regret**: a person prefers the segment that deviates less from optimal
decision-making. For a segment ``σ = (s_0, a_0, s_1, …, s_T)`` with deterministic
transitions the paper defines ``regret_d(σ) = V*(s_0) − (Σ_t r_t + V*(s_T))``: the
value the start state offered minus what the segment collected plus the value of
where it ended. In general (stochastic transitions) the regret is the sum of the
per-step regrets::

    regret(σ) = Σ_t [V*(s_t) − Q*(s_t, a_t)] = −Σ_t A*(s_t, a_t)
    P(σ₁ ≻ σ₂) = logistic(regret(σ₂) − regret(σ₁))

which telescopes to ``regret_d`` for deterministic transitions. The paper's tasks are
undiscounted (``γ = 1``); this module uses the MDP's ``γ`` inside segments,
``regret(σ) = −Σ_t γ^t A*(s_t, a_t)`` and partial return ``Σ_t γ^t r_t``, which are the
paper's definitions when ``γ = 1`` and keep the telescoping identity
``−Σ_t γ^t A*(s_t, a_t) = V*(s_0) − (Σ_t γ^t r_t + γ^T V*(s_T))`` for deterministic
transitions otherwise (:func:`segment_regret_deterministic` computes the right-hand
side). A segment that enters a terminal state ends there (``V*(terminal) = 0``).
``temperature`` divides the logit; the paper's models are the plain logistic
(``temperature = 1``), and since regret and partial return scale with the reward,
a temperature is the same as rescaling the reward.

**Learning a reward** (:func:`learn_reward`): the reward is linear in features,
``r_θ = φ · θ``, and the negative log-likelihood of the labels under the chosen
model is minimised with Adam. For the regret model the parameters reach ``A*``
through the optimal value function. This module differentiates it *exactly*: by
Danskin's (envelope) theorem, ``V*_θ = max_π V^π_θ`` has (almost everywhere) the
gradient of ``V^{π*}_θ`` at the maximising policy, and ``V^π_θ = (I − γP_π)⁻¹ r_{π,θ}``
is linear in ``θ``. So each step finds ``π*_θ`` by policy iteration (warm-started from
the previous step's) and back-propagates through one linear solve with ``π*``
fixed. In successor-feature terms (the tool Knox et al. use for linear rewards),
``Q*_θ(s, a) = θ · ψ^{π*_θ}(s, a)``; approximating ``V*`` by a maximum over a fixed set
of policies' successor features would give a lower bound, while here the set is
exactly the current optimal policy, recomputed every step, so ``A*_θ`` is exact.

**Continuous tasks** (:func:`learn_advantage`): without a model of the dynamics,
``A*`` cannot be computed from a reward, so — following Knox et al. 2024 (AAAI),
"Learning optimal advantage from preferences and mistaking it for reward"
(arXiv:2310.02456) — a network learns the optimal advantage ``Â(s, a)`` directly from
the regret model, ``P(σ₁ ≻ σ₂) = logistic(Σ_t Â(σ₁) − Σ_t Â(σ₂))``, and the policy acts
greedily on it. ``Â(s, a) = g(s, a) − max_{a'} g(s, a')`` over the taken action and a
set of candidate actions keeps ``Â ≤ 0`` with 0 for the best candidate, as an
optimal advantage must be (for continuous actions the max over candidates is an
approximation). This learns a policy-shaping advantage, not a reward: use
:meth:`LearnedAdvantage.greedy`, not the wrappers' reward slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core.errors import ConfigError, require
from ...tabular import (
    Segments,
    TabularMDP,
    as_reward_array,
    normalized_return,
    optimal_policy,
    policy_iteration,
    sample_segments,
    value_iteration,
)

__all__ = [
    "MODELS",
    "segment_regret",
    "segment_regret_deterministic",
    "partial_return",
    "preference_logits",
    "preference_probability",
    "PreferenceDataset",
    "label_preferences",
    "generate_preferences",
    "LearnedReward",
    "learn_reward",
    "SegmentArrays",
    "LearnedAdvantage",
    "learn_advantage",
]

#: The preference models: ``"regret"`` (Knox et al. 2022) and ``"partial_return"`` (Bradley–Terry on sums of reward).
MODELS = ("regret", "partial_return")


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ConfigError(f"unknown preference model {model!r}; choose one of {', '.join(MODELS)}")
    return model


def _check_segments(mdp: TabularMDP, seg: Segments) -> None:
    S, A = mdp.n_states, mdp.n_actions
    for name, arr, hi in (("states", seg.states, S), ("actions", seg.actions, A), ("next_states", seg.next_states, S)):
        arr = np.asarray(arr)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any() or (arr >= hi).any():
            raise ConfigError(f"segments.{name} must be int[n, L] with values in [0, {hi})")
    if np.asarray(seg.mask).shape != np.asarray(seg.states).shape:
        raise ConfigError("segments.mask must have the shape of segments.states")


def _discounts(mdp: TabularMDP, length: int) -> np.ndarray:
    return mdp.gamma ** np.arange(length)


def segment_regret(
    mdp: TabularMDP,
    segments: Segments,
    reward: np.ndarray | None = None,
    *,
    q_star: np.ndarray | None = None,
) -> np.ndarray:
    """Regret of each segment, ``−Σ_t γ^t A*(s_t, a_t)`` (Knox et al. 2022), ``float[n]``, ≥ 0.

    0 exactly when every action of the segment is optimal. ``q_star`` (``[S, A]``)
    skips value iteration when ``Q*`` is already known.
    """
    _check_segments(mdp, segments)
    if q_star is None:
        _, q_star = value_iteration(mdp, reward)
    Q = np.asarray(q_star, dtype=np.float64)
    adv = Q - Q.max(axis=1, keepdims=True)
    a = adv[segments.states, segments.actions] * segments.mask
    return -(a * _discounts(mdp, a.shape[1])[None, :]).sum(axis=1)


def segment_regret_deterministic(mdp: TabularMDP, segments: Segments, reward: np.ndarray | None = None) -> np.ndarray:
    """Knox et al.'s start/end form, ``V*(s_0) − (Σ_t γ^t r_t + γ^T V*(s_T))``, ``float[n]``.

    Equal to :func:`segment_regret` when transitions are deterministic (the per-step
    regrets telescope); with stochastic transitions it also counts the luck of the
    outcomes, which the per-step form does not.
    """
    _check_segments(mdp, segments)
    R = mdp.reward if reward is None else as_reward_array(reward, mdp.n_states, mdp.n_actions)
    V, _ = value_iteration(mdp, R)
    L = segments.states.shape[1]
    disc = _discounts(mdp, L + 1)
    ret = segments.returns(mdp, R, discount=True)
    n_live = segments.mask.sum(axis=1)
    last = np.where(n_live > 0, n_live - 1, 0)
    s_end = segments.next_states[np.arange(len(segments)), last]
    v_end = np.where(n_live > 0, V[s_end], V[segments.states[:, 0]])
    return V[segments.states[:, 0]] - (ret + disc[n_live] * v_end)


def partial_return(mdp: TabularMDP, segments: Segments, reward: np.ndarray | None = None) -> np.ndarray:
    """Partial return of each segment, ``Σ_t γ^t r(s_t, a_t, s_{t+1})``, ``float[n]``."""
    _check_segments(mdp, segments)
    return segments.returns(mdp, reward, discount=True)


def preference_logits(
    mdp: TabularMDP,
    seg1: Segments,
    seg2: Segments,
    reward: np.ndarray | None = None,
    *,
    model: str = "regret",
    temperature: float = 1.0,
) -> np.ndarray:
    """Logit of ``P(σ₁ ≻ σ₂)`` under ``model``: ``(regret(σ₂) − regret(σ₁)) / T`` or ``(Σr(σ₁) − Σr(σ₂)) / T``."""
    _check_model(model)
    if len(seg1) != len(seg2):
        raise ConfigError(f"seg1 and seg2 must hold the same number of segments ({len(seg1)} != {len(seg2)})")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    R = mdp.reward if reward is None else as_reward_array(reward, mdp.n_states, mdp.n_actions)
    if model == "regret":
        _, Q = value_iteration(mdp, R)
        diff = segment_regret(mdp, seg2, q_star=Q) - segment_regret(mdp, seg1, q_star=Q)
    else:
        diff = partial_return(mdp, seg1, R) - partial_return(mdp, seg2, R)
    return diff / temperature


def preference_probability(
    mdp: TabularMDP,
    seg1: Segments,
    seg2: Segments,
    reward: np.ndarray | None = None,
    *,
    model: str = "regret",
    temperature: float = 1.0,
) -> np.ndarray:
    """``P(σ₁ ≻ σ₂)`` for each pair under ``model`` (``"regret"`` or ``"partial_return"``), ``float[n]``."""
    z = preference_logits(mdp, seg1, seg2, reward, model=model, temperature=temperature)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # logistic, without overflow


@dataclass
class PreferenceDataset:
    """Labelled segment pairs: ``labels[i]`` is the probability that ``seg1[i]`` is preferred (1, 0 or 0.5 for a tie)."""

    seg1: Segments
    seg2: Segments
    labels: np.ndarray

    def __len__(self) -> int:
        return int(len(self.labels))

    def __getitem__(self, index: Any) -> "PreferenceDataset":
        return PreferenceDataset(self.seg1[index], self.seg2[index], np.asarray(self.labels)[index])


def label_preferences(
    mdp: TabularMDP,
    seg1: Segments,
    seg2: Segments,
    reward: np.ndarray | None = None,
    *,
    model: str = "regret",
    temperature: float = 1.0,
    noiseless: bool = False,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Synthetic preference labels from ``model`` with the (true) ``reward``.

    ``noiseless=False`` samples each label from ``P(σ₁ ≻ σ₂)``; ``noiseless=True``
    prefers the segment with lower regret (higher partial return), 0.5 on ties.
    """
    z = preference_logits(mdp, seg1, seg2, reward, model=model, temperature=temperature)
    if noiseless:
        tie = np.abs(z) <= 1e-9 * (1.0 + np.abs(z).max(initial=0.0))
        return np.where(tie, 0.5, (z > 0).astype(np.float64))
    rng = np.random.default_rng(seed)
    p = 0.5 * (1.0 + np.tanh(0.5 * z))
    return (rng.random(len(p)) < p).astype(np.float64)


def generate_preferences(
    mdp: TabularMDP,
    n: int,
    *,
    length: int = 3,
    reward: np.ndarray | None = None,
    model: str = "regret",
    temperature: float = 1.0,
    noiseless: bool = False,
    seed: int | None = None,
) -> PreferenceDataset:
    """Sample ``n`` pairs of random segments (:func:`~robo_reward.tabular.sample_segments`) and label them."""
    rng = np.random.default_rng(seed)
    seg1 = sample_segments(mdp, n, length, seed=rng)
    seg2 = sample_segments(mdp, n, length, seed=rng)
    labels = label_preferences(
        mdp, seg1, seg2, reward, model=model, temperature=temperature, noiseless=noiseless, seed=rng
    )
    return PreferenceDataset(seg1, seg2, labels)


# =========================================================================== learning


@dataclass
class LearnedReward:
    """A reward learned from preferences.

    Attributes:
        weights: ``θ``, ``float[F]``.
        reward: ``R_θ[s, a, s']`` of the MDP.
        model: the preference model it was fitted with.
        loss: final mean negative log-likelihood.
        losses: loss per step (of the best restart).
    """

    weights: np.ndarray
    reward: np.ndarray
    model: str
    loss: float
    losses: list[float] = field(default_factory=list, repr=False)

    def policy(self, mdp: TabularMDP) -> np.ndarray:
        """An optimal policy of the learned reward, ``int[S]``."""
        return optimal_policy(mdp, self.reward)

    def normalized_return(self, mdp: TabularMDP, true_reward: np.ndarray | None = None) -> float:
        """Performance of the learned reward's optimal policy under the true reward (1 optimal, 0 random)."""
        return normalized_return(mdp, self.policy(mdp), true_reward)


def _feature_tensor(mdp: TabularMDP, features: np.ndarray | None) -> np.ndarray:
    """Features as ``float[S, A, S, F]``: ``[S, F]`` (entering s'), ``[S, A, F]`` or ``[S, A, S, F]``; default one-hot (s, a)."""
    S, A = mdp.n_states, mdp.n_actions
    if features is None:
        eye = np.eye(S * A).reshape(S, A, S * A)
        return np.broadcast_to(eye[:, :, None, :], (S, A, S, S * A))
    f = np.asarray(features, dtype=np.float64)
    if f.ndim == 2 and f.shape[0] == S:
        return np.broadcast_to(f[None, None, :, :], (S, A, S, f.shape[1]))
    if f.ndim == 3 and f.shape[:2] == (S, A):
        return np.broadcast_to(f[:, :, None, :], (S, A, S, f.shape[2]))
    if f.ndim == 4 and f.shape[:3] == (S, A, S):
        return f
    raise ConfigError(f"features must be [S, F], [S, A, F] or [S, A, S, F] with S={S}, A={A}; got {f.shape}")


def learn_reward(
    mdp: TabularMDP,
    data: PreferenceDataset,
    *,
    model: str = "regret",
    features: np.ndarray | None = None,
    steps: int = 300,
    lr: float = 0.05,
    l2: float = 1e-4,
    restarts: int = 1,
    init_scale: float = 0.1,
    seed: int | None = 0,
) -> LearnedReward:
    """Fit a reward ``r_θ = φ · θ`` to labelled segment pairs by maximum likelihood under ``model``.

    Args:
        mdp: the MDP (its transitions, ``γ`` and terminal states; its reward is not used).
        data: the labelled pairs.
        model: ``"regret"`` (exact ``A*_θ``, see the module notes) or ``"partial_return"``.
        features: ``[S, F]`` (reward for entering a state), ``[S, A, F]`` or
            ``[S, A, S, F]``; default one-hot ``(s, a)`` (a tabular ``R(s, a)``).
        steps: Adam steps (full batch).
        lr: Adam learning rate.
        l2: weight of ``‖θ‖²`` in the loss.
        restarts: random initialisations; the one with the lowest final loss wins.
        init_scale: std of the initial ``θ``.
        seed: seed of the initialisations.

    Raises:
        ConfigError: bad model, features, labels or settings.
        MissingDependencyError: torch is not installed.
    """
    _check_model(model)
    if len(data) == 0:
        raise ConfigError("learn_reward needs at least one labelled pair")
    labels = np.asarray(data.labels, dtype=np.float64)
    if labels.shape != (len(data.seg1),) or len(data.seg2) != len(labels):
        raise ConfigError("data.labels must hold one label per pair")
    if ((labels < 0) | (labels > 1)).any():
        raise ConfigError("labels must be probabilities in [0, 1]")
    if steps < 1 or restarts < 1 or lr <= 0 or l2 < 0:
        raise ConfigError("learn_reward needs steps >= 1, restarts >= 1, lr > 0, l2 >= 0")
    _check_segments(mdp, data.seg1)
    _check_segments(mdp, data.seg2)
    torch = require("torch", "sb3", "learning rewards from preferences")
    phi = _feature_tensor(mdp, features)
    F = phi.shape[-1]
    S, g = mdp.n_states, mdp.gamma
    dt = torch.float64
    P = torch.as_tensor(mdp.transitions, dtype=dt)
    cont = torch.as_tensor((~mdp.terminal).astype(np.float64), dtype=dt)
    term = torch.as_tensor(mdp.terminal)
    phi_t = torch.as_tensor(np.ascontiguousarray(phi), dtype=dt)
    # expected features of (s, a): Σ_s' P(s'|s,a) φ(s,a,s')  -> [S, A, F]
    phibar = torch.einsum("sat,satf->saf", P, phi_t)
    y = torch.as_tensor(labels, dtype=dt)
    L = data.seg1.states.shape[1]
    disc = torch.as_tensor(g ** np.arange(L), dtype=dt)

    def seg_index(seg: Segments) -> tuple[Any, Any, Any, Any]:
        return (
            torch.as_tensor(seg.states),
            torch.as_tensor(seg.actions),
            torch.as_tensor(seg.next_states),
            torch.as_tensor(seg.mask, dtype=dt) * disc[None, : seg.states.shape[1]],
        )

    i1, i2 = seg_index(data.seg1), seg_index(data.seg2)
    if model == "partial_return":
        # Σ_t γ^t φ(s_t, a_t, s_{t+1}): the logit is linear in θ
        f1 = (phi_t[i1[0], i1[1], i1[2]] * i1[3][..., None]).sum(1)
        f2 = (phi_t[i2[0], i2[1], i2[2]] * i2[3][..., None]).sum(1)
        dfeat = f1 - f2
    eye = torch.eye(S, dtype=dt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead (restored below)
    try:
        rng = np.random.default_rng(seed)
        best: LearnedReward | None = None
        for _ in range(restarts):
            theta = torch.tensor(rng.normal(scale=init_scale, size=F), dtype=dt, requires_grad=True)
            opt = torch.optim.Adam([theta], lr=lr)
            pi = None
            losses: list[float] = []
            for _step in range(steps):
                opt.zero_grad()
                if model == "partial_return":
                    logits = dfeat @ theta
                else:
                    with torch.no_grad():
                        R_np = (phi_t @ theta).numpy()
                    _, _, pi = policy_iteration(mdp, R_np, policy=pi)
                    rbar = phibar @ theta  # [S, A]
                    rbar = torch.where(term[:, None], torch.zeros_like(rbar), rbar)
                    pi_t = torch.as_tensor(pi)
                    P_pi = P[torch.arange(S), pi_t] * cont[None, :]
                    P_pi = torch.where(term[:, None], torch.zeros_like(P_pi), P_pi)
                    V = torch.linalg.solve(eye - g * P_pi, rbar[torch.arange(S), pi_t])
                    Q = rbar + g * torch.einsum("sat,t->sa", P, cont * V)
                    Q = torch.where(term[:, None], torch.zeros_like(Q), Q)
                    adv = Q - V[:, None]
                    reg1 = -(adv[i1[0], i1[1]] * i1[3]).sum(1)
                    reg2 = -(adv[i2[0], i2[1]] * i2[3]).sum(1)
                    logits = reg2 - reg1
                sp = torch.nn.functional.softplus
                nll = (y * sp(-logits) + (1.0 - y) * sp(logits)).mean()
                loss = nll + l2 * (theta * theta).sum()
                loss.backward()
                opt.step()
                losses.append(float(nll.detach()))
            with torch.no_grad():
                w = theta.detach().numpy().copy()
            # final loss at the final parameters
            R_final = np.asarray(phi @ w)
            final = _nll(mdp, data, R_final, model)
            cand = LearnedReward(w, R_final, model, final, losses)
            if best is None or cand.loss < best.loss:
                best = cand
    finally:
        torch.set_num_threads(threads)
    assert best is not None
    return best


def _nll(mdp: TabularMDP, data: PreferenceDataset, reward: np.ndarray, model: str) -> float:
    z = preference_logits(mdp, data.seg1, data.seg2, reward, model=model)
    y = np.asarray(data.labels, dtype=np.float64)
    # log(1 + e^{-z}) for y=1, log(1 + e^{z}) for y=0, stably
    return float(np.mean(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)))


# =========================================================================== continuous: learned advantage


@dataclass
class SegmentArrays:
    """Segments of a continuous (or any) task as arrays.

    Attributes:
        obs: ``float[n, L, ...]`` observations ``s_t``.
        action: ``float[n, L, ...]`` actions ``a_t``.
        mask: ``bool[n, L]``, false for padding.
    """

    obs: np.ndarray
    action: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        self.obs = np.asarray(self.obs, dtype=np.float64)
        self.action = np.asarray(self.action, dtype=np.float64)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.obs.ndim < 2 or self.action.shape[:2] != self.obs.shape[:2] or self.mask.shape != self.obs.shape[:2]:
            raise ConfigError("SegmentArrays: obs [n, L, ...], action [n, L, ...] and mask [n, L] must agree on n and L")

    def __len__(self) -> int:
        return int(self.obs.shape[0])


@dataclass
class LearnedAdvantage:
    """An optimal-advantage network learned from regret preferences (see :func:`learn_advantage`).

    Attributes:
        net: the torch module ``g(s, a)``.
        candidates: ``float[m, ...]`` candidate actions of the max in ``Â``.
        loss: final mean negative log-likelihood on the training pairs.
        losses: loss per step.
    """

    net: Any
    candidates: np.ndarray
    loss: float
    losses: list[float] = field(default_factory=list, repr=False)
    obs_mean: np.ndarray | None = field(default=None, repr=False)
    obs_std: np.ndarray | None = field(default=None, repr=False)

    def _g(self, torch: Any, obs: Any, act: Any) -> Any:
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)

    def _adv_t(self, torch: Any, obs: Any, act: Any) -> Any:
        """``Â`` for torch tensors ``obs[..., d]``, ``act[..., da]``."""
        cand = torch.as_tensor(self.candidates.reshape(len(self.candidates), -1), dtype=obs.dtype)
        g_a = self._g(torch, obs, act)
        o = obs.unsqueeze(-2).expand(*obs.shape[:-1], cand.shape[0], obs.shape[-1])
        c = cand.expand(*obs.shape[:-1], *cand.shape)
        g_c = self._g(torch, o, c).amax(-1)
        return g_a - torch.maximum(g_a, g_c)

    def _prep(self, torch: Any, obs: np.ndarray) -> Any:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float64).reshape(*np.shape(obs)[:1], -1))
        return (o - torch.as_tensor(self.obs_mean)) / torch.as_tensor(self.obs_std)

    def advantage(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """``Â(s, a)`` for rows of ``obs[n, ...]`` and ``action[n, ...]`` (≤ 0), ``float[n]``."""
        torch = require("torch", "sb3", "learned advantages")
        with torch.no_grad():
            o = self._prep(torch, obs)
            a = torch.as_tensor(np.asarray(action, dtype=np.float64).reshape(len(o), -1))
            return self._adv_t(torch, o, a).numpy()

    def greedy(self, obs: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
        """For each observation, the candidate action with the largest ``Â`` (default: the training candidates)."""
        torch = require("torch", "sb3", "learned advantages")
        cand = self.candidates if candidates is None else np.asarray(candidates, dtype=np.float64)
        with torch.no_grad():
            o = self._prep(torch, obs)
            c = torch.as_tensor(cand.reshape(len(cand), -1))
            oo = o.unsqueeze(1).expand(len(o), len(c), o.shape[-1])
            g = self._g(torch, oo, c.expand(len(o), *c.shape))
            return cand[g.argmax(1).numpy()]


def learn_advantage(
    seg1: SegmentArrays,
    seg2: SegmentArrays,
    labels: np.ndarray,
    candidates: np.ndarray,
    *,
    hidden: tuple[int, ...] = (64, 64),
    steps: int = 500,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    seed: int | None = 0,
) -> LearnedAdvantage:
    """Learn the optimal advantage ``Â(s, a)`` from regret-model preferences (Knox et al. 2024, AAAI).

    Maximises the likelihood of ``labels`` under ``P(σ₁ ≻ σ₂) = logistic(Σ_t Â(σ₁) − Σ_t Â(σ₂))``
    (full batch, Adam), with ``Â(s, a) = g(s, a) − max(g(s, a), max_j g(s, candidates[j]))``
    and ``g`` an MLP on the standardised observation and the action.

    Args:
        seg1, seg2: the segment pairs.
        labels: ``P(σ₁ ≻ σ₂)`` labels in ``[0, 1]``.
        candidates: ``[m, ...]`` candidate actions (all actions for a discrete space, as
            one-hot or index vectors; samples of the action space for a continuous one).
        hidden: MLP hidden sizes.
        steps, lr, weight_decay: Adam settings.
        seed: seed of the initialisation.

    Raises:
        ConfigError: shapes or labels that do not fit.
        MissingDependencyError: torch is not installed.
    """
    torch = require("torch", "sb3", "learning advantages from preferences")
    y_np = np.asarray(labels, dtype=np.float64)
    if len(seg1) != len(seg2) or y_np.shape != (len(seg1),) or len(seg1) == 0:
        raise ConfigError("learn_advantage needs seg1, seg2 and labels of the same, non-zero length")
    if ((y_np < 0) | (y_np > 1)).any():
        raise ConfigError("labels must be probabilities in [0, 1]")
    if seg1.obs.shape[2:] != seg2.obs.shape[2:] or seg1.action.shape[2:] != seg2.action.shape[2:]:
        raise ConfigError("seg1 and seg2 must have the same observation and action shapes")
    cand = np.asarray(candidates, dtype=np.float64)
    if cand.ndim < 1 or cand.shape[1:] != seg1.action.shape[2:]:
        raise ConfigError(f"candidates must be [m, {seg1.action.shape[2:]}] actions, got {cand.shape}")
    if steps < 1 or lr <= 0:
        raise ConfigError("learn_advantage needs steps >= 1 and lr > 0")
    n = len(seg1)
    flat_obs = np.concatenate([seg1.obs[seg1.mask], seg2.obs[seg2.mask]]).reshape(-1, int(np.prod(seg1.obs.shape[2:])))
    mu, sd = flat_obs.mean(0), flat_obs.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    gen = torch.Generator().manual_seed(int(seed or 0))
    d_in = flat_obs.shape[1] + int(np.prod(seg1.action.shape[2:]))
    layers: list[Any] = []
    d = d_in
    for h in hidden:
        lin = torch.nn.Linear(d, h).double()
        torch.nn.init.normal_(lin.weight, std=(1.0 / d) ** 0.5, generator=gen)
        torch.nn.init.zeros_(lin.bias)
        layers += [lin, torch.nn.Tanh()]
        d = h
    last = torch.nn.Linear(d, 1).double()
    torch.nn.init.normal_(last.weight, std=(1.0 / d) ** 0.5, generator=gen)
    torch.nn.init.zeros_(last.bias)
    net = torch.nn.Sequential(*layers, last)
    model = LearnedAdvantage(net, cand, float("nan"), [], mu, sd)

    def tensors(seg: SegmentArrays) -> tuple[Any, Any, Any]:
        o = torch.as_tensor(seg.obs.reshape(n, seg.obs.shape[1], -1))
        o = (o - torch.as_tensor(mu)) / torch.as_tensor(sd)
        a = torch.as_tensor(seg.action.reshape(n, seg.action.shape[1], -1))
        return o, a, torch.as_tensor(seg.mask, dtype=torch.float64)

    t1, t2 = tensors(seg1), tensors(seg2)
    y = torch.as_tensor(y_np)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sp = torch.nn.functional.softplus
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            opt.zero_grad()
            s1 = (model._adv_t(torch, t1[0], t1[1]) * t1[2]).sum(1)
            s2 = (model._adv_t(torch, t2[0], t2[1]) * t2[2]).sum(1)
            z = s1 - s2  # = regret(σ₂) − regret(σ₁)
            nll = (y * sp(-z) + (1 - y) * sp(z)).mean()
            nll.backward()
            opt.step()
            model.losses.append(float(nll.detach()))
    finally:
        torch.set_num_threads(threads)
    model.loss = model.losses[-1]
    return model

"""BARFI: learn how to blend a primary reward with designer heuristics (Gupta et al. 2023).

"Behavior Alignment via Reward Function Optimization" treats reward design as a bilevel
problem. The *inner* learner trains a policy ``π_θ`` on a parameterised reward and
discount,

    r_φ(s, a) = φ₁(s) + φ₂(s)·r_primary(s, a) + Σ_j φ₃ⱼ(s)·r_auxⱼ(s, a),    γ_φ = sigmoid(w),

where ``φ(s)`` is a small network on the state; the *outer* step moves ``φ`` (and ``w``)
to raise the return of the **primary** reward (the env's own reward, or a sparse success
reward) under the env's discount. The outer gradient goes through the inner optimum by
the implicit function theorem,

    dJ/dφ = −∂²L/∂φ∂θ · (∂²L/∂θ²)⁻¹ · ∇_θ J,

with the inverse-Hessian-vector product approximated by a Neumann series
(:func:`neumann_inverse_hvp`); ``neumann_iterations=0`` is the first-order variant
(``H⁻¹ ≈ α·I``, i.e. differentiating through one inner gradient step).

The auxiliary rewards are any reward plugins: wrap the env with
:class:`~robo_reward.VectorRewardWrapper` and name the auxiliary terms of
``infos["reward_terms"]`` (``aux_terms``); the primary reward is ``infos["env_reward"]`` or
a named term (``primary``).

This module's inner learner is REINFORCE with a batch-mean baseline on fixed-length
rollouts from a Gymnasium vector env (discounted returns-to-go computed in closed form,
so that they are differentiable in ``φ`` and ``γ_φ``). Both parts of the bilevel
machinery, :func:`neumann_inverse_hvp` and :func:`implicit_hypergradient`, are
independent of it and tested on quadratics against exact solutions.

``robo-reward train --agent barfi`` trains it on a task card (hyperparameters from
``agents/barfi.yaml``, :func:`load_preset`); the run's reward plugin supplies the
auxiliary terms and the env's own reward is the primary one, e.g.
``--reward "python:fn=robo_reward.rewards.examples:inverted_pendulum_upright"``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import ConfigError
from .ppo import MLP, _mean, _resolve_device, _restore_generator

__all__ = [
    "AGENT_NAMES",
    "BARFI",
    "BARFIConfig",
    "BlendedReward",
    "discounted_returns",
    "implicit_hypergradient",
    "neumann_inverse_hvp",
    "load_preset",
    "make_agent",
    "CHECKPOINT_FORMAT",
]

#: Agent names this module builds (``robo-reward train --agent barfi``).
AGENT_NAMES: tuple[str, ...] = ("barfi",)

#: Finished episodes averaged in the metrics' ``*_return`` means.
STATS_WINDOW = 100

#: The ``format`` field of BARFI checkpoints.
CHECKPOINT_FORMAT = "robo_reward.barfi/1"


# --------------------------------------------------------------------------- bilevel maths
def neumann_inverse_hvp(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    v: torch.Tensor,
    alpha: float,
    iterations: int,
    damping: float = 0.0,
) -> torch.Tensor:
    """Approximate ``(H + λI)⁻¹ v`` with the Neumann series ``α Σ_{i=0..n} (I − α(H + λI))ⁱ v``.

    Converges to the exact product when every eigenvalue of ``α(H + λI)`` lies in
    ``(0, 2)``; ``iterations=0`` gives ``α v`` (the first-order approximation).

    Args:
        hvp: ``x ↦ H x`` for a flat vector ``x`` (e.g. a double-backward product).
        v: the flat vector to multiply.
        alpha: step size of the series (``α``).
        iterations: number of terms after the first.
        damping: ``λ`` added to ``H`` (makes an indefinite Hessian safer to invert).
    """
    if iterations < 0:
        raise ConfigError(f"neumann iterations must be >= 0, got {iterations}")
    if not alpha > 0:
        raise ConfigError(f"neumann alpha must be > 0, got {alpha}")
    term = v.detach().clone()
    total = term.clone()
    for _ in range(iterations):
        hx = hvp(term)
        if damping:
            hx = hx + damping * term
        term = term - alpha * hx
        total = total + term
    return alpha * total


def _flat(tensors: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(tensors, like)])


def _unflat(v: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, o = [], 0
    for p in like:
        n = p.numel()
        out.append(v[o:o + n].view_as(p))
        o += n
    return out


def implicit_hypergradient(
    inner_loss: torch.Tensor,
    theta: Sequence[torch.Tensor],
    phi: Sequence[torch.Tensor],
    outer_grad: Sequence[torch.Tensor] | torch.Tensor,
    *,
    alpha: float,
    iterations: int,
    damping: float = 0.0,
) -> list[torch.Tensor]:
    """``dJ/dφ`` at an inner optimum ``θ*(φ) = argmin_θ L(θ, φ)``, by the implicit function theorem.

    ``dJ/dφ = −∂_φ[∇_θ L(θ, φ) · u]`` with ``u ≈ (∇²_θ L + λI)⁻¹ ∇_θ J`` from
    :func:`neumann_inverse_hvp` (Hessian-vector products by double backward).

    Args:
        inner_loss: ``L(θ, φ)``, a scalar with a graph to both ``theta`` and ``phi``.
        theta: inner parameters.
        phi: outer parameters.
        outer_grad: ``∇_θ J`` (a flat vector or one tensor per ``theta`` entry), the
            gradient of the outer objective to *maximise*.
        alpha, iterations, damping: of the Neumann series.

    Returns:
        One tensor per ``phi`` entry: the gradient of ``J`` (ascend it).
    """
    theta, phi = list(theta), list(phi)
    g_theta = torch.autograd.grad(inner_loss, theta, create_graph=True)
    flat_g = _flat(g_theta, theta)
    v = outer_grad if isinstance(outer_grad, torch.Tensor) else _flat(list(outer_grad), theta)
    v = v.detach()

    def hvp(x: torch.Tensor) -> torch.Tensor:
        return _flat(torch.autograd.grad(flat_g, theta, grad_outputs=x, retain_graph=True, allow_unused=True), theta)

    u = neumann_inverse_hvp(hvp, v, alpha, iterations, damping)
    mixed = torch.autograd.grad(flat_g, phi, grad_outputs=u, allow_unused=True)
    return [-(m if m is not None else torch.zeros_like(p)) for m, p in zip(mixed, phi)]


def discounted_returns(rewards: torch.Tensor, dones: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """Returns-to-go ``G_t = r_t + γ·(1 − done_t)·G_{t+1}`` over a rollout, in closed form (differentiable in γ and r).

    Args:
        rewards: ``[T, N]``.
        dones: ``bool[T, N]``: the episode ended at step ``t`` (nothing after it is added).
        gamma: a scalar (tensor or float).

    Returns:
        ``[T, N]``; the rollout's last steps get no bootstrap.
    """
    T = rewards.shape[0]
    dev = rewards.device
    d = dones.to(rewards.dtype)
    # segment id of each step: steps t..k belong to one episode iff no done in t..k-1
    ends_before = torch.cumsum(torch.cat([torch.zeros_like(d[:1]), d[:-1]]), 0)  # [T, N]
    same = ends_before.T.unsqueeze(2) == ends_before.T.unsqueeze(1)  # [N, t, k]
    idx = torch.arange(T, device=dev)
    lag = (idx[None, :] - idx[:, None]).to(rewards.dtype)  # k - t
    upper = lag >= 0
    g = torch.as_tensor(gamma, dtype=rewards.dtype, device=dev)
    weights = torch.where(upper, g ** lag.clamp(min=0), torch.zeros((), dtype=rewards.dtype, device=dev))
    weights = weights.unsqueeze(0) * same.to(rewards.dtype)  # [N, T, T]
    return torch.einsum("ntk,kn->tn", weights, rewards)


# --------------------------------------------------------------------------- config and reward net
@dataclass
class BARFIConfig:
    """Hyperparameters of :class:`BARFI`. Build from a mapping with :meth:`from_dict` (unknown keys raise).

    Attributes:
        n_steps: steps per sub-env per rollout (one inner update per rollout).
        policy_lr: Adam step size of the policy (inner learner).
        reward_lr: Adam step size of ``φ`` and the discount logit (outer learner).
        inner_epochs: gradient steps on the policy per rollout.
        outer_every: one outer (reward) step every this many rollouts.
        gamma: the env's discount, used for the primary objective.
        gamma_init: initial learned discount ``γ_φ``.
        learn_gamma: learn ``γ_φ`` (else it stays at ``gamma_init``).
        init_weights: initial ``(φ₁, φ₂, φ₃)``: 0, 1, 1 starts from the naive sum ``r_primary + r_aux``.
        neumann_iterations: terms of the Neumann series after the first (0: first-order variant).
        neumann_alpha: the series' step size ``α``.
        damping: ``λ`` added to the inner Hessian.
        ent_coef: entropy bonus of the inner learner.
        max_grad_norm: gradient-norm clip of both learners (``None``: off).
        net_arch: hidden sizes of the policy.
        reward_arch: hidden sizes of the ``φ(s)`` network.
        primary: ``env_reward`` or the name of a term in ``infos["reward_terms"]``.
        aux_terms: names of the auxiliary terms (``None``: every term except ``primary``).
    """

    n_steps: int = 128
    policy_lr: float = 1e-3
    reward_lr: float = 1e-2
    inner_epochs: int = 1
    outer_every: int = 1
    gamma: float = 0.99
    gamma_init: float = 0.99
    learn_gamma: bool = True
    init_weights: tuple[float, float, float] = (0.0, 1.0, 1.0)
    neumann_iterations: int = 5
    neumann_alpha: float = 0.1
    damping: float = 0.0
    ent_coef: float = 0.0
    max_grad_norm: float | None = 1.0
    net_arch: list[int] = dataclasses.field(default_factory=lambda: [64, 64])
    reward_arch: list[int] = dataclasses.field(default_factory=lambda: [32])
    primary: str = "env_reward"
    aux_terms: list[str] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, where: str = "BARFI config", **overrides: Any) -> "BARFIConfig":
        """Build and validate; raise :class:`ConfigError` on unknown keys or bad values."""
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        merged = {**dict(data or {}), **overrides}
        keys = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(merged) - set(keys))
        if unknown:
            raise ConfigError(f"unknown BARFI hyperparameter(s) {unknown} in {where}; valid keys: {', '.join(keys)}")
        cfg = cls(**merged)
        cfg.validate(where)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of every field."""
        d = dataclasses.asdict(self)
        d["init_weights"] = list(self.init_weights)
        return d

    def validate(self, where: str = "BARFI config") -> "BARFIConfig":
        """Check every value; raise :class:`ConfigError` on the first bad one."""

        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{key}={getattr(self, key)!r} in {where}: {msg}")

        for key in ("n_steps", "inner_epochs", "outer_every"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(key, "must be an integer >= 1")
        if isinstance(self.neumann_iterations, bool) or not isinstance(self.neumann_iterations, int) or self.neumann_iterations < 0:
            raise bad("neumann_iterations", "must be an integer >= 0 (0 = first-order)")
        for key in ("policy_lr", "reward_lr", "neumann_alpha"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(key, "must be a number > 0")
        for key in ("damping", "ent_coef"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(key, "must be a number >= 0")
        for key in ("gamma", "gamma_init"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise bad(key, "must be in (0, 1)")
        if self.max_grad_norm is not None and (not isinstance(self.max_grad_norm, (int, float)) or self.max_grad_norm <= 0):
            raise bad("max_grad_norm", "must be > 0 or null")
        if not isinstance(self.learn_gamma, bool):
            raise bad("learn_gamma", "must be true or false")
        w = self.init_weights
        if isinstance(w, str) or not isinstance(w, Sequence) or len(w) != 3 or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in w
        ):
            raise bad("init_weights", "must be three numbers (phi1, phi2, phi3)")
        self.init_weights = tuple(float(x) for x in w)  # type: ignore[assignment]
        for key in ("net_arch", "reward_arch"):
            v = getattr(self, key)
            if isinstance(v, str) or not isinstance(v, Sequence) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v
            ):
                raise bad(key, "must be a list of layer sizes >= 1")
            setattr(self, key, [int(x) for x in v])
        if not isinstance(self.primary, str) or not self.primary:
            raise bad("primary", "must be 'env_reward' or a term name")
        if self.aux_terms is not None:
            if isinstance(self.aux_terms, str) or not isinstance(self.aux_terms, Sequence) or not self.aux_terms:
                raise bad("aux_terms", "must be a non-empty list of term names, or null for every other term")
            self.aux_terms = [str(t) for t in self.aux_terms]
            if self.primary in self.aux_terms:
                raise bad("aux_terms", f"includes the primary reward {self.primary!r}")
        return self


class BlendedReward(nn.Module):
    """``r_φ(s, a) = φ₁(s) + φ₂(s)·r_primary + Σ_j φ₃ⱼ(s)·r_auxⱼ`` and the discount ``γ_φ = sigmoid(w)``.

    ``φ(s)`` is an MLP whose last layer starts at zero weights with biases
    ``init_weights`` (so at the start ``φ`` is the same for every state).

    Args:
        obs_dim: state size.
        n_aux: number of auxiliary rewards.
        hidden: hidden layer sizes of ``φ(s)``.
        init_weights: initial ``(φ₁, φ₂, φ₃)``.
        gamma_init: initial ``γ_φ``.
    """

    def __init__(self, obs_dim: int, n_aux: int, hidden: Sequence[int] = (32,),
                 init_weights: Sequence[float] = (0.0, 1.0, 1.0), gamma_init: float = 0.99):
        super().__init__()
        self.n_aux = int(n_aux)
        self.net = MLP(obs_dim, hidden, 2 + self.n_aux, 1, "tanh", True, 1.0)
        with torch.no_grad():
            self.net.weights[-1].zero_()
            self.net.biases[-1].copy_(torch.tensor([init_weights[0], init_weights[1]] + [init_weights[2]] * self.n_aux))
        self.gamma_logit = nn.Parameter(torch.tensor(math.log(gamma_init / (1.0 - gamma_init))))

    @property
    def gamma(self) -> torch.Tensor:
        """``γ_φ = sigmoid(w)``."""
        return torch.sigmoid(self.gamma_logit)

    def weights(self, obs: torch.Tensor) -> torch.Tensor:
        """``φ(s)``: ``[..., 2 + n_aux]``."""
        shape = obs.shape[:-1]
        return self.net(obs.reshape(-1, obs.shape[-1])).reshape(*shape, 2 + self.n_aux)

    def forward(self, obs: torch.Tensor, r_primary: torch.Tensor, r_aux: torch.Tensor) -> torch.Tensor:
        """``r_φ`` for ``obs [..., D]``, ``r_primary [...]``, ``r_aux [..., n_aux]``."""
        w = self.weights(obs)
        return w[..., 0] + w[..., 1] * r_primary + (w[..., 2:] * r_aux).sum(-1)


# --------------------------------------------------------------------------- agent
class BARFI:
    """Bilevel reward blending: a policy learns from ``r_φ``, and ``φ`` learns to raise the primary return.

    Args:
        env: a Gymnasium vector env (Box observations, Box or Discrete actions), wrapped in
            :class:`~robo_reward.VectorRewardWrapper` whose plugin reports the auxiliary
            rewards as terms.
        config: a :class:`BARFIConfig` or a mapping of its fields.
        seed: seeds the networks, sampling and the env's first reset.
        device: ``auto``, ``cpu`` or ``cuda``.
        metrics_hook: called after every rollout with a metrics dict (``False`` stops).
    """

    def __init__(self, env: Any, config: BARFIConfig | Mapping[str, Any] | None = None, *, seed: int = 0,
                 device: str = "auto", metrics_hook: Callable[[dict[str, Any]], Any] | None = None,
                 observation_space: Any = None, action_space: Any = None, **overrides: Any):
        import gymnasium as gym
        from gymnasium import spaces

        cfg = BARFIConfig.from_dict(config.to_dict() if isinstance(config, BARFIConfig) else config, **overrides)
        self.config = cfg
        if env is not None and not isinstance(env, gym.vector.VectorEnv):
            raise ConfigError(f"BARFI needs a Gymnasium vector env, got {type(env).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.device = _resolve_device(device)
        self.metrics_hook = metrics_hook
        if env is not None:
            obs_space, act_space = env.single_observation_space, env.single_action_space
        elif observation_space is None or action_space is None or cfg.aux_terms is None:
            raise ConfigError("BARFI(env=None) (a policy that only predicts) needs observation_space, action_space "
                              "and aux_terms")
        else:
            obs_space, act_space = observation_space, action_space
        if not isinstance(obs_space, spaces.Box):
            raise ConfigError(f"BARFI supports Box observations, got {type(obs_space).__name__}")
        if isinstance(act_space, spaces.Discrete):
            self.continuous, self.action_dim = False, int(act_space.n)
            self._action_start = int(act_space.start)
        elif isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            self.continuous, self.action_dim = True, int(act_space.shape[0])
            self._low, self._high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        else:
            raise ConfigError(f"BARFI supports Discrete and 1-D Box actions, got {act_space}")
        self.observation_space, self.action_space = obs_space, act_space
        self.obs_dim = int(np.prod(obs_space.shape))
        self.env: Any = None
        self.num_envs = 0
        self.aux_terms = self._find_aux_terms(env) if env is not None else list(cfg.aux_terms or [])

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.policy = MLP(self.obs_dim, cfg.net_arch, self.action_dim, 1, "tanh", True, 0.01).to(self.device)
            self.log_std = nn.Parameter(torch.zeros(self.action_dim, device=self.device)) if self.continuous else None
            self.reward = BlendedReward(self.obs_dim, len(self.aux_terms), cfg.reward_arch, cfg.init_weights,
                                        cfg.gamma_init).to(self.device)
        self.theta = list(self.policy.parameters()) + ([self.log_std] if self.log_std is not None else [])
        self.phi = list(self.reward.net.parameters()) + ([self.reward.gamma_logit] if cfg.learn_gamma else [])
        self.policy_opt = torch.optim.Adam(self.theta, lr=cfg.policy_lr)
        self.reward_opt = torch.optim.Adam(self.phi, lr=cfg.reward_lr)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(self.seed + 1)
        self.num_timesteps = 0
        self.n_rollouts = 0
        self.episodes = 0
        self._obs: np.ndarray | None = None
        self._finished: list[dict[str, Any]] = []
        self._ep_returns: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._ep_env_returns: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._ep_primary: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._ep_lengths: collections.deque[int] = collections.deque(maxlen=STATS_WINDOW)
        self._ep_successes: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        if env is not None:
            self.set_env(env)

    def set_env(self, env: Any) -> None:
        """Train on ``env`` from now on (same spaces; its step info must carry the auxiliary terms).

        The next :meth:`learn` resets it, seeded with ``seed + num_timesteps``.
        """
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode

        if not isinstance(env, gym.vector.VectorEnv):
            raise ConfigError(f"BARFI needs a Gymnasium vector env, got {type(env).__name__}")
        if env.single_observation_space.shape != self.observation_space.shape:
            raise ConfigError(f"env observations have shape {env.single_observation_space.shape}, the agent expects "
                              f"{self.observation_space.shape}")
        if type(env.single_action_space) is not type(self.action_space) or (
            getattr(env.single_action_space, "shape", None) != getattr(self.action_space, "shape", None)
        ):
            raise ConfigError(f"env action space {env.single_action_space} does not match the agent's {self.action_space}")
        raw = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        mode = raw if isinstance(raw, AutoresetMode) else AutoresetMode(raw)
        if mode == AutoresetMode.DISABLED:
            raise ConfigError("BARFI needs an env that resets itself: autoreset_mode NEXT_STEP or SAME_STEP")
        self._same_step = mode == AutoresetMode.SAME_STEP
        self.env = env
        self.num_envs = int(env.num_envs)
        self._obs = None
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._run = np.zeros((3, self.num_envs))  # step reward, primary reward, env reward
        self._run_len = np.zeros(self.num_envs, dtype=np.int64)
        self._run_succ = np.zeros(self.num_envs, dtype=bool)

    # ------------------------------------------------------------------ helpers
    def _find_aux_terms(self, env: Any) -> list[str]:
        cfg = self.config
        if cfg.aux_terms is not None:
            return list(cfg.aux_terms)
        env.reset(seed=self.seed)
        _, _, _, _, infos = env.step(np.stack([env.single_action_space.sample() for _ in range(env.num_envs)]))
        terms = infos.get("reward_terms")
        if not terms:
            raise ConfigError(
                "BARFI blends a primary reward with auxiliary rewards from infos['reward_terms']: wrap the env with "
                "robo_reward.VectorRewardWrapper and a reward whose terms are the auxiliary rewards, or set aux_terms"
            )
        aux = [k for k in terms if k != cfg.primary]
        if not aux:
            raise ConfigError(f"the reward's only term is the primary {cfg.primary!r}: no auxiliary reward to blend")
        return aux

    def _column(self, name: str, reward: np.ndarray, infos: Mapping[str, Any], valid: np.ndarray) -> np.ndarray:
        if name == "env_reward":
            if "env_reward" not in infos:
                raise ConfigError("primary 'env_reward' needs infos['env_reward']: wrap the env with VectorRewardWrapper")
            return np.asarray(infos["env_reward"], dtype=np.float32)
        terms = infos.get("reward_terms") or {}
        if name in terms:
            return np.asarray(terms[name], dtype=np.float32)
        if not valid.any():
            return np.zeros(self.num_envs, dtype=np.float32)
        raise ConfigError(f"reward term {name!r} is not in infos['reward_terms'] (it has {sorted(terms)})")

    def _dist_logp(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(obs)
        if self.continuous:
            assert self.log_std is not None
            z = (actions - out) * torch.exp(-self.log_std)
            logp = -0.5 * z.square().sum(-1) - self.log_std.sum() - 0.5 * self.action_dim * math.log(2 * math.pi)
            ent = (self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum().expand(logp.shape)
        else:
            lp = torch.log_softmax(out, -1)
            logp = lp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            ent = -(lp.exp() * lp).sum(-1)
        return logp, ent

    # ------------------------------------------------------------------ rollout
    def _collect(self) -> dict[str, torch.Tensor]:
        T, N, dev = self.config.n_steps, self.num_envs, self.device
        obs_b = np.zeros((T, N, self.obs_dim), np.float32)
        act_b = np.zeros((T, N, self.action_dim) if self.continuous else (T, N), np.float32 if self.continuous else np.int64)
        rp_b = np.zeros((T, N), np.float32)
        ra_b = np.zeros((T, N, len(self.aux_terms)), np.float32)
        done_b = np.zeros((T, N), bool)
        valid_b = np.ones((T, N), bool)
        if self._obs is None:
            obs, _ = self.env.reset(seed=self.seed + self.num_timesteps)
            self._obs = np.asarray(obs, np.float32).reshape(N, -1)
            self._prev_done[:] = False
            self._run[:] = 0.0
            self._run_len[:] = 0
            self._run_succ[:] = False
        with torch.no_grad():
            for t in range(T):
                obs_b[t] = self._obs
                out = self.policy(torch.from_numpy(self._obs).to(dev))
                if self.continuous:
                    assert self.log_std is not None
                    a = out + self.log_std.exp() * torch.randn(out.shape, generator=self._gen, device=dev)
                    act_b[t] = a.cpu().numpy()
                    env_a = np.clip(act_b[t], self._low, self._high)
                else:
                    a = torch.multinomial(torch.softmax(out, -1), 1, generator=self._gen).squeeze(-1)
                    act_b[t] = a.cpu().numpy()
                    env_a = act_b[t] + self._action_start if self._action_start else act_b[t]
                obs, reward, term, trunc, infos = self.env.step(env_a)
                valid = np.ones(N, bool) if self._same_step else ~self._prev_done
                done = np.asarray(term, bool) | np.asarray(trunc, bool)
                rp_b[t] = self._column(self.config.primary, reward, infos, valid)
                for j, name in enumerate(self.aux_terms):
                    ra_b[t, :, j] = self._column(name, reward, infos, valid)
                done_b[t], valid_b[t] = done, valid
                self._run[0] += np.asarray(reward, np.float64) * valid
                self._run[1] += rp_b[t] * valid
                env_r = infos.get("env_reward")
                if env_r is not None:
                    self._run[2] += np.asarray(env_r, np.float64) * valid
                self._run_len += valid
                succ = infos.get("is_success")
                if succ is not None:
                    self._run_succ |= (np.asarray(succ, dtype=bool) & np.asarray(infos.get("_is_success", True), bool)
                                       & valid)
                if done.any():
                    fin = infos.get("final_info") if self._same_step else None
                    if fin and "is_success" in fin:
                        self._run_succ |= (np.asarray(fin["is_success"], dtype=bool)
                                           & np.asarray(fin.get("_is_success", True), dtype=bool) & done)
                for i in np.flatnonzero(done):
                    self._finished.append({
                        "return": float(self._run[0, i]),
                        "primary_return": float(self._run[1, i]),
                        "env_return": float(self._run[2, i]) if env_r is not None else None,
                        "length": int(self._run_len[i]),
                        "success": bool(self._run_succ[i]),
                    })
                    self._run[:, i] = 0.0
                    self._run_len[i] = 0
                    self._run_succ[i] = False
                if not self._same_step:
                    self._prev_done = done
                self._obs = np.asarray(obs, np.float32).reshape(N, -1)
        self.num_timesteps += T * N
        to = lambda x: torch.from_numpy(x).to(dev)  # noqa: E731
        return {"obs": to(obs_b), "actions": to(act_b), "r_primary": to(rp_b), "r_aux": to(ra_b),
                "dones": to(done_b), "valid": to(valid_b.astype(np.float32))}

    # ------------------------------------------------------------------ losses
    def inner_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """REINFORCE loss on ``r_φ`` with discount ``γ_φ`` (differentiable in θ and φ)."""
        r = self.reward(batch["obs"], batch["r_primary"], batch["r_aux"]) * batch["valid"]
        g = discounted_returns(r, batch["dones"], self.reward.gamma)
        logp, ent = self._dist_logp(batch["obs"], batch["actions"])
        w = batch["valid"]
        n = w.sum().clamp(min=1.0)
        adv = g - (g * w).sum() / n
        loss = -(logp * adv * w).sum() / n
        if self.config.ent_coef:
            loss = loss - self.config.ent_coef * (ent * w).sum() / n
        return loss

    def outer_objective(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Policy-gradient surrogate of the primary return under the env's discount (its θ-gradient is ∇_θ J)."""
        with torch.no_grad():
            g = discounted_returns(batch["r_primary"] * batch["valid"], batch["dones"], self.config.gamma)
            w = batch["valid"]
            n = w.sum().clamp(min=1.0)
            adv = g - (g * w).sum() / n
        logp, _ = self._dist_logp(batch["obs"], batch["actions"])
        return (logp * adv * w).sum() / n

    def _clip(self, params: Sequence[torch.Tensor]) -> None:
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)

    def outer_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One implicit-gradient step on φ (and the discount logit) to raise the primary return."""
        cfg = self.config
        outer_grad = torch.autograd.grad(self.outer_objective(batch), self.theta, allow_unused=True)
        hyper = implicit_hypergradient(
            self.inner_loss(batch), self.theta, self.phi, [g if g is not None else torch.zeros_like(p)
                                                           for g, p in zip(outer_grad, self.theta)],
            alpha=cfg.neumann_alpha, iterations=cfg.neumann_iterations, damping=cfg.damping,
        )
        self.reward_opt.zero_grad(set_to_none=True)
        for p, h in zip(self.phi, hyper):
            p.grad = -h.detach()  # the optimizer minimises: descend on −J
        norm = float(torch.linalg.vector_norm(torch.cat([h.reshape(-1) for h in hyper])))
        self._clip(self.phi)
        self.reward_opt.step()
        return {"hypergradient_norm": norm}

    def inner_step(self, batch: Mapping[str, torch.Tensor]) -> float:
        """One policy-gradient step on ``r_φ``; returns the loss."""
        self.policy_opt.zero_grad(set_to_none=True)
        loss = self.inner_loss(batch)
        grads = torch.autograd.grad(loss, self.theta)
        for p, g in zip(self.theta, grads):
            p.grad = g
        self._clip(self.theta)
        self.policy_opt.step()
        return float(loss.detach())

    # ------------------------------------------------------------------ public API
    def learn(
        self,
        total_timesteps: int,
        progress_bar: bool = True,
        *,
        reset_num_timesteps: bool = True,
        metrics_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> "BARFI":
        """Alternate rollouts, outer (reward) steps and inner (policy) steps for ``total_timesteps`` env steps.

        ``reset_num_timesteps=False`` continues the step counter (a resumed run learning
        its remaining steps). After every rollout the metrics hook (``metrics_hook`` here,
        else the constructor's) receives ``timesteps``, ``rollouts``, ``fps``, ``time_s``,
        the episodes that ended in the rollout (``episodes``: ``{"return", "primary_return",
        "env_return", "length", "success"}``; ``return`` is of the env's step reward, i.e.
        the reward wrapper's output, which BARFI does not learn from directly),
        ``return`` and ``primary_return`` (means over those episodes), means over the last
        100 episodes (``learned_return``, ``env_return``, ``primary_return_mean``,
        ``success_rate``, ``ep_length``), ``episodes_total``, ``gamma_phi``, ``phi_mean``
        (``[φ₁, φ₂, φ₃…]`` averaged over the rollout's states), ``inner_loss`` and
        ``hypergradient_norm``. Returning ``False`` from the hook stops training.
        """
        if self.env is None:
            raise ConfigError("this BARFI has no env: pass one to BARFI(...) / BARFI.load(..., env=...) or call set_env()")
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 0:
            raise ConfigError(f"total_timesteps must be an integer >= 0, got {total_timesteps!r}")
        hook = metrics_hook or self.metrics_hook
        if reset_num_timesteps:
            self.num_timesteps = 0
            self.n_rollouts = 0
        target = self.num_timesteps + int(total_timesteps)
        start, t0 = self.num_timesteps, time.perf_counter()
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(total_timesteps), unit="step", desc="barfi")
        try:
            while self.num_timesteps < target:
                before = self.num_timesteps
                self._finished = []
                batch = self._collect()
                finished = self._finished
                for ep in finished:
                    self._ep_returns.append(ep["return"])
                    self._ep_primary.append(ep["primary_return"])
                    if ep["env_return"] is not None:
                        self._ep_env_returns.append(ep["env_return"])
                    self._ep_lengths.append(ep["length"])
                    self._ep_successes.append(float(ep["success"]))
                self.episodes += len(finished)
                self.n_rollouts += 1
                outer = {}
                if self.n_rollouts % self.config.outer_every == 0:
                    outer = self.outer_step(batch)
                loss = float("nan")
                for _ in range(self.config.inner_epochs):
                    loss = self.inner_step(batch)
                with torch.no_grad():
                    phi_mean = self.reward.weights(batch["obs"]).reshape(-1, 2 + len(self.aux_terms)).mean(0)
                elapsed = time.perf_counter() - t0
                metrics = {
                    "timesteps": self.num_timesteps,
                    "rollouts": self.n_rollouts,
                    "episodes": finished,
                    "episodes_total": self.episodes,
                    "return": _mean([e["return"] for e in finished]),
                    "primary_return": _mean([e["primary_return"] for e in finished]),
                    "learned_return": _mean(self._ep_returns),
                    "env_return": _mean(self._ep_env_returns),
                    "primary_return_mean": _mean(self._ep_primary),
                    "success_rate": _mean(self._ep_successes),
                    "ep_length": _mean(self._ep_lengths),
                    "gamma_phi": float(self.reward.gamma.detach()),
                    "phi_mean": phi_mean.cpu().tolist(),
                    "inner_loss": loss,
                    "fps": (self.num_timesteps - start) / elapsed if elapsed > 0 else None,
                    "time_s": elapsed,
                    **outer,
                }
                if bar is not None:
                    bar.update(min(self.num_timesteps, target) - min(before, target))
                if hook is not None and hook(metrics) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
        return self

    def predict(self, obs: Any, deterministic: bool = True, state: Any = None, episode_start: Any = None
                ) -> tuple[np.ndarray, None]:
        """Actions for one observation or a batch; ``(action, None)`` like Stable-Baselines3."""
        x = np.asarray(obs, np.float32)
        single = x.shape == tuple(self.observation_space.shape)
        xt = torch.from_numpy(x.reshape(-1, self.obs_dim)).to(self.device)
        with torch.no_grad():
            out = self.policy(xt)
            if self.continuous:
                assert self.log_std is not None
                a = out if deterministic else out + self.log_std.exp() * torch.randn_like(out)
                act = np.clip(a.cpu().numpy(), self._low, self._high)
            else:
                act = (out.argmax(-1) if deterministic else torch.multinomial(torch.softmax(out, -1), 1)[:, 0]).cpu().numpy()
                if self._action_start:
                    act = act + self._action_start
        return (act[0] if single else act), None

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (config, spaces, networks, optimizers, RNG, counters), atomically."""
        from .ppo import _space_to_dict

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "seed": self.seed,
            "aux_terms": self.aux_terms,
            "observation_space": _space_to_dict(self.observation_space),
            "action_space": _space_to_dict(self.action_space),
            "policy": self.policy.state_dict(),
            "log_std": self.log_std.detach().cpu() if self.log_std is not None else None,
            "reward": self.reward.state_dict(), "policy_opt": self.policy_opt.state_dict(),
            "reward_opt": self.reward_opt.state_dict(), "rng": self._gen.get_state(),
            "rng_device": self._gen.device.type,
            "num_timesteps": self.num_timesteps, "n_rollouts": self.n_rollouts, "episodes": self.episodes,
        }, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, env: Any = None, *, device: str = "auto",
             metrics_hook: Callable[[dict[str, Any]], Any] | None = None) -> "BARFI":
        """Load a checkpoint written by :meth:`save`, onto ``env`` (reset at the next :meth:`learn`) or, with
        ``env=None``, as a policy that only predicts."""
        from .ppo import _space_from_dict

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no BARFI checkpoint at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"{path} is not a readable BARFI checkpoint: {exc}") from exc
        if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not a robo_reward BARFI checkpoint")
        cfg = dict(state["config"])
        cfg["aux_terms"] = state["aux_terms"]
        spaces_given = "observation_space" in state
        if env is None and not spaces_given:
            raise ConfigError(f"{path} predates stored spaces: load it with env=")
        agent = cls(env, cfg, seed=int(state["seed"]), device=device, metrics_hook=metrics_hook,
                    observation_space=_space_from_dict(state["observation_space"]) if spaces_given else None,
                    action_space=_space_from_dict(state["action_space"]) if spaces_given else None)
        agent.policy.load_state_dict(state["policy"])
        if agent.log_std is not None:
            with torch.no_grad():
                agent.log_std.copy_(state["log_std"])
        agent.reward.load_state_dict(state["reward"])
        agent.policy_opt.load_state_dict(state["policy_opt"])
        agent.reward_opt.load_state_dict(state["reward_opt"])
        agent.num_timesteps, agent.n_rollouts = int(state["num_timesteps"]), int(state["n_rollouts"])
        _restore_generator(agent._gen, state["rng"], state.get("rng_device"), agent.seed + 1 + agent.num_timesteps)
        agent.episodes = int(state.get("episodes", 0))
        return agent


# --------------------------------------------------------------------------- presets
def load_preset(family: str | None = None, overrides: Mapping[str, Any] | None = None,
                agent: str = "barfi") -> dict[str, Any]:
    """Hyperparameters from ``agents/barfi.yaml``: ``default`` ← ``<family>`` ← ``overrides``.

    Lists (``net_arch``, ``reward_arch``, ``init_weights``, ``aux_terms``) are replaced,
    not merged. The result is validated (:class:`ConfigError` on a bad key or value) and
    returned as a plain dict.
    """
    from .presets import layered_preset

    if agent not in AGENT_NAMES:
        raise ConfigError(f"unknown built-in agent {agent!r}; valid: {', '.join(AGENT_NAMES)}")
    params = layered_preset("barfi.yaml", family, overrides, what="BARFI")
    BARFIConfig.from_dict(params, where=f"barfi.yaml (family {family!r}) + overrides")
    return params


def make_agent(
    agent: str,
    env: Any,
    *,
    family: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str = "auto",
    metrics_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> BARFI:
    """Build ``barfi`` on ``env`` from the shipped preset (see :func:`load_preset`)."""
    params = load_preset(family, overrides, agent)
    return BARFI(env, params, seed=0 if seed is None else int(seed), device=device, metrics_hook=metrics_hook)

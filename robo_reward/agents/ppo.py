"""A fast PPO for Gymnasium vector envs, with an optional critic per reward term (SLIM).

:class:`PPO` is the clipped-objective Proximal Policy Optimisation of Schulman et al.
(2017) with the implementation details that make it work (as catalogued by CleanRL and
"The 37 implementation details of PPO"): orthogonal initialisation, generalised
advantage estimation, per-minibatch advantage normalisation, value clipping, global
gradient clipping, Adam with ``eps=1e-5``, linear learning-rate annealing, and running
observation and reward normalisation.

Multi-critic mode (``multi_critic=True``) follows SLIM (Emukpere et al. 2024, "Skill
Learning with Multiple Critics"): one critic per reward term (the terms a
:class:`~robo_reward.VectorRewardWrapper` puts in ``infos["reward_terms"]``), a separate
GAE per term, advantages normalised per term and combined with the configured weights
into the one advantage the actor's clipped objective uses. With one term it is exactly
single-critic PPO (:func:`combine_advantages`).

Written for speed on the CPU: the rollout does one batched forward per step, writes
straight into preallocated storage through numpy views of torch tensors, normalises
observations and rewards in place, and never loops over sub-envs in Python (only over the
few sub-envs whose episode just ended). The update permutes the batch once per epoch and
takes minibatches as views, uses fused Adam and ``foreach`` gradient clipping, and
builds no distribution objects.

Episode boundaries follow the env's autoreset mode:

* ``NEXT_STEP`` (Gymnasium's default): the observation returned with ``terminated`` or
  ``truncated`` is the real last one, and the next step only resets that sub-env. Those
  reset steps carry no transition: they are masked out of the loss (and their action is
  ignored by the env). A truncated episode bootstraps from the value of its real last
  observation.
* ``SAME_STEP``: the returned observation is already the reset one; a truncated
  episode bootstraps from the value of ``infos["final_obs"]``.

Typical use::

    import gymnasium as gym
    from robo_reward.agents.ppo import PPO

    env = gym.make_vec("CartPole-v1", num_envs=8)
    agent = PPO(env, {"n_steps": 128, "batch_size": 256}, seed=0)
    agent.learn(100_000)
    agent.save("cartpole.pt")
    action, _ = PPO.load("cartpole.pt").predict(obs, deterministic=True)
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import ConfigError

__all__ = [
    "PPO",
    "PPOConfig",
    "ActorCritic",
    "MLP",
    "RunningMeanStd",
    "compute_gae",
    "combine_advantages",
    "ppo_loss_grads",
    "explained_variance",
    "load_preset",
    "make_agent",
    "AGENT_NAMES",
    "CHECKPOINT_FORMAT",
]

#: Agent names this module builds. ``ppo-native`` (what ``robo-reward train --agent`` calls
#: it, since ``ppo`` there is Stable-Baselines3's) and ``ppo`` are the same single-critic PPO.
AGENT_NAMES: tuple[str, ...] = ("ppo", "ppo-native", "ppo-multicritic")

#: The ``format`` field written into every checkpoint.
CHECKPOINT_FORMAT = "robo_reward.ppo/1"

#: Special names a multi-critic ``critic_terms`` list may use besides the plugin's terms.
SPECIAL_TERMS = ("env_reward", "reward")

_ACTIVATIONS: dict[str, tuple[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "tanh": (nn.Tanh, torch.tanh),
    "relu": (nn.ReLU, torch.relu),
    "elu": (nn.ELU, nn.functional.elu),
    "leaky_relu": (nn.LeakyReLU, nn.functional.leaky_relu),
    "gelu": (nn.GELU, nn.functional.gelu),
    "silu": (nn.SiLU, nn.functional.silu),
}
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- config
@dataclass
class PPOConfig:
    """Hyperparameters of :class:`PPO`. Build from a mapping with :meth:`from_dict` (unknown keys raise).

    Attributes:
        n_steps: steps per sub-env per rollout (the batch is ``n_steps * num_envs``).
        batch_size: minibatch size (as in Stable-Baselines3; the batch is split into
            ``ceil(batch / batch_size)`` near-equal minibatches).
        n_epochs: passes over the batch per update.
        learning_rate: Adam step size (the start value when annealed).
        anneal_lr: decay the learning rate linearly to 0 over the ``learn`` call's target.
        gamma: discount factor.
        gae_lambda: GAE λ.
        clip_range: PPO ratio clip ε.
        clip_range_vf: value clip (CleanRL style: the max of the clipped and unclipped
            squared errors); ``None`` switches value clipping off.
        normalize_advantage: normalise advantages per minibatch (per term in multi-critic mode).
        ent_coef: entropy bonus coefficient.
        vf_coef: value-loss coefficient.
        max_grad_norm: global gradient-norm clip; ``None`` switches it off.
        target_kl: stop the update's epochs early once the approximate KL of an epoch's
            last minibatch exceeds this; ``None``: never.
        adam_eps: Adam ε.
        norm_obs: normalise observations with running mean/variance (saved in checkpoints).
        norm_reward: scale rewards by the running std of the discounted return (per term
            in multi-critic mode; saved in checkpoints).
        clip_obs: clip normalised observations to ``[-clip_obs, clip_obs]``.
        clip_reward: clip normalised rewards to ``[-clip_reward, clip_reward]``.
        norm_eps: ε added to variances before the square root.
        net_arch: hidden layer sizes, ``{"pi": [...], "vf": [...]}`` or one list for both.
        activation: ``tanh``, ``relu``, ``elu``, ``leaky_relu``, ``gelu`` or ``silu``.
        ortho_init: orthogonal initialisation (gains √2 hidden, 0.01 policy head, 1 value head).
        log_std_init: initial log standard deviation of the Gaussian policy (Box actions).
        multi_critic: one critic per reward term (SLIM).
        critic_terms: the terms that get a critic: names in ``infos["reward_terms"]``, or
            ``env_reward`` (the env's own reward) or ``reward`` (the step reward). ``None``:
            every term the reward plugin reports, in its order.
        term_weights: weight of each term's normalised advantage in the actor loss: a
            mapping ``{term: weight}`` (missing terms weigh 1) or a list in
            ``critic_terms`` order; ``None``: all 1.
        stats_window: finished episodes averaged in the metrics' ``*_return`` means.
        torch_threads: CPU threads torch uses while :meth:`PPO.learn` runs (restored
            afterwards). 1 (default) is fastest for small MLPs and, unlike torch's default
            of one thread per core, does not slow down by orders of magnitude when other
            processes share the cores; ``null`` leaves torch's setting alone.
    """

    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    clip_range_vf: float | None = 0.2
    normalize_advantage: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None
    adam_eps: float = 1e-5
    norm_obs: bool = False
    norm_reward: bool = False
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    norm_eps: float = 1e-8
    net_arch: dict[str, list[int]] | list[int] = field(default_factory=lambda: {"pi": [64, 64], "vf": [64, 64]})
    activation: str = "tanh"
    ortho_init: bool = True
    log_std_init: float = 0.0
    multi_critic: bool = False
    critic_terms: list[str] | None = None
    term_weights: dict[str, float] | list[float] | None = None
    stats_window: int = 100
    torch_threads: int | None = 1

    @classmethod
    def keys(cls) -> list[str]:
        """The valid hyperparameter names."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, where: str = "PPO config", **overrides: Any) -> "PPOConfig":
        """Build and validate a config from a mapping (plus keyword overrides).

        Raises:
            ConfigError: on unknown keys or invalid values, naming the valid keys.
        """
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        merged = dict(data or {})
        merged.update(overrides)
        unknown = sorted(set(merged) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown PPO hyperparameter(s) {unknown} in {where}; valid keys: {', '.join(cls.keys())}")
        cfg = cls(**merged)
        cfg.validate(where)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def validate(self, where: str = "PPO config") -> "PPOConfig":
        """Check every value; normalise ``net_arch``; raise :class:`ConfigError` on the first bad one."""

        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{key}={getattr(self, key)!r} in {where}: {msg}")

        for key in ("n_steps", "n_epochs", "stats_window"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(key, "must be an integer >= 1")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise bad("batch_size", "must be an integer >= 2 (advantages are normalised per minibatch)")
        positive = ("learning_rate", "clip_range", "adam_eps", "clip_obs", "clip_reward", "norm_eps")
        nonneg = ("ent_coef", "vf_coef")
        for key in positive + nonneg + ("gamma", "gae_lambda", "log_std_init"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(key, "must be a finite number")
            setattr(self, key, float(v))
        for key in positive:
            if getattr(self, key) <= 0:
                raise bad(key, "must be > 0")
        for key in nonneg:
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0")
        for key in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise bad(key, "must be in [0, 1]")
        for key in ("clip_range_vf", "max_grad_norm", "target_kl"):
            v = getattr(self, key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(key, "must be a number > 0, or null to switch it off")
            setattr(self, key, float(v))
        for key in ("anneal_lr", "normalize_advantage", "norm_obs", "norm_reward", "ortho_init", "multi_critic"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "must be true or false")
        if not isinstance(self.activation, str) or self.activation.lower() not in _ACTIVATIONS:
            raise bad("activation", f"use one of: {', '.join(_ACTIVATIONS)}")
        self.activation = self.activation.lower()
        self.net_arch = _check_net_arch(self.net_arch, where)
        if self.critic_terms is not None:
            if isinstance(self.critic_terms, str) or not isinstance(self.critic_terms, Sequence) or not self.critic_terms:
                raise bad("critic_terms", "must be a non-empty list of term names, or null for all terms")
            names = [str(t) for t in self.critic_terms]
            if len(set(names)) != len(names):
                raise bad("critic_terms", "names a term twice")
            self.critic_terms = names
            if not self.multi_critic:
                raise bad("critic_terms", "only applies with multi_critic: true")
        if self.torch_threads is not None and (
            isinstance(self.torch_threads, bool) or not isinstance(self.torch_threads, int) or self.torch_threads < 1
        ):
            raise bad("torch_threads", "must be an integer >= 1, or null to leave torch's setting")
        if self.term_weights is not None:
            if not self.multi_critic:
                raise bad("term_weights", "only applies with multi_critic: true")
            tw = self.term_weights
            if isinstance(tw, Mapping):
                vals = list(tw.values())
                self.term_weights = {str(k): v for k, v in tw.items()}
            elif isinstance(tw, Sequence) and not isinstance(tw, str):
                vals = list(tw)
                self.term_weights = list(tw)
            else:
                raise bad("term_weights", "must be a mapping {term: weight} or a list of weights")
            for v in vals:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise bad("term_weights", "weights must be finite numbers")
            if (isinstance(self.term_weights, list) and self.critic_terms is not None
                    and len(self.term_weights) != len(self.critic_terms)):
                raise bad("term_weights", f"has {len(self.term_weights)} weights for {len(self.critic_terms)} critic_terms")
        return self


def _check_net_arch(arch: Any, where: str) -> dict[str, list[int]]:
    def layers(v: Any, key: str) -> list[int]:
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
            raise ConfigError(f"net_arch {key} in {where} must be a list of layer sizes, got {v!r}")
        out = []
        for s in v:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ConfigError(f"net_arch {key} in {where}: layer sizes must be integers >= 1, got {s!r}")
            out.append(int(s))
        return out

    if isinstance(arch, Mapping):
        extra = sorted(set(arch) - {"pi", "vf"})
        if extra or set(arch) != {"pi", "vf"}:
            raise ConfigError(f"net_arch in {where} must have exactly the keys 'pi' and 'vf', got {sorted(arch)}")
        return {"pi": layers(arch["pi"], "pi"), "vf": layers(arch["vf"], "vf")}
    shared = layers(arch, "")
    return {"pi": list(shared), "vf": list(shared)}


# --------------------------------------------------------------------------- maths
class RunningMeanStd:
    """Running mean and variance over a batch axis (Chan et al. parallel update), in float64.

    Args:
        shape: shape of one sample.
        epsilon: initial pseudo-count (keeps the first update well defined).
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, x: np.ndarray) -> None:
        """Fold a batch ``x`` of shape ``[n, *shape]`` into the statistics."""
        n = x.shape[0]
        if n == 0:
            return
        if n == 1:
            batch_mean, batch_m2 = x[0], 0.0
        else:
            batch_mean = np.add.reduce(x, axis=0) / n
            d = x - batch_mean
            batch_m2 = np.add.reduce(d * d, axis=0)
        delta = batch_mean - self.mean
        tot = self.count + n
        self.mean = self.mean + delta * (n / tot)
        self.var = (self.var * self.count + batch_m2 + delta * delta * (self.count * n / tot)) / tot
        self.count = tot

    def state_dict(self) -> dict[str, Any]:
        """Tensors and a float, for a checkpoint."""
        return {"mean": torch.from_numpy(self.mean.copy()), "var": torch.from_numpy(self.var.copy()), "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        if mean.shape != self.mean.shape or var.shape != self.var.shape:
            raise ConfigError(f"normaliser statistics have shape {mean.shape}, expected {self.mean.shape}")
        self.mean, self.var, self.count = mean.copy(), var.copy(), float(state["count"])


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and value targets over a rollout.

    ``δ_t = r_t + γ·V'_t·(1 − terminated_t) − V_t`` and
    ``A_t = δ_t + γλ·(1 − done_t)·A_{t+1}``, where ``V'_t`` is the value of the
    observation that *followed* step ``t``: for a truncated step that is the value of the
    real last observation of the episode (so time limits bootstrap), for a terminated one
    it is multiplied away, and the recursion never crosses an episode boundary
    (``done = terminated | truncated``).

    Args:
        rewards: ``[T, N]`` or ``[T, N, K]`` (one column per reward term).
        values: ``V(s_t)``, same shape as ``rewards``.
        next_values: ``V'_t`` as above, same shape.
        terminated: ``bool[T, N]``.
        dones: ``bool[T, N]``, terminated or truncated.
        gamma: discount.
        gae_lambda: λ.

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values``, float32.
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    next_values = np.asarray(next_values, dtype=np.float32)
    extra = (slice(None), slice(None)) + (None,) * (rewards.ndim - 2)
    not_term = (1.0 - np.asarray(terminated, dtype=np.float32))[extra]
    not_done = (1.0 - np.asarray(dones, dtype=np.float32))[extra]
    deltas = rewards + np.float32(gamma) * next_values * not_term - values
    carry = np.float32(gamma * gae_lambda) * not_done
    adv = np.empty_like(deltas)
    last = np.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        adv[t] = last
    return adv, adv + values


def combine_advantages(advantages: torch.Tensor, weights: torch.Tensor, normalize: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Combine per-term advantages ``[..., B, K]`` into one advantage ``[..., B]`` for the actor (SLIM).

    Each term's column is normalised on its own over the minibatch axis ``B`` (mean 0,
    unit std) when ``normalize``, then the columns are summed with ``weights`` (``[K]``).
    With one term and weight 1 this is exactly single-critic PPO's per-minibatch
    advantage normalisation. A leading axis holds several minibatches at once.
    """
    if normalize and advantages.shape[-2] > 1:
        advantages = (advantages - advantages.mean(-2, keepdim=True)) / (advantages.std(-2, keepdim=True) + eps)
    return (advantages * weights).sum(-1)


def ppo_loss_grads(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float,
    clip_range_vf: float | None,
    vf_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PPO loss's gradients with respect to the new log-probabilities and values, in closed form.

    The loss is CleanRL's: ``L = −mean(min(A·ρ, A·clip(ρ, 1±ε))) + vf_coef · Σ_k ½·mean(max((V−R)², (V_clip−R)²))``
    with ``ρ = exp(logp − logp_old)``, ``V_clip = V_old + clip(V − V_old, ±ε_v)`` and one
    value column per critic ``k`` (the max only with ``clip_range_vf``). Its gradient is

    * ``∂L/∂logp_i = −A_i·ρ_i / B`` where the unclipped term is the minimum (else 0);
    * ``∂L/∂V_ik = vf_coef·(V_ik − R_ik) / B`` where the unclipped error is the maximum (else 0:
      the clipped prediction is then outside the clip range and has no gradient).

    Back-propagating these from ``(new_logp, new_values)`` gives exactly the gradient of
    ``L`` while sparing autograd the ~20 small ops of the loss itself, a large share of the
    cost of a 64-sample minibatch on the CPU. Runs without grad.

    Returns:
        ``(grad_logp, grad_values, policy_loss, value_loss_per_term, ratio, logratio)``.
    """
    with torch.no_grad():
        b = new_logp.shape[0]
        logratio = new_logp - old_logp
        ratio = logratio.exp()
        surr = advantages * ratio
        surr_clipped = advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
        g_logp = surr * (surr <= surr_clipped) * (-1.0 / b)
        policy_loss = -torch.minimum(surr, surr_clipped).mean()
        diff = new_values - returns
        err = diff.square()
        scale = vf_coef / b
        if clip_range_vf is not None:
            err_clipped = (old_values + (new_values - old_values).clamp(-clip_range_vf, clip_range_vf) - returns).square()
            g_v = diff * (err >= err_clipped) * scale
            err = torch.maximum(err, err_clipped)
        else:
            g_v = diff * scale
        value_loss = err.mean(0) * 0.5
    return g_logp, g_v, policy_loss, value_loss, ratio, logratio


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """``1 − Var[y − ŷ] / Var[y]`` (NaN when ``y`` is constant)."""
    var_y = float(np.var(y_true))
    return float("nan") if var_y == 0 else 1.0 - float(np.var(y_true - y_pred)) / var_y


# --------------------------------------------------------------------------- networks
class MLP(nn.Module):
    """``heads`` independent MLPs on the same input, run as one (batched) matmul per layer.

    With ``heads == 1`` it is a plain MLP ``[B, D] → [B, out_dim]`` (weights stored as
    ``nn.Linear`` does, ``[out, in]``). With ``heads > 1`` (the multi-critic's critics,
    ``out_dim == 1``) head ``k`` is its own network with no shared weights, computed with
    ``baddbmm`` over stacked ``[heads, in, out]`` weights, and ``forward`` maps
    ``[B, D] → [B, heads]``. The forward pass uses plain tensor lists, not submodules, to
    keep per-call Python overhead low.

    Args:
        in_dim: input size.
        hidden: hidden layer sizes.
        out_dim: output size (1 when ``heads > 1``).
        heads: number of independent networks.
        activation: activation name (see :class:`PPOConfig`).
        ortho_init: orthogonal init (gain √2 on hidden layers, ``out_gain`` on the output,
            zero biases); otherwise ``nn.Linear``'s default uniform init.
        out_gain: output-layer gain.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int = 1, heads: int = 1,
                 activation: str = "tanh", ortho_init: bool = True, out_gain: float = 1.0):
        super().__init__()
        if heads > 1 and out_dim != 1:
            raise ConfigError("an MLP with several heads has one output per head")
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        self.heads = int(heads)
        self.act = _ACTIVATIONS[activation][1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        n_layers = len(dims) - 1
        # head by head, layer by layer (nn.Linear-style [out, in] matrices): head 0 of a
        # multi-head MLP starts exactly as the one-head MLP with the same seed
        mats: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
        bias: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
        for _ in range(self.heads):
            for i in range(n_layers):
                fan_in, fan_out = dims[i], dims[i + 1]
                m, b = torch.empty(fan_out, fan_in), torch.zeros(fan_out)
                if ortho_init:
                    nn.init.orthogonal_(m, out_gain if i == n_layers - 1 else math.sqrt(2.0))
                else:
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(m, -bound, bound)
                    nn.init.uniform_(b, -bound, bound)
                mats[i].append(m)
                bias[i].append(b)
        for i in range(n_layers):
            if self.heads == 1:
                w, b = mats[i][0], bias[i][0]
            else:
                w = torch.stack([m.T for m in mats[i]]).contiguous()
                b = torch.stack(bias[i]).unsqueeze(1)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.relink()

    def relink(self) -> None:
        """Refresh the cached parameter list (after the parameters were replaced or moved)."""
        self._layers = list(zip(self.weights, self.biases))

    def _apply(self, fn: Any, recurse: bool = True) -> "MLP":  # .to(device) replaces parameters
        out = super()._apply(fn, recurse)
        self.relink()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D] → [B, out_dim]`` (one head) or ``[B, heads]``."""
        act, last = self.act, len(self._layers) - 1
        if self.heads == 1:
            for i, (w, b) in enumerate(self._layers):
                x = nn.functional.linear(x, w, b)
                if i < last:
                    x = act(x)
            return x
        h = x.unsqueeze(0).expand(self.heads, -1, -1)
        for i, (w, b) in enumerate(self._layers):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = act(h)
        return h.squeeze(-1).transpose(0, 1)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs; a diagonal Gaussian (state-independent log-std) or a categorical policy.

    The critic has one independent network per reward term (:class:`MLP` with ``heads``).

    Args:
        obs_dim: flattened observation size.
        action_dim: action size (Box) or number of actions (Discrete).
        continuous: Box actions (Gaussian) rather than Discrete (categorical).
        n_critics: number of critics (reward terms); 1 for plain PPO.
        config: the network part of a :class:`PPOConfig`.
    """

    def __init__(self, obs_dim: int, action_dim: int, continuous: bool, n_critics: int, config: PPOConfig):
        super().__init__()
        arch = config.net_arch
        assert isinstance(arch, dict)
        self.continuous = bool(continuous)
        self.action_dim = int(action_dim)
        self.actor = MLP(obs_dim, arch["pi"], action_dim, 1, config.activation, config.ortho_init, 0.01)
        self.critic = MLP(obs_dim, arch["vf"], 1, n_critics, config.activation, config.ortho_init, 1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(config.log_std_init)))
        self.refresh()

    def refresh(self) -> None:
        """Cache what does not depend on the observation (std, the Gaussian's normaliser); call after each update."""
        if self.continuous:
            with torch.no_grad():
                self.std = self.log_std.exp()
                self.logp_const = self.log_std.sum() + self.action_dim * _LOG_SQRT_2PI

    def gaussian_log_prob(self, noise: torch.Tensor) -> torch.Tensor:
        """Log-density of ``mean + std * noise`` for standard-normal ``noise [..., A]`` (no grad; after :meth:`refresh`)."""
        return noise.square().sum(-1).mul_(-0.5).sub_(self.logp_const)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor, need_entropy: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[B]``, entropy (``[B]``, or a scalar for the Gaussian) and values ``[B, K]`` of stored actions."""
        out = self.actor(obs)
        values = self.critic(obs)
        if self.continuous:
            log_std = self.log_std
            z = (actions - out) * torch.exp(-log_std)
            logp = z.square().sum(-1).mul(-0.5) - (log_std.sum() + self.action_dim * _LOG_SQRT_2PI)
            entropy = (log_std + (0.5 + _LOG_SQRT_2PI)).sum()
        else:
            logp_all = torch.log_softmax(out, -1)
            logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1) if need_entropy else logp_all.new_zeros(())
        return logp, entropy, values

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample one action per row (no grad; after :meth:`refresh`)."""
        out = self.actor(obs)
        if self.continuous:
            noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
            return torch.addcmul(out, self.std, noise)
        return torch.multinomial(torch.softmax(out, -1), 1, generator=generator).squeeze(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action (Box) or the most likely one (Discrete)."""
        out = self.actor(obs)
        return out if self.continuous else out.argmax(-1)


# --------------------------------------------------------------------------- agent
def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from exc


def _space_to_dict(space: Any) -> dict[str, Any]:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": torch.from_numpy(np.asarray(space.low, dtype=np.float64)),
                "high": torch.from_numpy(np.asarray(space.high, dtype=np.float64)),
                "dtype": str(np.dtype(space.dtype))}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ConfigError(f"cannot store a {type(space).__name__} space")


def _space_from_dict(d: Mapping[str, Any]) -> Any:
    from gymnasium import spaces

    if d["type"] == "Box":
        dtype = np.dtype(d["dtype"])
        return spaces.Box(np.asarray(d["low"]).astype(dtype), np.asarray(d["high"]).astype(dtype), dtype=dtype)
    return spaces.Discrete(int(d["n"]), start=int(d["start"]))


def _restore_generator(gen: torch.Generator, rng_state: torch.Tensor, saved_device: str | None, reseed: int) -> None:
    """Restore ``gen`` from a checkpoint, or reseed it with ``reseed`` when the checkpoint's generator was on
    another device type (a CUDA run loaded on the CPU, say: their states are not interchangeable, and the
    sampling stream only matters for continuing training exactly on the same kind of device)."""
    if saved_device is not None and saved_device != gen.device.type:
        gen.manual_seed(reseed)
        return
    try:
        gen.set_state(rng_state)
    except RuntimeError:  # an older checkpoint without the device tag, from another device type
        gen.manual_seed(reseed)


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


class PPO:
    """Proximal Policy Optimisation on a Gymnasium vector env, single- or multi-critic.

    Args:
        env: a ``gymnasium.vector.VectorEnv`` (``gym.make_vec``, ``SyncVectorEnv``,
            optionally wrapped in :class:`~robo_reward.VectorRewardWrapper`) with a Box
            observation space and Box or Discrete actions; ``None`` for a policy that only
            predicts (then give ``observation_space`` and ``action_space``).
        config: a :class:`PPOConfig` or a mapping of its fields.
        seed: seeds network initialisation, action sampling, minibatch order and the env's
            first reset; ``None`` draws one (recorded in :attr:`seed`).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``.
        metrics_hook: called after every update with a metrics dict (see :meth:`learn`).
        observation_space, action_space: single-env spaces when ``env`` is ``None``.
        **overrides: config fields, applied over ``config``.

    Attributes:
        num_timesteps: env steps taken so far (``num_envs`` per vector step).
        n_updates: updates done so far.
        term_names: the reward terms with a critic (``["reward"]`` for single-critic PPO).
        term_weights: their weights in the actor loss.
        device: the torch device.
    """

    def __init__(
        self,
        env: Any,
        config: PPOConfig | Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        device: str | torch.device = "auto",
        metrics_hook: Callable[[dict[str, Any]], Any] | None = None,
        observation_space: Any = None,
        action_space: Any = None,
        _term_names: Sequence[str] | None = None,
        **overrides: Any,
    ):
        from gymnasium import spaces

        if isinstance(config, PPOConfig):
            cfg = PPOConfig.from_dict(config.to_dict(), **overrides)
        elif config is None or isinstance(config, Mapping):
            cfg = PPOConfig.from_dict(config or {}, **overrides)
        else:
            raise ConfigError(f"config must be a PPOConfig or a mapping, got {type(config).__name__}")
        self.config = cfg
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.device = _resolve_device(device)
        self.metrics_hook = metrics_hook

        if env is not None:
            if not isinstance(env, __import__("gymnasium").vector.VectorEnv):
                raise ConfigError(
                    f"PPO needs a Gymnasium vector env, got {type(env).__name__}; make one with "
                    "gym.make_vec(env_id, num_envs=n) or gymnasium.vector.SyncVectorEnv([...])"
                )
            observation_space = env.single_observation_space
            action_space = env.single_action_space
        elif observation_space is None or action_space is None:
            raise ConfigError("PPO(env=None) needs observation_space and action_space")
        if not isinstance(observation_space, spaces.Box):
            raise ConfigError(
                f"PPO supports Box observations, got {type(observation_space).__name__}; flatten it first "
                "(gymnasium.wrappers.vector.FlattenObservation)"
            )
        if isinstance(action_space, spaces.Box):
            if len(action_space.shape) != 1:
                raise ConfigError(f"PPO supports 1-D Box actions, got shape {action_space.shape}")
            self.continuous = True
            self.action_dim = int(action_space.shape[0])
            self._low = np.asarray(action_space.low, dtype=np.float32)
            self._high = np.asarray(action_space.high, dtype=np.float32)
        elif isinstance(action_space, spaces.Discrete):
            self.continuous = False
            self.action_dim = int(action_space.n)
            self._action_start = int(action_space.start)
        else:
            raise ConfigError(f"PPO supports Box and Discrete actions, got {type(action_space).__name__}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_shape = tuple(observation_space.shape)
        self.obs_dim = int(np.prod(self.obs_shape)) if self.obs_shape else 1

        self.env: Any = None
        self.num_envs = 0
        if _term_names is not None:
            self.term_names = list(_term_names)
        elif not cfg.multi_critic:
            self.term_names = ["reward"]
        elif cfg.critic_terms is not None:
            self.term_names = list(cfg.critic_terms)
        elif env is not None:
            self.term_names = self._probe_terms(env)
        else:
            raise ConfigError("multi-critic PPO without an env needs critic_terms")
        self.n_terms = len(self.term_names)
        self.term_weights = self._resolve_weights()

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.policy = ActorCritic(self.obs_dim, self.action_dim, self.continuous, self.n_terms, cfg).to(self.device)
        self._flatten_parameters()
        self.optimizer = torch.optim.Adam([self._flat], lr=cfg.learning_rate, eps=cfg.adam_eps, **self._adam_kwargs())
        self._weights_t = torch.tensor(self.term_weights, dtype=torch.float32, device=self.device)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(self.seed + 1)
        self._perm_gen = torch.Generator()
        self._perm_gen.manual_seed(self.seed + 2)

        self.obs_rms = RunningMeanStd((self.obs_dim,))
        self.ret_rms = RunningMeanStd((self.n_terms,))
        self._obs_inv_std = np.ones(self.obs_dim)
        self._tmp_obs = np.zeros((0, self.obs_dim))
        self._ret_inv_std = np.ones(self.n_terms)
        self.num_timesteps = 0
        self.n_updates = 0
        self._last_obs_norm: np.ndarray | None = None
        self._ep_returns: collections.deque[float] = collections.deque(maxlen=cfg.stats_window)
        self._ep_env_returns: collections.deque[float] = collections.deque(maxlen=cfg.stats_window)
        self._ep_lengths: collections.deque[int] = collections.deque(maxlen=cfg.stats_window)
        self._ep_successes: collections.deque[float] = collections.deque(maxlen=cfg.stats_window)
        self.episodes = 0
        if env is not None:
            self.set_env(env)

    # ------------------------------------------------------------------ setup helpers
    def _adam_kwargs(self) -> dict[str, Any]:
        return {"fused": True} if self.device.type in ("cpu", "cuda") else {}

    def _resolve_weights(self) -> list[float]:
        tw = self.config.term_weights
        if tw is None:
            return [1.0] * self.n_terms
        if isinstance(tw, list):
            if len(tw) != self.n_terms:
                raise ConfigError(f"term_weights has {len(tw)} weights for {self.n_terms} terms {self.term_names}")
            return [float(w) for w in tw]
        unknown = sorted(set(tw) - set(self.term_names))
        if unknown:
            raise ConfigError(f"term_weights names {unknown}, which have no critic; the terms are {self.term_names}")
        return [float(tw.get(name, 1.0)) for name in self.term_names]

    def _probe_terms(self, env: Any) -> list[str]:
        """Step the env once to read the names in ``infos["reward_terms"]`` (learn() resets it again)."""
        env.reset(seed=self.seed)
        actions = np.stack([env.single_action_space.sample() for _ in range(env.num_envs)])
        _, _, _, _, infos = env.step(actions)
        terms = infos.get("reward_terms")
        if terms is None:
            raise ConfigError(
                "multi-critic PPO learns one critic per reward term, but the env's step info has no 'reward_terms': "
                "wrap it with robo_reward.VectorRewardWrapper"
            )
        if not terms:
            raise ConfigError(
                "multi-critic PPO learns one critic per reward term, but the reward plugin reports no terms; "
                "use a reward with named terms (e.g. 'sum' of several rewards) or set critic_terms"
            )
        return list(terms)

    def set_env(self, env: Any) -> None:
        """Train on ``env`` from now on (same spaces); the next :meth:`learn` resets it."""
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode

        if not isinstance(env, gym.vector.VectorEnv):
            raise ConfigError(f"PPO needs a Gymnasium vector env, got {type(env).__name__}")
        if env.single_observation_space.shape != self.observation_space.shape:
            raise ConfigError(
                f"env observations have shape {env.single_observation_space.shape}, the agent expects {self.obs_shape}"
            )
        if type(env.single_action_space) is not type(self.action_space) or (
            getattr(env.single_action_space, "shape", None) != getattr(self.action_space, "shape", None)
        ) or (not self.continuous and int(env.single_action_space.n) != self.action_dim):
            raise ConfigError(f"env action space {env.single_action_space} does not match the agent's {self.action_space}")
        raw = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        mode = raw if isinstance(raw, AutoresetMode) else AutoresetMode(raw)
        if mode == AutoresetMode.DISABLED:
            raise ConfigError("PPO needs an env that resets itself: autoreset_mode NEXT_STEP (the default) or SAME_STEP")
        self._same_step = mode == AutoresetMode.SAME_STEP
        self.env = env
        self.num_envs = int(env.num_envs)
        self._allocate()
        self._last_obs_norm = None

    def _allocate(self) -> None:
        T, N, K, D = self.config.n_steps, self.num_envs, self.n_terms, self.obs_dim
        f32 = torch.float32
        # rollout storage on the CPU (written through numpy views), moved to the device once per update
        self._obs = torch.zeros(T + 1, N, D, dtype=f32)  # row T: the observation after the rollout
        if self.continuous:
            self._actions = torch.zeros(T, N, self.action_dim, dtype=f32)
        else:
            self._actions = torch.zeros(T, N, dtype=torch.int64)
        self._logp = torch.zeros(T, N, dtype=f32)
        self._values = torch.zeros(T + 1, N, K, dtype=f32)  # row T: value of the observation after the rollout
        self._final_values = np.zeros((T, N, K), dtype=np.float32)
        self._rewards = np.zeros((T, N, K), dtype=np.float32)
        self._terminated = np.zeros((T, N), dtype=bool)
        self._dones = np.zeros((T, N), dtype=bool)
        self._valid = np.ones((T, N), dtype=bool)
        self._final_mask = np.zeros((T, N), dtype=bool)
        self._obs_np = self._obs.numpy()
        self._act_np = self._actions.numpy()
        self._obs_views = list(self._obs)  # per-step tensor views, made once
        self._ret_acc = np.zeros((N, K), dtype=np.float64)  # discounted return, for reward normalisation
        self._prev_done = np.zeros(N, dtype=bool)
        self._run_ret = np.zeros(N, dtype=np.float64)
        self._run_env = np.zeros(N, dtype=np.float64)
        self._run_len = np.zeros(N, dtype=np.int64)
        self._run_succ = np.zeros(N, dtype=bool)
        self._tmp_obs = np.zeros((N, D), dtype=np.float64)
        self._tmp_rew = np.zeros((N, K), dtype=np.float64)

    # ------------------------------------------------------------------ normalisation
    def _normalize_obs(self, obs: Any, out: np.ndarray, update: bool) -> None:
        x = np.asarray(obs).reshape(out.shape[0], self.obs_dim)
        if not self.config.norm_obs:
            out[...] = x
            return
        if update:
            self.obs_rms.update(x)
            self._obs_inv_std = 1.0 / np.sqrt(self.obs_rms.var + self.config.norm_eps)
        tmp = self._tmp_obs if x.shape == self._tmp_obs.shape else np.empty(x.shape)
        np.subtract(x, self.obs_rms.mean, out=tmp)
        tmp *= self._obs_inv_std
        c = self.config.clip_obs
        np.minimum(tmp, c, out=tmp)
        np.maximum(tmp, -c, out=out)

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Observations ``[n, *obs_shape]`` as the networks see them (no statistics update)."""
        obs = np.asarray(obs)
        out = np.empty((obs.shape[0], self.obs_dim), dtype=np.float32)
        self._normalize_obs(obs, out, update=False)
        return out

    # ------------------------------------------------------------------ rollout
    def _reset_env(self) -> None:
        seed = self.seed if self.num_timesteps == 0 else self.seed + self.num_timesteps
        obs, _ = self.env.reset(seed=seed)
        self._normalize_obs(obs, self._obs_np[0], update=True)
        self._last_obs_norm = self._obs_np[0].copy()
        self._ret_acc[:] = 0.0
        self._prev_done[:] = False
        self._run_ret[:] = 0.0
        self._run_env[:] = 0.0
        self._run_len[:] = 0
        self._run_succ[:] = False

    def _term_rewards(self, reward: np.ndarray, infos: Mapping[str, Any], valid: np.ndarray | None) -> np.ndarray:
        terms = infos.get("reward_terms")
        cols = []
        for name in self.term_names:
            if name == "reward":
                cols.append(reward)
            elif name == "env_reward":
                if "env_reward" not in infos:
                    raise ConfigError("critic term 'env_reward' needs infos['env_reward']: wrap the env with VectorRewardWrapper")
                cols.append(infos["env_reward"])
            elif terms is not None and name in terms:
                cols.append(terms[name])
            elif valid is not None and not valid.any():
                cols.append(np.zeros(self.num_envs, dtype=np.float32))  # every sub-env is resetting this step
            else:
                have = sorted(terms) if terms else []
                raise ConfigError(
                    f"critic term {name!r} is not in the step info's reward_terms (it has {have}); "
                    f"also possible: {', '.join(SPECIAL_TERMS)}"
                )
        return np.stack(cols, axis=1)

    def _collect_rollout(self) -> list[dict[str, Any]]:
        """Fill the rollout storage with ``n_steps`` vector steps; return the episodes that ended."""
        cfg = self.config
        T, N = cfg.n_steps, self.num_envs
        env, policy, dev = self.env, self.policy, self.device
        cpu = dev.type == "cpu"
        actor = policy.actor
        obs_np, act_np, obs_views = self._obs_np, self._act_np, self._obs_views
        rew, term_buf, done_buf, valid_buf = self._rewards, self._terminated, self._dones, self._valid
        multi = self.term_names != ["reward"]
        norm_r, ret_rms, eps = cfg.norm_reward, self.ret_rms, cfg.norm_eps
        gamma, clip_r = cfg.gamma, cfg.clip_reward
        same_step, continuous = self._same_step, self.continuous
        low, high = (self._low, self._high) if continuous else (None, None)
        ret_acc, prev_done, tmp_rew = self._ret_acc, self._prev_done, self._tmp_rew
        run_ret, run_env, run_len, run_succ = self._run_ret, self._run_env, self._run_len, self._run_succ
        self._final_mask[:] = False
        final_rows: list[tuple[int, np.ndarray, np.ndarray]] = []
        finished: list[dict[str, Any]] = []
        obs_np[0] = self._last_obs_norm
        all_valid = np.ones(N, dtype=bool)
        policy.refresh()
        with torch.no_grad():
            # exploration noise for the whole rollout in one draw
            if continuous:
                noise = torch.randn((T, N, self.action_dim), generator=self._gen, device=dev)
                std = policy.std
            else:  # Gumbel-max sampling: argmax(logits + G), G = -log(Exp(1))
                noise = torch.empty((T, N, self.action_dim), device=dev).exponential_(generator=self._gen).log_().neg_()
            # the sampling arithmetic runs in numpy on (views of) the actor's output: cheaper per step
            # than torch ops, and no per-step tensor views of the noise
            noise_np = noise.cpu().numpy()
            std_np = std.cpu().numpy().astype(np.float32) if continuous else None
            for t in range(T):
                if cpu:
                    mean = actor(obs_views[t]).numpy()
                else:
                    mean = actor(torch.from_numpy(obs_np[t]).to(dev, non_blocking=True)).cpu().numpy()
                a = act_np[t]
                if continuous:
                    np.multiply(std_np, noise_np[t], out=a)
                    a += mean
                else:
                    np.argmax(mean + noise_np[t], axis=-1, out=a)
                if continuous:
                    a = np.minimum(a, high)
                    np.maximum(a, low, out=a)
                elif self._action_start:
                    a = a + self._action_start
                next_obs, reward, terminated, truncated, infos = env.step(a)

                valid = all_valid if same_step else ~prev_done
                reward = np.asarray(reward)
                terminated = np.asarray(terminated, dtype=bool)
                done = terminated | np.asarray(truncated, dtype=bool)
                r = self._term_rewards(reward, infos, valid) if multi else reward.reshape(N, 1)
                if norm_r:
                    ret_acc *= gamma
                    ret_acc += r
                    ret_rms.update(ret_acc if same_step or valid.all() else ret_acc[valid])
                    np.multiply(r, 1.0 / np.sqrt(ret_rms.var + eps), out=tmp_rew)
                    np.minimum(tmp_rew, clip_r, out=tmp_rew)
                    np.maximum(tmp_rew, -clip_r, out=rew[t])
                else:
                    rew[t] = r
                term_buf[t] = terminated
                done_buf[t] = done
                valid_buf[t] = valid
                self._normalize_obs(next_obs, obs_np[t + 1], update=True)

                # episode bookkeeping: learned reward, env reward, success
                run_ret += reward
                env_r = infos.get("env_reward")
                if env_r is not None:
                    run_env += env_r
                run_len += valid
                succ = infos.get("is_success")
                if succ is not None:
                    run_succ |= np.asarray(succ, dtype=bool) & np.asarray(infos.get("_is_success", True), dtype=bool)
                if done.any():
                    idx = np.flatnonzero(done)
                    if norm_r:
                        ret_acc[idx] = 0.0
                    if same_step:
                        fin = infos.get("final_info")
                        if fin and "is_success" in fin:
                            run_succ[idx] |= (np.asarray(fin["is_success"], dtype=bool)
                                              & np.asarray(fin.get("_is_success", True), dtype=bool))[idx]
                        trunc_rows = idx[~terminated[idx]]
                        if trunc_rows.size:  # time limit: bootstrap from the real last observation
                            final = infos["final_obs"]
                            x = np.stack([np.asarray(final[i]) for i in trunc_rows])
                            final_rows.append((t, trunc_rows, self.normalize_obs(x)))
                    for i in idx:
                        finished.append({
                            "return": float(run_ret[i]),
                            "env_return": float(run_env[i]) if env_r is not None else None,
                            "length": int(run_len[i]),
                            "success": bool(run_succ[i]),
                        })
                    run_ret[idx] = 0.0
                    run_env[idx] = 0.0
                    run_len[idx] = 0
                    run_succ[idx] = False
                if not same_step:
                    prev_done[:] = done

            # values and log-probabilities for the whole rollout, in one batched pass each
            obs_all = self._obs.to(dev)
            values = policy.critic(obs_all.reshape((T + 1) * N, self.obs_dim)).reshape(T + 1, N, self.n_terms)
            self._values.copy_(values)
            if continuous:
                self._logp.copy_(policy.gaussian_log_prob(noise))
            else:
                logits = actor(obs_all[:T].reshape(T * N, self.obs_dim))
                acts = self._actions.to(dev).reshape(T * N, 1)
                self._logp.copy_(torch.log_softmax(logits, -1).gather(-1, acts).reshape(T, N))
            if final_rows:
                xs = torch.from_numpy(np.concatenate([x for _, _, x in final_rows])).to(dev)
                fv = policy.critic(xs).cpu().numpy()
                k = 0
                for t, rows, _ in final_rows:
                    self._final_values[t, rows] = fv[k:k + rows.size]
                    self._final_mask[t, rows] = True
                    k += rows.size
        self._last_obs_norm = obs_np[T].copy()
        self.num_timesteps += T * N
        return finished

    # ------------------------------------------------------------------ update
    def _advantages(self) -> tuple[np.ndarray, np.ndarray]:
        values = self._values.numpy()
        next_values = values[1:].copy()
        if self._final_mask.any():
            next_values[self._final_mask] = self._final_values[self._final_mask]
        return compute_gae(self._rewards, values[:-1], next_values, self._terminated, self._dones,
                           self.config.gamma, self.config.gae_lambda)

    def _flatten_parameters(self) -> None:
        """Make every parameter (and its gradient) a view into one flat buffer.

        The optimizer then steps a single tensor and gradient clipping is one norm: far
        fewer small ops per minibatch than per-parameter Adam and ``clip_grad_norm_``.
        """
        params = list(self.policy.parameters())
        total = sum(p.numel() for p in params)
        flat = torch.empty(total, device=self.device)
        grad = torch.zeros(total, device=self.device)
        o = 0
        with torch.no_grad():
            for p in params:
                k = p.numel()
                flat[o:o + k].copy_(p.reshape(-1))
                p.data = flat[o:o + k].view_as(p)
                p.grad = grad[o:o + k].view_as(p)
                o += k
        self._flat = nn.Parameter(flat)
        self._flat.grad = grad
        self._flat_grad = grad

    def _update(self, lr: float) -> dict[str, Any]:
        """Compute advantages and run the epochs of minibatch updates; return loss statistics."""
        cfg = self.config
        T, N, K = cfg.n_steps, self.num_envs, self.n_terms
        adv_np, ret_np = self._advantages()
        dev = self.device
        obs = self._obs[:T].reshape(T * N, self.obs_dim)
        acts = self._actions.reshape(T * N, -1) if self.continuous else self._actions.reshape(T * N)
        logp = self._logp.reshape(T * N)
        vals = self._values[:T].reshape(T * N, K)
        adv = torch.from_numpy(adv_np).reshape(T * N, K)
        ret = torch.from_numpy(ret_np).reshape(T * N, K)
        valid = self._valid.reshape(-1)
        if not valid.all():  # NEXT_STEP reset steps carry no transition
            idx = torch.from_numpy(np.flatnonzero(valid))
            obs, acts, logp, vals, adv, ret = (x[idx] for x in (obs, acts, logp, vals, adv, ret))
        data = [x.to(dev) for x in (obs, acts, logp, vals, adv, ret)]
        B = data[0].shape[0]
        n_mb = max(1, math.ceil(B / cfg.batch_size))
        equal = B % n_mb == 0
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        policy, opt, grad = self.policy, self.optimizer, self._flat_grad
        clip, clip_vf = cfg.clip_range, cfg.clip_range_vf
        ent_coef, vf_coef, max_norm = cfg.ent_coef, cfg.vf_coef, cfg.max_grad_norm
        weights, norm_adv = self._weights_t, cfg.normalize_advantage
        need_ent = ent_coef > 0
        neg_ent_coef = torch.tensor(-ent_coef, device=dev)
        pg_losses: list[torch.Tensor] = []
        v_losses: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        kl_epochs: list[torch.Tensor] = []
        clipfracs: list[torch.Tensor] = []
        epochs_run = 0
        for _ in range(cfg.n_epochs):
            perm = torch.randperm(B, generator=self._perm_gen).to(dev)
            e_obs, e_act, e_logp, e_val, e_adv, e_ret = (x[perm] for x in data)
            if equal:  # every minibatch's advantages normalised and combined in one pass
                e_a = combine_advantages(e_adv.view(n_mb, B // n_mb, K), weights, norm_adv).reshape(B)
            start = 0
            for j in range(n_mb):
                stop = start + B // n_mb + (1 if j < B % n_mb else 0)
                sl = slice(start, stop)
                start = stop
                new_logp, entropy, new_v = policy.evaluate(e_obs[sl], e_act[sl], need_ent)
                a = e_a[sl] if equal else combine_advantages(e_adv[sl], weights, norm_adv)
                g_logp, g_v, pg_loss, v_loss_terms, ratio, logratio = ppo_loss_grads(
                    new_logp, e_logp[sl], a, new_v, e_val[sl], e_ret[sl], clip, clip_vf, vf_coef)
                grad.zero_()
                if need_ent:
                    ent = entropy.mean()
                    torch.autograd.backward((new_logp, new_v, ent), (g_logp, g_v, neg_ent_coef))
                    entropies.append(ent.detach())
                else:
                    torch.autograd.backward((new_logp, new_v), (g_logp, g_v))
                if max_norm is not None:
                    norm = torch.linalg.vector_norm(grad)
                    grad.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
                opt.step()
                pg_losses.append(pg_loss)
                v_losses.append(v_loss_terms)
                if j == n_mb - 1:
                    with torch.no_grad():
                        kl_epochs.append(((ratio - 1.0) - logratio).mean())
                        clipfracs.append(((ratio - 1.0).abs() > clip).float().mean())
            epochs_run += 1
            if cfg.target_kl is not None and float(kl_epochs[-1]) > cfg.target_kl:
                break
        policy.refresh()
        self.n_updates += 1
        v_terms = torch.stack(v_losses).mean(0).cpu().numpy()
        if need_ent:
            entropy_mean = float(torch.stack(entropies).mean())
        else:
            with torch.no_grad():
                _, ent_all, _ = policy.evaluate(data[0][:4096], data[1][:4096], True)
            entropy_mean = float(ent_all.mean())
        vals_np = vals.numpy()
        ret_all = ret.numpy()
        ev_terms = {n: explained_variance(vals_np[:, k], ret_all[:, k]) for k, n in enumerate(self.term_names)}
        out: dict[str, Any] = {
            "policy_loss": float(torch.stack(pg_losses).mean()),
            "value_loss": float(v_terms.mean()),
            "entropy": entropy_mean,
            "approx_kl": float(kl_epochs[-1]),
            "clip_frac": float(torch.stack(clipfracs).mean()),
            "explained_variance": float(np.mean(list(ev_terms.values()))),
            "epochs_run": epochs_run,
            "learning_rate": lr,
            "batch_transitions": int(B),
        }
        if self.continuous:
            out["action_std"] = float(policy.std.mean())
        if self.term_names != ["reward"]:
            out["value_loss_terms"] = {n: float(v_terms[k]) for k, n in enumerate(self.term_names)}
            out["explained_variance_terms"] = ev_terms
        return out

    # ------------------------------------------------------------------ public API
    def learn(
        self,
        total_timesteps: int,
        progress_bar: bool = True,
        *,
        reset_num_timesteps: bool = True,
        metrics_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> "PPO":
        """Train for ``total_timesteps`` env steps (rounded up to whole rollouts).

        The learning rate anneals linearly from ``learning_rate`` at step 0 to 0 at the
        target ``num_timesteps + total_timesteps`` (``reset_num_timesteps=False``
        continues the step counter, so a resumed run learning the remaining steps keeps
        the original schedule).

        After every update the metrics hook (``metrics_hook`` here, else the one given to
        the constructor) receives a dict with ``timesteps``, ``updates``, ``fps`` (env
        steps per second of this call), ``time_s``, ``learning_rate``, the episodes that
        ended in this rollout (``episodes``: ``{"return", "env_return", "length",
        "success"}``, where ``return`` is of the reward the agent learns from and
        ``env_return`` of ``infos["env_reward"]``, ``None`` when absent), means over the
        last ``stats_window`` episodes (``learned_return``, ``env_return``,
        ``success_rate``, ``ep_length``), ``episodes_total``, and the losses
        (``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clip_frac``,
        ``explained_variance``; per term in multi-critic mode). Returning ``False`` from
        the hook stops training after that update.
        """
        if self.env is None:
            raise ConfigError("this PPO has no env: pass one to PPO(...) / PPO.load(..., env=...) or call set_env()")
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 0:
            raise ConfigError(f"total_timesteps must be an integer >= 0, got {total_timesteps!r}")
        hook = metrics_hook or self.metrics_hook
        if reset_num_timesteps:
            self.num_timesteps = 0
            self.n_updates = 0
        start = self.num_timesteps
        target = start + int(total_timesteps)
        if self._last_obs_norm is None:
            self._reset_env()
        threads = torch.get_num_threads()
        if self.config.torch_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(self.config.torch_threads)
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(total_timesteps), unit="step", desc="ppo", dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            while self.num_timesteps < target:
                frac = 1.0 - self.num_timesteps / target if self.config.anneal_lr else 1.0
                lr = frac * self.config.learning_rate
                before = self.num_timesteps
                finished = self._collect_rollout()
                for ep in finished:
                    self._ep_returns.append(ep["return"])
                    if ep["env_return"] is not None:
                        self._ep_env_returns.append(ep["env_return"])
                    self._ep_lengths.append(ep["length"])
                    self._ep_successes.append(float(ep["success"]))
                self.episodes += len(finished)
                stats = self._update(lr)
                elapsed = time.perf_counter() - t0
                metrics = {
                    "timesteps": self.num_timesteps,
                    "updates": self.n_updates,
                    "fps": (self.num_timesteps - start) / elapsed if elapsed > 0 else None,
                    "time_s": elapsed,
                    "episodes": finished,
                    "episodes_total": self.episodes,
                    "learned_return": _mean(self._ep_returns),
                    "env_return": _mean(self._ep_env_returns),
                    "success_rate": _mean(self._ep_successes),
                    "ep_length": _mean(self._ep_lengths),
                    **stats,
                }
                if bar is not None:
                    bar.update(min(self.num_timesteps, target) - min(before, target))
                    post = {"fps": f"{metrics['fps']:.0f}"}
                    if metrics["learned_return"] is not None:
                        post["return"] = f"{metrics['learned_return']:.3g}"
                    if metrics["env_return"] is not None:
                        post["env_return"] = f"{metrics['env_return']:.3g}"
                    bar.set_postfix(post, refresh=False)
                if hook is not None and hook(metrics) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return self

    def predict(self, obs: Any, deterministic: bool = True, state: Any = None, episode_start: Any = None
                ) -> tuple[np.ndarray, None]:
        """Actions for one observation (``obs_shape``) or a batch (``[n, *obs_shape]``).

        Observations are normalised with the saved statistics (not updated). Returns
        ``(action, None)`` like Stable-Baselines3, so evaluation code written for SB3
        models works unchanged; Box actions are clipped to the action space.
        Stochastic actions use torch's global RNG (the training streams are untouched).
        """
        x = np.asarray(obs, dtype=np.float64)
        single = x.shape == self.obs_shape
        if single:
            x = x[None]
        elif x.shape[1:] != self.obs_shape:
            raise ConfigError(f"observation of shape {x.shape}, expected {self.obs_shape} or [n, *{self.obs_shape}]")
        xt = torch.from_numpy(self.normalize_obs(x)).to(self.device)
        with torch.no_grad():
            if deterministic:
                a = self.policy.deterministic(xt)
            else:
                a = self.policy.sample(xt)  # torch's global RNG: the training streams stay untouched
        act = a.cpu().numpy()
        if self.continuous:
            act = np.clip(act, self._low, self._high).astype(self.action_space.dtype, copy=False)
        else:
            act = act + self._action_start
        return (act[0] if single else act), None

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (see :meth:`save`)."""
        env_state = None
        if self._last_obs_norm is not None:
            env_state = {
                "last_obs_norm": torch.from_numpy(self._last_obs_norm.copy()),
                "prev_done": torch.from_numpy(self._prev_done.copy()),
                "ret_acc": torch.from_numpy(self._ret_acc.copy()),
                "run_ret": torch.from_numpy(self._run_ret.copy()),
                "run_env": torch.from_numpy(self._run_env.copy()),
                "run_len": torch.from_numpy(self._run_len.copy()),
                "run_succ": torch.from_numpy(self._run_succ.copy()),
            }
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "observation_space": _space_to_dict(self.observation_space),
            "action_space": _space_to_dict(self.action_space),
            "term_names": list(self.term_names),
            "term_weights": list(self.term_weights),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "ret_rms": self.ret_rms.state_dict(),
            "rng": {"sample": self._gen.get_state(), "perm": self._perm_gen.get_state(),
                    "sample_device": self._gen.device.type},
            "num_timesteps": int(self.num_timesteps),
            "n_updates": int(self.n_updates),
            "episodes": int(self.episodes),
            "episode_stats": {
                "returns": list(self._ep_returns), "env_returns": list(self._ep_env_returns),
                "lengths": list(self._ep_lengths), "successes": list(self._ep_successes),
            },
            "env_state": env_state,
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint to ``path`` (a torch file; written atomically).

        It holds the config, seed, spaces, network parameters, optimizer state,
        observation and reward normaliser statistics, the sampling and minibatch RNG
        states, the step and update counters, recent episode statistics, and the
        rollout's carry-over (last normalised observation, partial episode sums), so
        that :meth:`load` with ``reset_env=False`` continues exactly where this left off.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    def load_state_dict(self, state: Mapping[str, Any], reset_env: bool = True) -> None:
        """Restore a :meth:`state_dict` into this agent (same spaces and terms)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"not a robo_reward PPO checkpoint (format {state.get('format')!r})")
        if list(state["term_names"]) != self.term_names:
            raise ConfigError(f"checkpoint critics are for terms {state['term_names']}, this agent's are {self.term_names}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        self._obs_inv_std = 1.0 / np.sqrt(self.obs_rms.var + self.config.norm_eps)
        self._ret_inv_std = 1.0 / np.sqrt(self.ret_rms.var + self.config.norm_eps)
        self.num_timesteps = int(state["num_timesteps"])
        _restore_generator(self._gen, state["rng"]["sample"], state["rng"].get("sample_device"),
                           self.seed + 1 + self.num_timesteps)
        self._perm_gen.set_state(state["rng"]["perm"])
        self.n_updates = int(state["n_updates"])
        self.episodes = int(state.get("episodes", 0))
        es = state.get("episode_stats") or {}
        for dq, key in ((self._ep_returns, "returns"), (self._ep_env_returns, "env_returns"),
                        (self._ep_lengths, "lengths"), (self._ep_successes, "successes")):
            dq.clear()
            dq.extend(es.get(key, []))
        self.policy.refresh()
        self._last_obs_norm = None
        env_state = state.get("env_state")
        if not reset_env and env_state is not None and self.env is not None:
            if tuple(env_state["last_obs_norm"].shape) != (self.num_envs, self.obs_dim):
                raise ConfigError(
                    f"the checkpoint was taken with {env_state['last_obs_norm'].shape[0]} sub-envs, this env has "
                    f"{self.num_envs}: load with reset_env=True"
                )
            self._last_obs_norm = env_state["last_obs_norm"].numpy().copy()
            self._prev_done[:] = env_state["prev_done"].numpy()
            self._ret_acc[:] = env_state["ret_acc"].numpy()
            self._run_ret[:] = env_state["run_ret"].numpy()
            self._run_env[:] = env_state["run_env"].numpy()
            self._run_len[:] = env_state["run_len"].numpy()
            self._run_succ[:] = env_state["run_succ"].numpy()

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: Any = None,
        *,
        device: str | torch.device = "auto",
        reset_env: bool = True,
        metrics_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> "PPO":
        """Load a checkpoint written by :meth:`save`.

        Args:
            path: the checkpoint file.
            env: the env to continue training on (``None``: predict only).
            device: where to put the networks.
            reset_env: ``True`` (default) resets ``env`` at the next :meth:`learn`, seeded
                with ``seed + num_timesteps`` so a resumed run does not replay its first
                episodes. ``False`` continues from the saved last observation and partial
                episodes: only correct when ``env`` is the very env object the checkpoint
                was taken on, still in the same state (e.g. in the same process).
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no PPO checkpoint at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"{path} is not a readable PPO checkpoint: {exc}") from exc
        if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not a robo_reward PPO checkpoint")
        agent = cls(
            env,
            state["config"],
            seed=int(state["seed"]),
            device=device,
            metrics_hook=metrics_hook,
            observation_space=_space_from_dict(state["observation_space"]),
            action_space=_space_from_dict(state["action_space"]),
            _term_names=state["term_names"],
        )
        agent.load_state_dict(state, reset_env=reset_env)
        return agent


# --------------------------------------------------------------------------- presets
def load_preset(family: str | None = None, overrides: Mapping[str, Any] | None = None,
                agent: str = "ppo") -> dict[str, Any]:
    """Hyperparameters from ``agents/ppo-native.yaml``: ``default`` ← ``<family>`` ← ``overrides``.

    ``agent="ppo-multicritic"`` also merges the file's ``multicritic`` block (which
    switches ``multi_critic`` on). ``net_arch`` is replaced, not merged. The result is
    validated (:class:`ConfigError` on a bad key or value) and returned as a plain dict.
    """
    from .presets import layered_preset

    if agent not in AGENT_NAMES:
        raise ConfigError(f"unknown built-in agent {agent!r}; valid: {', '.join(AGENT_NAMES)}")
    extra = {"multicritic": {"multi_critic": True}} if agent == "ppo-multicritic" else None
    params = layered_preset("ppo-native.yaml", family, overrides, extra, what="PPO")
    PPOConfig.from_dict(params, where=f"ppo-native.yaml ({agent}, family {family!r}) + overrides")
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
) -> PPO:
    """Build ``ppo``/``ppo-native`` or ``ppo-multicritic`` on ``env`` from the shipped preset (see :func:`load_preset`)."""
    params = load_preset(family, overrides, agent)
    return PPO(env, params, seed=seed, device=device, metrics_hook=metrics_hook)

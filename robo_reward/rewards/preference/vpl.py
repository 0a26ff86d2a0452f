"""VPL: variational preference learning — one latent-conditioned reward for users who disagree.

Poddar, Wan, Ivison, Gupta, Jaques, "Personalizing Reinforcement Learning from Human
Feedback with Variational Preference Learning", NeurIPS 2024 (arXiv:2408.10075).

Bradley–Terry with one reward averages users who disagree into a reward that suits
nobody. VPL gives each user a latent ``z``:

* an **encoder** ``q_ψ(z | C_u)`` reads a user's labelled pairs
  ``C_u = {(σ₁ⁱ, σ₂ⁱ, yⁱ)}`` and outputs a Gaussian ``N(μ, diag σ²)``. Here each segment
  is embedded by an MLP on its steps averaged over time, each pair by an MLP on
  ``[e(σ₁), e(σ₂), 2y − 1]``, and the pairs are mean-pooled (a permutation-invariant set
  encoder; the paper also uses self-attention over the set) before a head gives
  ``μ`` and ``log σ²``;
* a **latent-conditioned reward** ``r_φ(s, z)`` (an MLP on ``[s, a, s', z]``);
* the **ELBO**, maximised with the reparameterisation ``z = μ + σ ⊙ ε``::

      ELBO = E_{z∼q}[ Σ_i log p(yⁱ | σ₁ⁱ, σ₂ⁱ, z) ] − β · KL(q_ψ(z | C_u) ‖ N(0, I))
      p(y = 1 | σ₁, σ₂, z) = logistic(Σ_t r_φ(σ₁_t, z) − Σ_t r_φ(σ₂_t, z))

  :func:`vpl_loss` returns ``BCE + β · KL`` (the BCE averaged over a user's target pairs,
  the KL per user, both averaged over the users of a batch), i.e. the negative ELBO
  per pair up to the weighting folded into ``β``.

At deployment a user's few labelled pairs give ``z = μ`` (:meth:`VPLModel.infer_latent`)
and ``r(s, z)`` is their reward; :class:`~robo_reward.rewards.preference.plugin.PreferenceReward`
loads a saved VPL model with a chosen latent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...core.errors import ConfigError
from . import PreferencePairs, SegmentBatch
from .bt import _ACTIVATIONS, RewardModelConfig, SavedModel, _features, _shape, torch_threads

__all__ = ["VPLConfig", "VPLModel", "VPLTrainResult", "vpl_loss", "train_vpl"]


def _mlp(widths: Sequence[int], activation: str, out: int) -> nn.Sequential:
    act = _ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(widths[-1], out))
    return nn.Sequential(*layers)


@dataclass
class VPLConfig:
    """Architecture of a :class:`VPLModel`.

    Attributes:
        obs_shape, action_shape, use_obs, use_action, use_next_obs: the reward's inputs,
            as in :class:`~robo_reward.rewards.preference.bt.RewardModelConfig`.
        latent_dim: size of ``z``.
        hidden: hidden widths of the reward ``r(s, a, s', z)``.
        encoder_hidden: hidden widths of the encoder's MLPs.
        embed_dim: width of the segment and pair embeddings.
        activation: activation of every MLP.
        seed: seed of the initial weights.
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...] = ()
    use_obs: bool = True
    use_action: bool = True
    use_next_obs: bool = False
    latent_dim: int = 8
    hidden: tuple[int, ...] = (64, 64)
    encoder_hidden: tuple[int, ...] = (64,)
    embed_dim: int = 32
    activation: str = "leaky_relu"
    seed: int = 0

    def __post_init__(self) -> None:
        self.obs_shape = _shape(self.obs_shape, "obs_shape")
        self.action_shape = _shape(self.action_shape, "action_shape") if self.action_shape != 0 else ()
        self.hidden = tuple(int(h) for h in self.hidden)
        self.encoder_hidden = tuple(int(h) for h in self.encoder_hidden)
        if any(h < 1 for h in self.hidden + self.encoder_hidden):
            raise ConfigError("hidden and encoder_hidden widths must be >= 1")
        if int(self.latent_dim) < 1 or int(self.embed_dim) < 1:
            raise ConfigError(f"latent_dim and embed_dim must be >= 1, got {self.latent_dim}, {self.embed_dim}")
        self.latent_dim, self.embed_dim = int(self.latent_dim), int(self.embed_dim)
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {', '.join(_ACTIVATIONS)}")
        # validates the input part (and gives input_dim / requires)
        self._inputs = RewardModelConfig(
            obs_shape=self.obs_shape, action_shape=self.action_shape, use_obs=self.use_obs,
            use_action=self.use_action, use_next_obs=self.use_next_obs, hidden=(), ensemble_size=1,
        )

    @property
    def input_dim(self) -> int:
        """Width of ``[s, a, s']`` (the parts in use)."""
        return self._inputs.input_dim

    @property
    def requires(self) -> frozenset[str]:
        """The transition fields the reward reads."""
        return self._inputs.requires

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for saving."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        for k in ("obs_shape", "action_shape", "hidden", "encoder_hidden"):
            d[k] = list(d[k])
        return d


class VPLModel(SavedModel, nn.Module):
    """Encoder ``q(z | labelled pairs)`` and latent-conditioned reward ``r(s, a, s', z)``."""

    kind = "vpl"
    config_class = VPLConfig

    def __init__(self, config: VPLConfig):
        super().__init__()
        if not isinstance(config, VPLConfig):
            raise ConfigError(f"VPLModel needs a VPLConfig, got {type(config).__name__}")
        self.config = config
        D, E, Z = config.input_dim, config.embed_dim, config.latent_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.step_embed = _mlp((D, *config.encoder_hidden), config.activation, E)
            self.pair_embed = _mlp((2 * E + 1, *config.encoder_hidden), config.activation, E)
            self.head = _mlp((E, *config.encoder_hidden), config.activation, 2 * Z)
            self.reward_net = _mlp((D + Z, *config.hidden), config.activation, 1)
        self.register_buffer("default_latent", torch.zeros(Z))

    @property
    def requires(self) -> frozenset[str]:
        """The transition fields the reward reads (``obs``, ``action``, ``next_obs``)."""
        return self.config.requires

    def _device(self) -> torch.device:
        return self.default_latent.device

    def features(self, obs: Any = None, action: Any = None, next_obs: Any = None) -> torch.Tensor:
        """Concatenated inputs ``float32[*lead, input_dim]``."""
        return _features(self.config, obs, action, next_obs, self._device())

    def segment_features(self, seg: SegmentBatch) -> torch.Tensor:
        """Features of every step, ``float32[n, L, input_dim]``."""
        return self.features(seg.obs, seg.action, seg.next_obs)

    # ----------------------------------------------------------------- encoder
    def encode(
        self, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)`` of ``q(z | context)``, each ``[U, latent_dim]``.

        Args:
            x1, x2: ``[U, C, L, input_dim]`` features of ``C`` context pairs of ``U`` users.
            y: ``[U, C]`` labels ``P(σ₁ ≻ σ₂)``.
            mask: optional ``bool[U, C]``, which context pairs are real (for ragged sets).
        """
        e1 = self.step_embed(x1).mean(-2)
        e2 = self.step_embed(x2).mean(-2)
        h = self.pair_embed(torch.cat([e1, e2, (2 * y - 1).unsqueeze(-1)], dim=-1))  # [U, C, E]
        if mask is None:
            pooled = h.mean(-2)
        else:
            m = mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * m).sum(-2) / m.sum(-2).clamp_min(1.0)
        out = self.head(pooled)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 5.0)

    # ------------------------------------------------------------------ reward
    def reward_t(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``r(x, z)`` for features ``x`` ``[U, *rest, input_dim]`` and latents ``z`` ``[U, latent_dim]`` → ``[U, *rest]``.

        ``z`` may also be ``[latent_dim]`` (one latent for every row).
        """
        if z.ndim == 1:
            zz = z.expand(*x.shape[:-1], z.shape[-1])
        else:
            zz = z.reshape(z.shape[0], *([1] * (x.ndim - 2)), z.shape[-1]).expand(*x.shape[:-1], z.shape[-1])
        return self.reward_net(torch.cat([x, zz], dim=-1)).squeeze(-1)

    def _latent(self, latent: Any) -> torch.Tensor:
        if latent is None:
            return self.default_latent
        z = torch.as_tensor(np.asarray(latent, dtype=np.float32), device=self._device()).reshape(-1)
        if z.shape[0] != self.config.latent_dim:
            raise ConfigError(f"latent must have {self.config.latent_dim} numbers, got {z.shape[0]}")
        if not torch.isfinite(z).all():
            raise ConfigError("latent must be finite")
        return z

    @torch.no_grad()
    def predict(
        self, obs: Any = None, action: Any = None, next_obs: Any = None, *, latent: Any = None
    ) -> np.ndarray:
        """``r(s, a, s', z)``, ``float32[*lead]`` (``latent=None``: the saved default latent)."""
        x = self.features(obs, action, next_obs)
        return self.reward_t(x, self._latent(latent)).cpu().numpy().astype(np.float32, copy=False)

    @torch.no_grad()
    def infer_latent(self, context: PreferencePairs) -> np.ndarray:
        """The posterior mean ``μ`` of ``q(z | context)`` for one user's labelled pairs, ``float[latent_dim]``."""
        if not isinstance(context, PreferencePairs) or len(context) == 0:
            raise ConfigError("infer_latent needs a user's labelled pairs (a non-empty PreferencePairs)")
        x1 = self.segment_features(context.seg1)[None]
        x2 = self.segment_features(context.seg2)[None]
        y = torch.as_tensor(context.labels, dtype=torch.float32, device=self._device())[None]
        mu, _ = self.encode(x1, x2, y)
        return mu[0].cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def preference_probability(self, seg1: SegmentBatch, seg2: SegmentBatch, latent: Any = None) -> np.ndarray:
        """``P(σ₁ ≻ σ₂ | z)`` for each pair, ``float[n]``."""
        z = self._latent(latent)
        r1 = self.reward_t(self.segment_features(seg1), z).sum(-1)
        r2 = self.reward_t(self.segment_features(seg2), z).sum(-1)
        return torch.sigmoid(r1 - r2).cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------- files
    def save(self, path: str | Path, latent: Any = None) -> Path:
        """Write config + weights to ``path``; ``latent`` becomes the default latent of :meth:`predict`."""
        if latent is not None:
            with torch.no_grad():
                self.default_latent.copy_(self._latent(latent))
        return self._write(path)


def vpl_loss(
    model: VPLModel,
    context: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    kl_weight: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO ``BCE + β · KL`` for a batch of users; returns ``(loss, bce, kl)``.

    Args:
        model: the VPL model.
        context: ``(x1, x2, y)`` with shapes ``[U, C, L, D]``, ``[U, C, L, D]``, ``[U, C]``.
        targets: ``(x1, x2, y)`` pairs of the same users to predict, ``[U, M, L, D]``, ..., ``[U, M]``.
        kl_weight: ``β``.
        generator: randomness of the reparameterisation noise.
    """
    mu, logvar = model.encode(*context)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    t1, t2, ty = targets
    logits = model.reward_t(t1, z).sum(-1) - model.reward_t(t2, z).sum(-1)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, ty)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
    return bce + kl_weight * kl, bce, kl


@dataclass
class VPLTrainResult:
    """Losses of :func:`train_vpl`, one entry per logged step (every ``log_every`` steps)."""

    loss: list[float] = field(default_factory=list)
    bce: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    steps: int = 0


def train_vpl(
    model: VPLModel,
    users: Sequence[PreferencePairs],
    *,
    steps: int = 2000,
    users_per_batch: int = 8,
    context_size: int = 8,
    target_size: int | None = None,
    kl_weight: float = 0.01,
    lr: float = 1e-3,
    seed: int | None = 0,
    log_every: int = 50,
    progress: bool = False,
    num_threads: int | None = 1,
) -> VPLTrainResult:
    """Train ``model`` on the labelled pairs of several users (one :class:`PreferencePairs` each).

    Each step samples ``users_per_batch`` users; for each, ``context_size`` of their pairs
    form the encoder's context and ``target_size`` (default ``context_size``) others —
    drawn independently from the same user's pairs, as the annotations of one user share
    one latent — are predicted from ``z ∼ q(z | context)``. ``num_threads`` sets torch's
    threads while training (one is fastest for small nets on a busy CPU; ``None``: unchanged).

    Raises:
        ConfigError: no users, mismatched segment lengths or bad settings.
    """
    if not isinstance(model, VPLModel):
        raise ConfigError(f"train_vpl trains a VPLModel, got {type(model).__name__}")
    users = list(users)
    if not users or any(not isinstance(u, PreferencePairs) or len(u) == 0 for u in users):
        raise ConfigError("train_vpl needs a list of non-empty PreferencePairs, one per user")
    if len({u.seg1.length for u in users}) != 1:
        raise ConfigError("every user's segments must have the same length")
    target_size = context_size if target_size is None else target_size
    if min(steps, users_per_batch, context_size, target_size, log_every) < 1 or not lr > 0 or kl_weight < 0:
        raise ConfigError("train_vpl needs steps, users_per_batch, context_size, target_size, log_every >= 1, lr > 0, kl_weight >= 0")
    with torch_threads(num_threads):
        return _train_vpl(model, users, steps, users_per_batch, context_size, target_size, kl_weight, lr, seed,
                          log_every, progress)


def _train_vpl(
    model: VPLModel, users: list[PreferencePairs], steps: int, users_per_batch: int, context_size: int,
    target_size: int, kl_weight: float, lr: float, seed: int | None, log_every: int, progress: bool,
) -> VPLTrainResult:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    data = [
        (model.segment_features(u.seg1), model.segment_features(u.seg2), torch.as_tensor(u.labels, dtype=torch.float32))
        for u in users
    ]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    result = VPLTrainResult()
    it: Any = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="VPL", unit="step")
    model.train()
    acc = [0.0, 0.0, 0.0]
    for step in it:
        who = rng.choice(len(users), size=users_per_batch, replace=len(users) < users_per_batch)
        c1, c2, cy, t1, t2, ty = [], [], [], [], [], []
        for u in who:
            x1, x2, y = data[u]
            n = len(y)
            ci = torch.as_tensor(rng.choice(n, size=context_size, replace=n < context_size))
            ti = torch.as_tensor(rng.choice(n, size=target_size, replace=n < target_size))
            c1.append(x1[ci]); c2.append(x2[ci]); cy.append(y[ci])  # noqa: E702
            t1.append(x1[ti]); t2.append(x2[ti]); ty.append(y[ti])  # noqa: E702
        stack = torch.stack
        loss, bce, kl = vpl_loss(
            model, (stack(c1), stack(c2), stack(cy)), (stack(t1), stack(t2), stack(ty)), kl_weight=kl_weight, generator=gen
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc[0] += float(loss.detach()); acc[1] += float(bce.detach()); acc[2] += float(kl.detach())  # noqa: E702
        if (step + 1) % log_every == 0 or step + 1 == steps:
            k = (step % log_every) + 1
            result.loss.append(acc[0] / k); result.bce.append(acc[1] / k); result.kl.append(acc[2] / k)  # noqa: E702
            acc = [0.0, 0.0, 0.0]
        result.steps += 1
    model.eval()
    return result

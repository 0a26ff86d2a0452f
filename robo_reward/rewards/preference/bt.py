"""Bradley–Terry reward learning over partial return, with reward-net ensembles and active queries.

The preference model of RLHF for control (Christiano et al. 2017, "Deep reinforcement
learning from human preferences"; PEBBLE, Lee et al. 2021; B-Pref, Lee et al. 2021):
a person prefers the segment with the larger sum of rewards, noisily::

    P(σ₁ ≻ σ₂) = exp Σ_t r(σ₁_t) / (exp Σ_t r(σ₁_t) + exp Σ_t r(σ₂_t))
              = logistic(Σ_t r(σ₁_t) − Σ_t r(σ₂_t))

A reward net ``r_θ`` (an MLP, or a linear map with ``hidden=()``, on a concatenation of
the observation, action and next observation) is fitted by minimising the binary
cross-entropy between that probability and the labels (soft labels allowed, 0.5 for
"equally good"). An *ensemble* of independently initialised nets, each trained on its
own shuffling of the data (as in PEBBLE/B-Pref), gives the uncertainty used to choose
informative queries:

* ``uniform`` — pairs drawn at random;
* ``disagreement`` — the pairs whose predicted ``P(σ₁ ≻ σ₂)`` varies most across the
  ensemble (variance over members; B-Pref ranks by the standard deviation, the same order);
* ``entropy`` — the pairs whose predicted preference is most uncertain: the mean over
  members of the binary entropy ``H(P_k)`` (B-Pref's ``entropy_sampling``).

B-Pref first draws ``candidate_factor × n`` random pairs and keeps the ``n`` best
scored (:class:`~robo_reward.rewards.preference.plugin.PreferenceTrainer` does that).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.errors import ConfigError
from . import PreferencePairs, SegmentBatch

__all__ = [
    "RewardModelConfig",
    "RewardNet",
    "RewardEnsemble",
    "TrainResult",
    "train_bradley_terry",
    "QUERY_METHODS",
    "query_scores",
    "select_queries",
    "bradley_terry_probability",
    "FILE_FORMAT",
    "members_summary",
    "torch_threads",
]

#: Query-selection methods understood by :func:`query_scores` / :func:`select_queries`.
QUERY_METHODS = ("uniform", "disagreement", "entropy")

#: The ``format`` key of files written by :meth:`RewardEnsemble.save` (and :meth:`VPLModel.save`).
FILE_FORMAT = "robo_reward.preference"

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}
_OUTPUT_ACTIVATIONS = (None, "tanh", "sigmoid")


def _shape(x: Any, what: str) -> tuple[int, ...]:
    if isinstance(x, (int, np.integer)):
        x = (int(x),)
    try:
        shape = tuple(int(v) for v in x)
    except TypeError as exc:
        raise ConfigError(f"{what} must be an int or a tuple of ints, got {x!r}") from exc
    if any(v < 0 for v in shape):
        raise ConfigError(f"{what} must not be negative, got {shape}")
    return shape


@dataclass
class RewardModelConfig:
    """Architecture of a reward net / ensemble.

    Attributes:
        obs_shape: shape of one observation (an int for flat observations).
        action_shape: shape of one action (``()`` / 0 when actions are not used).
        use_obs: feed the observation ``s``.
        use_action: feed the action ``a``.
        use_next_obs: feed the next observation ``s'``.
        hidden: hidden-layer widths; ``()`` makes a linear reward ``r = w · x + b``.
        activation: ``relu``, ``leaky_relu``, ``tanh``, ``elu`` or ``silu``.
        output_activation: ``None``, ``"tanh"`` (B-Pref/PEBBLE bound rewards to [-1, 1]) or ``"sigmoid"``.
        ensemble_size: number of members.
        normalize: standardise inputs with the mean/std of the first training data.
        seed: seed of the initial weights (member ``k`` uses ``seed + k``).
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...] = ()
    use_obs: bool = True
    use_action: bool = True
    use_next_obs: bool = False
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "leaky_relu"
    output_activation: str | None = None
    ensemble_size: int = 3
    normalize: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.obs_shape = _shape(self.obs_shape, "obs_shape")
        self.action_shape = _shape(self.action_shape, "action_shape") if self.action_shape != 0 else ()
        self.hidden = tuple(int(h) for h in self.hidden)
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be >= 1, got {self.hidden}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {', '.join(_ACTIVATIONS)}")
        if self.output_activation not in _OUTPUT_ACTIVATIONS:
            raise ConfigError(f"output_activation must be one of {_OUTPUT_ACTIVATIONS}, got {self.output_activation!r}")
        if int(self.ensemble_size) < 1:
            raise ConfigError(f"ensemble_size must be >= 1, got {self.ensemble_size}")
        self.ensemble_size = int(self.ensemble_size)
        if self.use_action and not self.action_shape:
            raise ConfigError("use_action=True needs action_shape (or set use_action=False)")
        if self.input_dim == 0:
            raise ConfigError("the reward net has no inputs: enable use_obs, use_action or use_next_obs")

    @classmethod
    def for_spaces(cls, observation_space: Any, action_space: Any | None = None, **kwargs: Any) -> "RewardModelConfig":
        """Config for a Gymnasium ``Box`` observation space (and optional ``Box``/``Discrete`` action space)."""
        shape = getattr(observation_space, "shape", None)
        if not shape:
            raise ConfigError(
                f"the reward net needs a flat or array observation space (Box), got {observation_space!r}"
            )
        action_shape: tuple[int, ...] = ()
        if action_space is not None:
            n = getattr(action_space, "n", None)
            action_shape = (1,) if n is not None and not getattr(action_space, "shape", None) else tuple(action_space.shape)
        kwargs.setdefault("use_action", bool(action_shape))
        return cls(obs_shape=tuple(shape), action_shape=action_shape, **kwargs)

    @property
    def obs_dim(self) -> int:
        """Number of numbers in one observation."""
        return int(np.prod(self.obs_shape)) if self.obs_shape else 1

    @property
    def action_dim(self) -> int:
        """Number of numbers in one action."""
        return int(np.prod(self.action_shape)) if self.action_shape else 0

    @property
    def input_dim(self) -> int:
        """Width of the concatenated input ``[s, a, s']`` (the parts in use)."""
        return self.use_obs * self.obs_dim + self.use_action * self.action_dim + self.use_next_obs * self.obs_dim

    @property
    def requires(self) -> frozenset[str]:
        """What a reward plugin must be given: a subset of ``{"obs", "action", "next_obs"}``."""
        parts = {"obs": self.use_obs, "action": self.use_action, "next_obs": self.use_next_obs}
        return frozenset(k for k, v in parts.items() if v)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists for tuples), for saving."""
        d = asdict(self)
        for k in ("obs_shape", "action_shape", "hidden"):
            d[k] = list(d[k])
        return d


class RewardNet(nn.Module):
    """One reward net ``r_θ(x)`` on the concatenated input features ``x = [s, a, s']``.

    Inputs are standardised with the ``input_mean``/``input_std`` buffers (identity
    until :meth:`RewardEnsemble.fit_normalizer` sets them).
    """

    def __init__(self, config: RewardModelConfig):
        super().__init__()
        self.config = config
        act = _ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        width = config.input_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        layers.append(nn.Linear(width, 1))
        if config.output_activation == "tanh":
            layers.append(nn.Tanh())
        elif config.output_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.body = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_std", torch.ones(config.input_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reward of each row of ``x`` (``[..., input_dim]`` → ``[...]``)."""
        return self.body((x - self.input_mean) / self.input_std).squeeze(-1)


class SavedModel:
    """Saving and loading for the torch reward models of this package (a mixin for ``nn.Module``s).

    A file holds ``{"format", "version", "kind", "config", "state_dict"}``; subclasses set
    ``kind`` (checked on load) and ``config_class`` (rebuilt from ``config``).
    """

    kind: str = ""
    config_class: type = object

    def _write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"format": FILE_FORMAT, "version": 1, "kind": self.kind, "config": self.config.to_dict(),  # type: ignore[attr-defined]
             "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}},  # type: ignore[attr-defined]
            path,
        )
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Any:
        """Rebuild from the dict that ``save`` writes."""
        model = cls(cls.config_class(**state["config"]))  # type: ignore[call-arg]
        model.load_state_dict(state["state_dict"])
        model.eval()
        return model

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> Any:
        """Load a model written by ``save``. Raises :class:`ConfigError` for other files or kinds."""
        state = _load_state(path, map_location)
        if state.get("kind") != cls.kind:
            raise ConfigError(f"{path} holds a {state.get('kind')!r} model, not a {cls.kind!r}")
        return cls.from_state(state)


class RewardEnsemble(SavedModel, nn.Module):
    """An ensemble of :class:`RewardNet` s; its reward is the members' mean.

    Args:
        config: the architecture (and ``ensemble_size``, ``seed``).

    Example::

        cfg = RewardModelConfig.for_spaces(env.observation_space, env.action_space)
        model = RewardEnsemble(cfg)
        train_bradley_terry(model, pairs)
        r = model.predict(obs, action)        # float32[n], the ensemble mean
    """

    kind = "bradley-terry-ensemble"
    config_class = RewardModelConfig

    def __init__(self, config: RewardModelConfig):
        super().__init__()
        if not isinstance(config, RewardModelConfig):
            raise ConfigError(f"RewardEnsemble needs a RewardModelConfig, got {type(config).__name__}")
        self.config = config
        members = []
        for k in range(config.ensemble_size):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + k)
                members.append(RewardNet(config))
        self.members = nn.ModuleList(members)
        self.register_buffer("normalizer_fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ inputs
    @property
    def requires(self) -> frozenset[str]:
        """The transition fields the model reads (``obs``, ``action``, ``next_obs``)."""
        return self.config.requires

    def __len__(self) -> int:
        return len(self.members)

    def features(self, obs: Any = None, action: Any = None, next_obs: Any = None) -> torch.Tensor:
        """Concatenate the used parts into ``float32[*lead, input_dim]`` (``lead`` = leading dims of ``obs``)."""
        return _features(self.config, obs, action, next_obs, self._device())

    def segment_features(self, seg: SegmentBatch) -> torch.Tensor:
        """Features of every step of every segment, ``float32[n, L, input_dim]``."""
        return self.features(seg.obs, seg.action, seg.next_obs)

    def _device(self) -> torch.device:
        return self.normalizer_fitted.device

    def fit_normalizer(self, x: torch.Tensor) -> None:
        """Set every member's input standardisation to the mean/std of features ``x`` (``[..., input_dim]``)."""
        flat = x.reshape(-1, x.shape[-1]).to(torch.float32)
        mean = flat.mean(0)
        std = flat.std(0, unbiased=False).clamp_min(1e-6)
        with torch.no_grad():
            for m in self.members:
                m.input_mean.copy_(mean)
                m.input_std.copy_(std)
            self.normalizer_fitted.fill_(True)

    # ------------------------------------------------------------------ outputs
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Member rewards for features ``x``: ``[..., input_dim]`` → ``[K, ...]``."""
        return torch.stack([m(x) for m in self.members])

    @torch.no_grad()
    def predict_members(
        self, obs: Any = None, action: Any = None, next_obs: Any = None, *, batch_size: int = 65536
    ) -> np.ndarray:
        """Each member's reward, ``float32[K, *lead]``.

        On the CPU this runs in numpy on a cached copy of the weights (refreshed whenever
        a parameter changes), which costs a few microseconds per call instead of the
        ~1 ms of Python overhead of calling the torch modules: the plugin calls it every
        env step. Results agree with the torch forward pass to float32 rounding.
        """
        x = _features_np(self.config, obs, action, next_obs)
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        K, step = len(self.members), max(1, int(batch_size))
        if self._device().type == "cpu":
            out = np.empty((K, flat.shape[0]), dtype=np.float32)
            for i in range(0, flat.shape[0], step):
                out[:, i : i + step] = self._numpy_forward(flat[i : i + step])
        else:
            xt = torch.as_tensor(flat, device=self._device())
            chunks = [self(xt[i : i + step]) for i in range(0, xt.shape[0], step)]
            out = (torch.cat(chunks, dim=1) if chunks else torch.zeros((K, 0))).cpu().numpy()
        return out.reshape(K, *lead).astype(np.float32, copy=False)

    def _numpy_weights(self) -> list[tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]]:
        tensors = getattr(self, "_np_tensors", None)
        if tensors is None:
            tensors = self._np_tensors = [*self.parameters(), *self.buffers()]
        # in-place updates (optimiser steps, load_state_dict) bump _version; moves change data_ptr
        key = tuple((t._version, t.data_ptr()) for t in tensors)
        cache = getattr(self, "_np_cache", None)
        if cache is None or cache[0] != key:
            weights = []
            for m in self.members:
                layers = [
                    (layer.weight.detach().cpu().numpy().T.copy(), layer.bias.detach().cpu().numpy().copy())
                    for layer in m.body
                    if isinstance(layer, nn.Linear)
                ]
                weights.append((m.input_mean.cpu().numpy().copy(), m.input_std.cpu().numpy().copy(), layers))
            cache = (key, weights)
            self._np_cache = cache
        return cache[1]

    def _numpy_forward(self, x: np.ndarray) -> np.ndarray:
        """Member rewards ``float32[K, N]`` of features ``x`` ``float32[N, input_dim]``, in numpy."""
        act = _np_activation(self.config.activation)
        out_act = _np_activation(self.config.output_activation)
        rows = []
        for mean, std, layers in self._numpy_weights():
            h = (x - mean) / std
            for i, (w, b) in enumerate(layers):
                h = h @ w + b
                if i < len(layers) - 1:
                    h = act(h)
            rows.append(out_act(h)[:, 0])
        return np.stack(rows).astype(np.float32, copy=False)

    def predict(self, obs: Any = None, action: Any = None, next_obs: Any = None, *, batch_size: int = 65536) -> np.ndarray:
        """The ensemble-mean reward, ``float32[*lead]``."""
        return self.predict_members(obs, action, next_obs, batch_size=batch_size).mean(axis=0)

    @torch.no_grad()
    def segment_returns(self, seg: SegmentBatch) -> np.ndarray:
        """Each member's partial return ``Σ_t r(σ_t)`` of each segment, ``float[K, n]``."""
        return self(self.segment_features(seg)).sum(-1).cpu().numpy().astype(np.float64)

    def preference_probabilities(self, seg1: SegmentBatch, seg2: SegmentBatch) -> np.ndarray:
        """Each member's ``P(σ₁ ≻ σ₂)`` for each pair, ``float[K, n]``."""
        if len(seg1) != len(seg2):
            raise ConfigError(f"seg1 and seg2 must hold the same number of segments ({len(seg1)} != {len(seg2)})")
        return bradley_terry_probability(self.segment_returns(seg1), self.segment_returns(seg2))

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the model (config + weights) to ``path`` (a torch file); returns the path."""
        return self._write(path)


def _load_state(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reward model file {str(path)!r} does not exist; train a model and save it with model.save(path)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError(f"could not read reward model file {str(path)!r}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
        raise ConfigError(f"{str(path)!r} is not a robo_reward preference model (written by model.save(path))")
    return state


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _flatten_part(x: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if x is None:
        raise ConfigError(f"the reward model reads {name!r} but none was given")
    t = _as_array(x)
    nd = len(shape)
    if t.ndim < nd + 1 or tuple(t.shape[t.ndim - nd :]) != shape:
        if shape == (1,) and t.ndim >= 1 and t.shape[-1] != 1:
            t = t[..., None]  # discrete actions given as ints
        else:
            raise ConfigError(f"{name} has shape {tuple(t.shape)}; expected [..., {', '.join(map(str, shape))}]")
    lead = t.shape[: t.ndim - nd]
    return t.reshape(*lead, int(np.prod(shape)) if shape else 1)


def _features_np(config: Any, obs: Any, action: Any, next_obs: Any) -> np.ndarray:
    """The used parts of ``[s, a, s']`` concatenated, ``float32[*lead, input_dim]``."""
    parts = []
    if config.use_obs:
        parts.append(_flatten_part(obs, config.obs_shape, "obs"))
    if config.use_action:
        parts.append(_flatten_part(action, config.action_shape, "action"))
    if config.use_next_obs:
        parts.append(_flatten_part(next_obs, config.obs_shape, "next_obs"))
    lead = {tuple(p.shape[:-1]) for p in parts}
    if len(lead) != 1:
        raise ConfigError(f"obs/action/next_obs have different leading shapes {sorted(lead)}")
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _features(config: Any, obs: Any, action: Any, next_obs: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(_features_np(config, obs, action, next_obs), device=device)


def _np_activation(name: str | None) -> Any:
    """numpy twin of the torch activations (``nn.LeakyReLU``'s default slope 0.01, ``nn.ELU``'s alpha 1)."""
    if name == "relu":
        return lambda h: np.maximum(h, np.float32(0.0))
    if name == "leaky_relu":
        return lambda h: np.where(h > 0, h, h * np.float32(0.01))
    if name == "elu":
        return lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, np.float32(0.0))))
    if name == "silu":
        return lambda h: h / (np.float32(1.0) + np.exp(-h))
    if name == "tanh":
        return np.tanh
    if name == "sigmoid":
        return lambda h: np.float32(1.0) / (np.float32(1.0) + np.exp(-h))
    return lambda h: h


@contextlib.contextmanager
def torch_threads(n: int | None) -> Any:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: leave it), restoring it afterwards.

    Reward nets are small: on a busy CPU, several intra-op threads mostly wait for each
    other, and one thread is often several times faster.
    """
    if n is None:
        yield
        return
    if int(n) < 1:
        raise ConfigError(f"num_threads must be >= 1 or None, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bradley_terry_probability(returns1: Any, returns2: Any) -> np.ndarray:
    """``P(σ₁ ≻ σ₂) = logistic(R₁ − R₂)`` elementwise (numerically stable)."""
    z = np.asarray(returns1, dtype=np.float64) - np.asarray(returns2, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ====================================================================== training


@dataclass
class TrainResult:
    """What :func:`train_bradley_terry` reports.

    Attributes:
        losses: mean BCE over members and batches, per epoch.
        accuracy: per member, fraction of the non-tied training pairs whose preferred
            segment the member ranks higher (after training).
        epochs: epochs run.
    """

    losses: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    epochs: int = 0

    @property
    def final_loss(self) -> float:
        """Loss of the last epoch (NaN when no epoch ran)."""
        return self.losses[-1] if self.losses else float("nan")


def fit_member_logits(
    module: nn.Module, members: Any, logits: Any, labels: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
    weight_decay: float, seed: int | None, progress: bool,
) -> "TrainResult":
    """The Bradley–Terry loop every reward ensemble here trains with.

    Each member sees its own random order of the ``n = len(labels)`` pairs (PEBBLE/B-Pref);
    one Adam optimiser over ``module``'s parameters steps on the sum of the members' losses
    ``BCE(logits(member, idx), labels[idx])``, where ``logits(member, idx)`` is
    ``Σr(σ₁) − Σr(σ₂)`` of the pairs ``idx`` under that member. ``module`` is left in eval
    mode; the returned :class:`TrainResult` holds the per-epoch losses (its ``accuracy`` is
    left to the caller).
    """
    n, K = len(labels), len(members)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    bce = nn.functional.binary_cross_entropy_with_logits
    result = TrainResult()
    epochs_iter: Any = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs_iter = tqdm(epochs_iter, desc="reward model", unit="epoch")
    module.train()
    for _ in epochs_iter:
        orders = [torch.as_tensor(rng.permutation(n), device=labels.device) for _ in range(K)]
        total, batches = 0.0, 0
        for start in range(0, n, batch_size):
            opt.zero_grad()
            loss = labels.new_zeros(())
            for k, member in enumerate(members):
                idx = orders[k][start : start + batch_size]
                loss = loss + bce(logits(member, idx), labels[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) / K
            batches += 1
        result.losses.append(total / max(batches, 1))
        result.epochs += 1
    module.eval()
    return result


def train_bradley_terry(
    model: RewardEnsemble,
    pairs: PreferencePairs,
    *,
    epochs: int = 50,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int | None = 0,
    progress: bool = False,
    num_threads: int | None = 1,
) -> TrainResult:
    """Fit every member to ``pairs`` by minimising ``BCE(logistic(Σr(σ₁) − Σr(σ₂)), label)``.

    Each member sees its own random order of the pairs (PEBBLE/B-Pref); one Adam
    optimiser steps on the sum of the members' losses. With ``config.normalize`` the
    input standardisation is fitted on the first data the model is trained on and kept
    afterwards (so the reward does not shift between rounds).

    Args:
        model: the ensemble (trained in place).
        pairs: labelled pairs (labels in ``[0, 1]``; 0.5 means equal).
        epochs: passes over the data.
        batch_size: pairs per gradient step (``len(pairs)`` or more: full batch).
        lr: Adam learning rate.
        weight_decay: Adam's L2 weight decay.
        seed: seed of the shuffling.
        progress: show a tqdm bar over epochs.
        num_threads: torch threads while training (:func:`torch_threads`; ``None``: unchanged).

    Raises:
        ConfigError: bad arguments or no pairs.
    """
    with torch_threads(num_threads):
        return _train_bt(model, pairs, epochs, batch_size, lr, weight_decay, seed, progress)


def _train_bt(
    model: "RewardEnsemble", pairs: PreferencePairs, epochs: int, batch_size: int, lr: float,
    weight_decay: float, seed: int | None, progress: bool,
) -> TrainResult:
    if not isinstance(model, RewardEnsemble):
        raise ConfigError(f"train_bradley_terry trains a RewardEnsemble, got {type(model).__name__}")
    if not isinstance(pairs, PreferencePairs) or len(pairs) == 0:
        raise ConfigError("train_bradley_terry needs a non-empty PreferencePairs")
    if epochs < 1 or batch_size < 1 or not lr > 0 or weight_decay < 0:
        raise ConfigError("train_bradley_terry needs epochs >= 1, batch_size >= 1, lr > 0 and weight_decay >= 0")
    x1 = model.segment_features(pairs.seg1)
    x2 = model.segment_features(pairs.seg2)
    if model.config.normalize and not bool(model.normalizer_fitted):
        model.fit_normalizer(torch.cat([x1, x2]))
    y = torch.as_tensor(pairs.labels, dtype=torch.float32, device=x1.device)
    result = fit_member_logits(
        model, model.members, lambda member, idx: member(x1[idx]).sum(-1) - member(x2[idx]).sum(-1), y,
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, progress=progress,
    )
    p = model.preference_probabilities(pairs.seg1, pairs.seg2)
    decided = pairs.labels != 0.5
    if decided.any():
        target = pairs.labels[decided] > 0.5
        result.accuracy = [float(np.mean((p[k, decided] > 0.5) == target)) for k in range(len(model.members))]
    return result


# ====================================================================== active queries


def query_scores(probabilities: Any, method: str) -> np.ndarray:
    """Score candidate pairs from the members' ``P(σ₁ ≻ σ₂)`` (``float[K, n]``); higher = ask first.

    * ``disagreement``: variance over members of ``P``;
    * ``entropy``: mean over members of the binary entropy ``−P log P − (1−P) log(1−P)``;
    * ``uniform``: all zeros (every pair equally informative).
    """
    if method not in QUERY_METHODS:
        raise ConfigError(f"unknown query method {method!r}; choose one of {', '.join(QUERY_METHODS)}")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or not np.all((p >= 0) & (p <= 1)):
        raise ConfigError(f"probabilities must be float[K, n] in [0, 1], got shape {p.shape}")
    if method == "uniform":
        return np.zeros(p.shape[1])
    if method == "disagreement":
        return p.var(axis=0)
    q = np.clip(p, 1e-12, 1 - 1e-12)
    ent = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    return ent.mean(axis=0)


def select_queries(
    model_or_probabilities: Any,
    seg1: SegmentBatch | None,
    seg2: SegmentBatch | None,
    n: int,
    method: str = "disagreement",
    *,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Indices of the ``n`` candidate pairs to ask about, best first (``int[n]``).

    Args:
        model_or_probabilities: a :class:`RewardEnsemble` (it scores ``seg1``/``seg2``),
            the members' probabilities ``float[K, m]`` directly, or ``None`` for ``uniform``.
        seg1, seg2: the ``m`` candidate pairs (unused when probabilities are given).
        n: how many to pick (``<= m``).
        method: ``uniform``, ``disagreement`` or ``entropy``.
        seed: randomness for ``uniform`` (and for breaking exact ties).
    """
    if method not in QUERY_METHODS:
        raise ConfigError(f"unknown query method {method!r}; choose one of {', '.join(QUERY_METHODS)}")
    rng = np.random.default_rng(seed)
    if isinstance(model_or_probabilities, RewardEnsemble):
        if seg1 is None or seg2 is None:
            raise ConfigError("select_queries with a model needs the candidate segments seg1 and seg2")
        probs = model_or_probabilities.preference_probabilities(seg1, seg2)
        m = probs.shape[1]
    elif model_or_probabilities is None:
        if method != "uniform":
            raise ConfigError(f"query method {method!r} needs a reward ensemble or its probabilities")
        if seg1 is None:
            raise ConfigError("select_queries needs the candidate segments (or probabilities)")
        probs, m = None, len(seg1)
    else:
        probs = np.asarray(model_or_probabilities, dtype=np.float64)
        probs = probs[None] if probs.ndim == 1 else probs
        m = probs.shape[1] if probs.ndim == 2 else -1
    n = int(n)
    if not 0 <= n <= m:
        raise ConfigError(f"cannot select {n} queries out of {m} candidates")
    if method == "uniform":
        return np.sort(rng.choice(m, size=n, replace=False)) if n < m else np.arange(m)
    scores = query_scores(probs, method)
    # stable descending order; exact ties keep candidate order
    return np.argsort(-scores, kind="stable")[:n]


def members_summary(model: RewardEnsemble) -> str:
    """One line describing an ensemble (members, inputs, layer widths), for logs."""
    c = model.config
    parts = "+".join(sorted(c.requires))
    arch = "linear" if not c.hidden else "x".join(map(str, c.hidden))
    return f"{len(model.members)} x reward net on {parts} ({c.input_dim} inputs, {arch}, {c.activation})"

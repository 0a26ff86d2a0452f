"""Implicit Q-Learning (Kostrikov, Nair & Levine 2021, "Offline RL with Implicit Q-Learning").

IQL never queries the Q-function on actions outside the dataset:

* value: ``L_V = E[L₂^τ(min_k Q̄_k(s, a) − V(s))]`` with the expectile loss
  ``L₂^τ(u) = |τ − 1(u < 0)| u²`` (τ = 0.7), :func:`expectile_loss`;
* twin Q: ``L_Q = Σ_k E[(r + γ (1 − terminated) V(s') − Q_k(s, a))²]``, :func:`q_target`;
* policy extraction by advantage-weighted regression:
  ``L_π = −E[exp(β (Q̄(s, a) − V(s))) log π(a | s)]`` with β = 3 and the weights clipped
  at 100, :func:`awr_weights`;
* target Q-networks ``Q̄`` updated by Polyak averaging (rate 0.005).

The policy is a Gaussian with a tanh-squashed mean and state-independent log std (as in
the paper's code), :class:`GaussianPolicy`; :meth:`IQL.act` returns the mean. Runs on
CUDA when present.

How one gradient step is made fast (the same maths as three separate updates):

* the three losses only depend on their own network's parameters (the value target
  and the advantage use the target Q and a detached V), so one backward pass of their
  sum and one Adam step over all parameters (``fused`` when torch has it) give exactly
  the gradients and updates of three optimisers;
* the twin Q-networks are one ensemble module evaluated with batched matrix products;
* observations are normalised once when the data is loaded, all transition fields
  live in one device tensor and a batch is one ``index_select`` with indices drawn on
  the device;
* the Gaussian log-likelihood is written out (no ``torch.distributions`` argument
  checks), the Polyak update is one ``_foreach_lerp_``, and losses stay on the device
  until a log line needs them (no host–device synchronisation per step).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..core.errors import ConfigError

_LOG_STD_MIN, _LOG_STD_MAX = -5.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_ACTION_EPS = 1e-5


@dataclass
class IQLConfig:
    """IQL hyperparameters (defaults: the paper's locomotion settings).

    Attributes:
        hidden: hidden layer sizes of every network.
        lr: Adam learning rate of all networks.
        gamma: discount.
        expectile: τ of the value loss.
        beta: inverse temperature of the advantage weights.
        max_weight: advantage weights are clipped at this value.
        polyak: target-network averaging rate.
        batch_size: transitions per gradient step.
        reward_scale, reward_shift: rewards are used as ``r * scale + shift``.
        normalize_obs: standardise observations with the dataset's mean and std.
        seed: seeds network initialisation and batch sampling.
    """

    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    gamma: float = 0.99
    expectile: float = 0.7
    beta: float = 3.0
    max_weight: float = 100.0
    polyak: float = 0.005
    batch_size: int = 256
    reward_scale: float = 1.0
    reward_shift: float = 0.0
    normalize_obs: bool = True
    seed: int = 0


# ----------------------------------------------------------------------------- the losses (pure functions)


def expectile_loss(diff: Any, tau: float) -> Any:
    """Mean of ``|τ − 1(diff < 0)| · diff²`` (torch tensors); ``diff = Q − V``."""
    w = (tau - (diff < 0).to(diff.dtype)).abs()
    return (w * diff.pow(2)).mean()


def awr_weights(adv: Any, beta: float, max_weight: float) -> Any:
    """Advantage weights ``min(exp(β · adv), max_weight)`` (torch tensors)."""
    return (beta * adv).exp().clamp(max=max_weight)


def q_target(reward: Any, terminated: Any, next_v: Any, gamma: float) -> Any:
    """TD target ``r + γ (1 − terminated) V(s')``; truncation still bootstraps."""
    return reward + gamma * (1.0 - terminated) * next_v


def gaussian_log_prob(mean: Any, log_std: Any, action: Any) -> Any:
    """``Σ_j log N(action_j; mean_j, exp(log_std_j)²)`` over the last dimension (torch tensors)."""
    z = (action - mean) * (-log_std).exp()
    return (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)


def config_from_mapping(cls: type, values: Mapping[str, Any] | None, what: str) -> Any:
    """Build the dataclass ``cls`` from ``values``, turning lists into tuples where the default is one.

    Raises:
        ConfigError: an unknown key (the valid ones are listed) or a value of the wrong kind.
    """
    names = {f.name: f for f in fields(cls)}
    values = dict(values or {})
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown {what} hyperparameter(s) {unknown}; valid keys: {', '.join(sorted(names))}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = names[key].default
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in value):
                raise ConfigError(f"{what} {key} must be a list of positive layer sizes, got {value!r}")
            value = tuple(int(h) for h in value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{what} {key} must be true or false, got {value!r}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{what} {key} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{what} {key} must be a finite number, got {value!r}")
            value = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{what} {key} must be a string, got {value!r}")
        out[key] = value
    return cls(**out)


# ----------------------------------------------------------------------------- networks


def _mlp(inp: int, out: int, hidden: tuple[int, ...]):
    import torch.nn as nn

    layers: list[Any] = []
    d = inp
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out))
    return nn.Sequential(*layers)


@lru_cache(maxsize=None)
def _module_classes() -> tuple[type, type]:
    """The torch module classes, defined on first use so that importing this module stays cheap."""
    import torch
    import torch.nn as nn

    class EnsembleQ(nn.Module):
        """``n`` Q-networks on ``[s, a]`` evaluated together with batched matrix products.

        Each member has the layer sizes of ``_mlp`` and ``nn.Linear``'s default
        initialisation. ``forward`` returns one ``[batch]`` tensor per member.
        """

        def __init__(self, inp: int, hidden: tuple[int, ...], n: int = 2) -> None:
            super().__init__()
            sizes = [inp, *hidden, 1]
            self.n = n
            self.weights = nn.ParameterList()
            self.biases = nn.ParameterList()
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
                bound = 1.0 / math.sqrt(fan_in)
                self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
                self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

        def all(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            """Q-values of every member, ``[n, batch]``."""
            x = torch.cat([s, a], -1)
            last = len(self.weights) - 1
            h = torch.matmul(x, self.weights[0]) + self.biases[0]  # [B, in] @ [n, in, out] -> [n, B, out]
            for i in range(1, last + 1):
                h = torch.baddbmm(self.biases[i], h.relu(), self.weights[i])
            return h.squeeze(-1)

        def forward(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """One ``[batch]`` tensor of Q-values per member."""
            return tuple(self.all(s, a).unbind(0))

        def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
            """Also accepts the older layout with one ``nn.Sequential`` per member (``q1.0.weight``, ...)."""
            if any(k.startswith("q1.") for k in state_dict):
                state_dict = _stack_sequential_members(state_dict, self.n, len(self.weights))
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    class GaussianPolicy(nn.Module):
        """Gaussian policy with a tanh-squashed mean and a state-independent log std (clamped to [-5, 2])."""

        def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
            super().__init__()
            self.mean = _mlp(obs_dim, act_dim, hidden)
            self.log_std = nn.Parameter(torch.zeros(act_dim))

        def mean_action(self, s: torch.Tensor) -> torch.Tensor:
            """The deterministic action ``tanh(mean(s))``."""
            return torch.tanh(self.mean(s))

        def clamped_log_std(self) -> torch.Tensor:
            """The log std, clamped to [-5, 2]."""
            return self.log_std.clamp(_LOG_STD_MIN, _LOG_STD_MAX)

        def log_prob(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            """``log π(a | s)``, summed over action dimensions."""
            return gaussian_log_prob(self.mean_action(s), self.clamped_log_std(), a)

        def dist(self, s: torch.Tensor) -> torch.distributions.Normal:
            """The action distribution as a ``torch.distributions.Normal`` (per dimension)."""
            return torch.distributions.Normal(self.mean_action(s), self.clamped_log_std().exp(), validate_args=False)

    return EnsembleQ, GaussianPolicy


def _stack_sequential_members(state: Mapping[str, Any], n: int, n_layers: int) -> dict[str, Any]:
    import torch

    out = {}
    for layer in range(n_layers):
        idx = 2 * layer  # Linear, ReLU, Linear, ...
        out[f"weights.{layer}"] = torch.stack([state[f"q{k + 1}.{idx}.weight"].t() for k in range(n)])
        out[f"biases.{layer}"] = torch.stack([state[f"q{k + 1}.{idx}.bias"][None] for k in range(n)])
    return out


def build_policy(obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> Any:
    """A :class:`GaussianPolicy` (``nn.Module``): ``mean_action(s)``, ``log_prob(s, a)``, ``dist(s)``."""
    return _module_classes()[1](obs_dim, act_dim, tuple(hidden))


def build_twin_q(obs_dim: int, act_dim: int, hidden: tuple[int, ...], n: int = 2) -> Any:
    """An ensemble of ``n`` Q-networks on ``[s, a]``; calling it returns ``n`` tensors of shape ``[batch]``."""
    return _module_classes()[0](obs_dim + act_dim, tuple(hidden), n)


def __getattr__(name: str) -> Any:
    """``GaussianPolicy`` and ``EnsembleQ``, the module classes, defined when first asked for."""
    if name == "EnsembleQ":
        return _module_classes()[0]
    if name == "GaussianPolicy":
        return _module_classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_adam(params: list[Any], lr: float, device: Any) -> Any:
    """Adam over ``params``: the fused kernel where torch has one for the device, else ``foreach``."""
    import torch

    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


# ----------------------------------------------------------------------------- shared agent machinery


class OfflineAgent:
    """What the offline learners (:class:`IQL`, :class:`~robo_reward.offline.bc.BC`) share.

    Data handling (:meth:`load_data`, :meth:`sample`), the training loop
    (:meth:`train_steps`, :meth:`fit`), acting (:meth:`act`, and :meth:`predict` with
    Stable-Baselines3's signature so run-folder evaluation and videos work unchanged)
    and checkpoints (:meth:`save`, :meth:`load`). Subclasses set ``config_class``,
    ``algorithm`` and ``loss_names``, build their networks in ``_build`` and do one
    gradient step in ``_step``.
    """

    config_class: type = IQLConfig
    algorithm = "offline"
    loss_names: tuple[str, ...] = ()

    def __init__(self, obs_dim: int, act_dim: int, config: Any = None, device: str = "auto"):
        import torch

        from ..rewards.vlm.model import resolve_device

        self.config = cfg = config if config is not None else self.config_class()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = resolve_device(device)
        self._check_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self._build()
        self.obs_mean = torch.zeros(self.obs_dim, device=self.device)
        self.obs_std = torch.ones(self.obs_dim, device=self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self._data: Any = None
        self._n = 0
        self.steps = 0
        self.action_low: np.ndarray | None = None
        self.action_high: np.ndarray | None = None

    # ------------------------------------------------------------------ hooks for subclasses
    def _check_config(self) -> None:
        cfg = self.config
        if cfg.batch_size <= 0 or cfg.lr <= 0:
            raise ConfigError(f"batch_size and lr must be positive, got {cfg.batch_size} and {cfg.lr}")

    def _build(self) -> None:
        raise NotImplementedError

    def _step(self, s: Any, a: Any, r: Any, s2: Any, term: Any) -> Any:
        """One gradient step on a normalised batch; returns the losses as one detached tensor."""
        raise NotImplementedError

    def _modules(self) -> dict[str, Any]:
        """The modules saved in checkpoints, by name."""
        raise NotImplementedError

    @property
    def policy_module(self) -> Any:
        """The :class:`GaussianPolicy` that acts."""
        return self.policy

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_dataset(cls, dataset: Any, config: Any = None, device: str = "auto") -> "OfflineAgent":
        """An agent sized for ``dataset``, with its data loaded."""
        agent = cls(dataset.observations.shape[1], dataset.actions.shape[1], config, device)
        agent.load_data(dataset)
        return agent

    @property
    def num_timesteps(self) -> int:
        """Gradient steps taken so far (the step counter of a training run)."""
        return self.steps

    # ------------------------------------------------------------------ data
    def set_action_bounds(self, low: Any, high: Any) -> None:
        """Map actions in ``[low, high]`` (the env's action space) to the policy's ``[-1, 1]`` and back.

        Call before :meth:`load_data`. :meth:`act` and :meth:`predict` then return env
        actions. Bounds that already are ``[-1, 1]`` (MetaWorld, most MuJoCo tasks) change nothing.

        Raises:
            ConfigError: the bounds are not finite, have the wrong size or ``low >= high``.
        """
        low = np.broadcast_to(np.asarray(low, np.float64), (self.act_dim,)).copy()
        high = np.broadcast_to(np.asarray(high, np.float64), (self.act_dim,)).copy()
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
            raise ConfigError(f"action bounds must be finite with low < high, got {low} and {high}")
        if np.allclose(low, -1.0) and np.allclose(high, 1.0):
            self.action_low = self.action_high = None
        else:
            self.action_low, self.action_high = low, high

    def _scale_actions(self, a: np.ndarray) -> np.ndarray:
        if self.action_low is None:
            return a
        return (2.0 * (a - self.action_low) / (self.action_high - self.action_low) - 1.0).astype(np.float32)

    def _unscale_actions(self, a: np.ndarray) -> np.ndarray:
        if self.action_low is None:
            return a
        return (self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)).astype(np.float32)

    def load_data(self, dataset: Any, rewards: Any = None) -> None:
        """Move the dataset's transitions to the device, normalised, as one tensor.

        Fits the observation normaliser on the dataset's observations (when
        ``normalize_obs``), except for an agent that has already trained (a resumed
        checkpoint keeps its own statistics). ``rewards`` replaces ``dataset.rewards``.

        Raises:
            ConfigError: empty dataset, or observation/action sizes that do not fit the agent.
        """
        import torch

        cfg = self.config
        obs = np.asarray(dataset.observations, np.float32)
        nobs = np.asarray(dataset.next_observations, np.float32)
        act = np.asarray(dataset.actions, np.float32)
        rew = np.asarray(dataset.rewards if rewards is None else rewards, np.float32).reshape(-1)
        if obs.ndim != 2 or obs.shape[0] == 0:
            raise ConfigError(f"the dataset needs flat observations and at least one transition, got {obs.shape}")
        if obs.shape[1] != self.obs_dim or act.ndim != 2 or act.shape[1] != self.act_dim:
            raise ConfigError(f"the dataset has observations of size {obs.shape[1]} and actions of size "
                              f"{act.shape[1:]}; this agent takes {self.obs_dim} and {self.act_dim}")
        if rew.shape[0] != obs.shape[0]:
            raise ConfigError(f"{rew.shape[0]} rewards for {obs.shape[0]} transitions")
        if not (np.isfinite(obs).all() and np.isfinite(nobs).all() and np.isfinite(act).all()
                and np.isfinite(rew).all()):
            raise ConfigError("the dataset holds NaN or infinite values; clean it before training")
        if cfg.normalize_obs and self.steps == 0:
            mean = obs.mean(0, dtype=np.float64)
            std = np.maximum(obs.std(0, ddof=1, dtype=np.float64) if len(obs) > 1 else np.ones(self.obs_dim), 1e-3)
            self.obs_mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
            self.obs_std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        mean = self.obs_mean.cpu().numpy()
        std = self.obs_std.cpu().numpy()
        table = np.concatenate([
            (obs - mean) / std,
            (nobs - mean) / std,
            np.clip(self._scale_actions(act), -1 + _ACTION_EPS, 1 - _ACTION_EPS),
            (rew * getattr(cfg, "reward_scale", 1.0) + getattr(cfg, "reward_shift", 0.0))[:, None],
            np.asarray(dataset.terminations, np.float32).reshape(-1, 1),
        ], axis=1).astype(np.float32)
        self._data = torch.as_tensor(table, device=self.device)
        self._n = int(table.shape[0])

    def _split(self, rows: Any) -> tuple[Any, Any, Any, Any, Any]:
        o, a = self.obs_dim, self.act_dim
        return (rows[:, :o], rows[:, 2 * o:2 * o + a], rows[:, 2 * o + a], rows[:, o:2 * o], rows[:, 2 * o + a + 1])

    def _sample_rows(self, batch_size: int | None = None) -> Any:
        import torch

        if self._data is None:
            raise ConfigError("no data: call load_data(dataset) first")
        idx = torch.randint(0, self._n, (int(batch_size or self.config.batch_size),), device=self.device,
                            generator=self._gen)
        return self._data.index_select(0, idx)

    def sample(self, batch_size: int | None = None) -> dict[str, Any]:
        """A uniformly sampled batch (tensors on the device; observations already normalised, ``normalized=True``)."""
        s, a, r, s2, d = self._split(self._sample_rows(batch_size))
        return {"obs": s, "act": a, "rew": r, "next_obs": s2, "term": d, "normalized": True}

    def _norm(self, s: Any) -> Any:
        return (s - self.obs_mean) / self.obs_std

    # ------------------------------------------------------------------ training
    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One gradient step on ``batch``; returns the losses as floats.

        ``batch`` is what :meth:`sample` returns (``normalized=True``: used as is), or raw
        transitions (arrays or CPU tensors ``obs``, ``act``, ``rew``, ``next_obs``,
        ``term``) that are normalised, scaled and reward-shifted as :meth:`load_data` does.
        """
        import torch

        t = lambda x: torch.as_tensor(x, dtype=torch.float32, device=self.device)  # noqa: E731
        if batch.get("normalized", False):
            s, a, r, s2 = t(batch["obs"]), t(batch["act"]), t(batch["rew"]), t(batch["next_obs"])
        else:
            cfg = self.config
            act = self._scale_actions(np.asarray(batch["act"], np.float32))
            s, s2 = self._norm(t(batch["obs"])), self._norm(t(batch["next_obs"]))
            a = t(np.clip(act, -1 + _ACTION_EPS, 1 - _ACTION_EPS))
            r = t(batch["rew"]) * getattr(cfg, "reward_scale", 1.0) + getattr(cfg, "reward_shift", 0.0)
        losses = self._step(s, a, r, s2, t(batch["term"]))
        self.steps += 1
        return dict(zip(self.loss_names, (float(v) for v in losses.cpu())))

    def train_steps(self, n: int) -> dict[str, float]:
        """Take ``n`` gradient steps on uniformly sampled batches; the mean of each loss over them."""
        if n <= 0:
            return {}
        total = None
        for _ in range(int(n)):
            losses = self._step(*self._split(self._sample_rows()))
            total = losses if total is None else total + losses
            self.steps += 1
        assert total is not None
        values = (total / n).cpu().tolist()  # the one host-device synchronisation of the chunk
        if not all(math.isfinite(v) for v in values):
            from ..core.errors import RoboRewardError

            raise RoboRewardError(f"{self.algorithm} losses became non-finite at step {self.steps}: "
                                  f"{dict(zip(self.loss_names, values))}; lower the learning rate or scale the rewards")
        return dict(zip(self.loss_names, values))

    def fit(self, dataset: Any | None = None, steps: int = 10_000, log_every: int = 1000,
            callback: Callable[[int, dict[str, float]], None] | None = None, progress: bool = False) -> list[dict]:
        """Train for ``steps`` gradient steps; returns the averaged losses every ``log_every`` steps."""
        if dataset is not None:
            self.load_data(dataset)
        steps, log_every = int(steps), max(1, int(log_every))
        bar: Any = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=self.algorithm.upper())
        history: list[dict] = []
        done = 0
        try:
            while done < steps:
                n = min(log_every, steps - done)
                row = {"step": None, **self.train_steps(n)}
                row["step"] = self.steps
                done += n
                history.append(row)
                if bar is not None:
                    bar.update(n)
                if callback is not None:
                    callback(self.steps, row)
        finally:
            if bar is not None:
                bar.close()
        return history

    # ------------------------------------------------------------------ acting
    def act(self, obs: Any) -> np.ndarray:
        """Deterministic action(s) (the policy mean) for ``obs`` ``[obs_dim]`` or ``[n, obs_dim]``."""
        import torch

        o = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        single = o.ndim == 1
        with torch.no_grad():
            a = self.policy_module.mean_action(self._norm(o.reshape(-1, self.obs_dim)))
        a = self._unscale_actions(a.cpu().numpy())
        return a[0] if single else a

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: the mean action, or a sample clipped to [-1, 1] when not deterministic."""
        import torch

        if deterministic:
            return self.act(observation), None
        o = torch.as_tensor(np.asarray(observation, np.float32), device=self.device)
        single = o.ndim == 1
        with torch.no_grad():
            pol = self.policy_module
            mu = pol.mean_action(self._norm(o.reshape(-1, self.obs_dim)))
            a = (mu + pol.clamped_log_std().exp() * torch.randn_like(mu)).clamp(-1.0, 1.0)
        a = self._unscale_actions(a.cpu().numpy())
        return (a[0] if single else a), None

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint: networks, optimiser, normaliser, sampling generator, step count, config.

        Written through a temporary file, so a kill never leaves half a checkpoint.
        """
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "algorithm": self.algorithm,
            "config": json.dumps(asdict(self.config)), "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            **{k: m.state_dict() for k, m in self._modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "obs_mean": self.obs_mean.cpu(), "obs_std": self.obs_std.cpu(),
            "generator": self._gen.get_state().cpu(),
            "steps": self.steps,
            **({"action_low": torch.as_tensor(self.action_low), "action_high": torch.as_tensor(self.action_high)}
               if self.action_low is not None else {}),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", env: Any = None) -> "OfflineAgent":
        """Read a checkpoint written by :meth:`save` (``env`` is accepted and ignored, as by the other agents)."""
        import torch

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no checkpoint at {path}")
        ck = torch.load(path, map_location="cpu", weights_only=True)
        algo = ck.get("algorithm", "iql")
        if algo != cls.algorithm:
            raise ConfigError(f"{path} is a {algo} checkpoint, not {cls.algorithm}")
        cfg = config_from_mapping(cls.config_class, json.loads(ck["config"]), cls.algorithm)
        agent = cls(ck["obs_dim"], ck["act_dim"], cfg, device)
        for k, m in agent._modules().items():
            m.load_state_dict(ck[k])
        if "optimizer" in ck:
            agent.optimizer.load_state_dict(ck["optimizer"])
        agent.obs_mean, agent.obs_std = ck["obs_mean"].to(agent.device), ck["obs_std"].to(agent.device)
        if "generator" in ck:
            agent._gen.set_state(ck["generator"])
        agent.steps = int(ck["steps"])
        if "action_low" in ck:
            agent.set_action_bounds(ck["action_low"].numpy(), ck["action_high"].numpy())
        return agent


# ----------------------------------------------------------------------------- IQL


class IQL(OfflineAgent):
    """Implicit Q-Learning on an :class:`~robo_reward.offline.dataset.OfflineDataset`.

    Args:
        obs_dim, act_dim: sizes of flat observations and actions (actions in ``[-1, 1]``).
        config: hyperparameters (:class:`IQLConfig`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.

    Use :meth:`fit` (or :meth:`load_data` then :meth:`update` / :meth:`train_steps` in
    your own loop), :meth:`act` to run the policy, :meth:`save`/:meth:`load` for checkpoints.
    Attributes ``q`` (twin Q, returns two ``[batch]`` tensors), ``q_target``, ``v`` and
    ``policy`` are the networks; ``optimizer`` is one Adam over all of them.
    """

    config_class = IQLConfig
    algorithm = "iql"
    loss_names = ("v_loss", "q_loss", "pi_loss", "adv_weight")

    def _check_config(self) -> None:
        super()._check_config()
        cfg = self.config
        if not 0.0 < cfg.expectile < 1.0:
            raise ConfigError(f"expectile must be in (0, 1), got {cfg.expectile}")
        if not 0.0 < cfg.polyak <= 1.0:
            raise ConfigError(f"polyak must be in (0, 1], got {cfg.polyak}")
        if cfg.max_weight <= 0:
            raise ConfigError(f"max_weight must be positive, got {cfg.max_weight}")

    def _build(self) -> None:
        cfg = self.config
        hidden = tuple(cfg.hidden)
        self.q = build_twin_q(self.obs_dim, self.act_dim, hidden).to(self.device)
        self.v = _mlp(self.obs_dim, 1, hidden).to(self.device)
        self.policy = build_policy(self.obs_dim, self.act_dim, hidden).to(self.device)
        self.q_target = build_twin_q(self.obs_dim, self.act_dim, hidden).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        params = [*self.v.parameters(), *self.q.parameters(), *self.policy.parameters()]
        self.optimizer = _make_adam(params, cfg.lr, self.device)
        self._q_params = list(self.q.parameters())
        self._q_target_params = list(self.q_target.parameters())

    def _modules(self) -> dict[str, Any]:
        return {"q": self.q, "q_target": self.q_target, "v": self.v, "policy": self.policy}

    def _step(self, s: Any, a: Any, r: Any, s2: Any, term: Any) -> Any:
        import torch

        cfg = self.config
        with torch.no_grad():
            tq = self.q_target.all(s, a).min(0).values
            next_v = self.v(s2).squeeze(-1)
        # value: expectile regression towards the target Q
        v = self.v(s).squeeze(-1)
        v_loss = expectile_loss(tq - v, cfg.expectile)
        # twin Q: TD towards r + γ (1 − terminated) V(s')
        target = q_target(r, term, next_v, cfg.gamma)
        q_all = self.q.all(s, a)
        q_loss = (q_all - target).pow(2).mean(1).sum()
        # policy: advantage-weighted regression (weights from the target Q and the detached V)
        w = awr_weights(tq - v.detach(), cfg.beta, cfg.max_weight)
        pi_loss = -(w * self.policy.log_prob(s, a)).mean()
        # the three losses touch disjoint parameters: one backward and one Adam step
        self.optimizer.zero_grad(set_to_none=True)
        (v_loss + q_loss + pi_loss).backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._q_target_params, self._q_params, cfg.polyak)
        return torch.stack([v_loss.detach(), q_loss.detach(), pi_loss.detach(), w.mean()])


def evaluate_policy(act: Callable[[np.ndarray], np.ndarray], task: Any, n_episodes: int = 5, seed: int = 1000,
                    max_steps: int | None = None) -> dict[str, float]:
    """Run ``act`` in a task card's env; mean env return and success rate (``info["is_success"]`` at any step)."""
    from ..envs import make_env

    env = make_env(task, seed=seed)
    rets, succ = [], []
    try:
        for ep in range(n_episodes):
            obs, _ = env.reset(seed=seed + ep)
            ret, ok, t = 0.0, False, 0
            while True:
                obs, r, term, trunc, info = env.step(np.asarray(act(obs), np.float32))
                ret += float(r)
                ok = ok or bool(info.get("is_success", False))
                t += 1
                if term or trunc or (max_steps is not None and t >= max_steps):
                    break
            rets.append(ret)
            succ.append(ok)
    finally:
        env.close()
    return {"return": float(np.mean(rets)), "success": float(np.mean(succ)), "episodes": n_episodes}

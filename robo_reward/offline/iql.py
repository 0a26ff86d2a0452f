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
the paper's code); :meth:`IQL.act` returns the mean. Runs on CUDA when present.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import ConfigError


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


def _build_nets(obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
    import torch
    import torch.nn as nn

    class TwinQ(nn.Module):
        """Two Q-networks on ``[s, a]``."""

        def __init__(self) -> None:
            super().__init__()
            self.q1 = _mlp(obs_dim + act_dim, 1, hidden)
            self.q2 = _mlp(obs_dim + act_dim, 1, hidden)

        def forward(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.cat([s, a], -1)
            return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    class Policy(nn.Module):
        """Gaussian policy, tanh-squashed mean, state-independent log std."""

        def __init__(self) -> None:
            super().__init__()
            self.mean = _mlp(obs_dim, act_dim, hidden)
            self.log_std = nn.Parameter(torch.zeros(act_dim))

        def dist(self, s: torch.Tensor) -> torch.distributions.Normal:
            mu = torch.tanh(self.mean(s))
            return torch.distributions.Normal(mu, self.log_std.clamp(-5.0, 2.0).exp())

    value = _mlp(obs_dim, 1, hidden)
    return TwinQ(), value, Policy()


class IQL:
    """Implicit Q-Learning on an :class:`~robo_reward.offline.dataset.OfflineDataset`.

    Args:
        obs_dim, act_dim: sizes of flat observations and actions (actions in ``[-1, 1]``).
        config: hyperparameters (:class:`IQLConfig`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.

    Use :meth:`fit` (or :meth:`load_data` then :meth:`update` in your own loop),
    :meth:`act` to run the policy, :meth:`save`/:meth:`load` for checkpoints.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig | None = None, device: str = "auto"):
        import torch

        from ..rewards.vlm.model import resolve_device

        self.config = cfg = config or IQLConfig()
        if not 0.0 < cfg.expectile < 1.0:
            raise ConfigError(f"expectile must be in (0, 1), got {cfg.expectile}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = resolve_device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            q, v, pi = _build_nets(self.obs_dim, self.act_dim, tuple(cfg.hidden))
        self.q, self.v, self.policy = q.to(self.device), v.to(self.device), pi.to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr)
        self.v_opt = torch.optim.Adam(self.v.parameters(), lr=cfg.lr)
        self.pi_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        self.obs_mean = torch.zeros(self.obs_dim, device=self.device)
        self.obs_std = torch.ones(self.obs_dim, device=self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self._data: dict[str, Any] | None = None
        self.steps = 0

    @classmethod
    def for_dataset(cls, dataset: Any, config: IQLConfig | None = None, device: str = "auto") -> "IQL":
        """An agent sized for ``dataset``, with its data loaded."""
        agent = cls(dataset.observations.shape[1], dataset.actions.shape[1], config, device)
        agent.load_data(dataset)
        return agent

    def load_data(self, dataset: Any) -> None:
        """Move the dataset's transitions to the device (and fit the observation normaliser)."""
        import torch

        cfg = self.config
        t = lambda x: torch.as_tensor(np.asarray(x, np.float32), device=self.device)  # noqa: E731
        obs, nobs = t(dataset.observations), t(dataset.next_observations)
        if cfg.normalize_obs:
            self.obs_mean = obs.mean(0)
            self.obs_std = obs.std(0).clamp(min=1e-3)
        self._data = {
            "obs": obs, "next_obs": nobs, "act": t(np.clip(dataset.actions, -1 + 1e-5, 1 - 1e-5)),
            "rew": t(dataset.rewards) * cfg.reward_scale + cfg.reward_shift,
            "term": t(dataset.terminations),
        }

    def _norm(self, s: Any) -> Any:
        return (s - self.obs_mean) / self.obs_std

    def sample(self, batch_size: int | None = None) -> dict[str, Any]:
        """A uniformly sampled batch of transitions (tensors on the device)."""
        import torch

        if self._data is None:
            raise ConfigError("no data: call load_data(dataset) first")
        n = self._data["rew"].shape[0]
        idx = torch.randint(0, n, (int(batch_size or self.config.batch_size),), device=self.device, generator=self._gen)
        return {k: v[idx] for k, v in self._data.items()}

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One gradient step of V, the twin Q and the policy on ``batch``; returns the losses."""
        import torch

        cfg = self.config
        s, s2 = self._norm(batch["obs"]), self._norm(batch["next_obs"])
        a, r, d = batch["act"], batch["rew"], batch["term"]
        with torch.no_grad():
            tq = torch.min(*self.q_target(s, a))
            next_v = self.v(s2).squeeze(-1)
        # value: expectile regression towards the target Q
        v = self.v(s).squeeze(-1)
        v_loss = expectile_loss(tq - v, cfg.expectile)
        self.v_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_opt.step()
        # twin Q: TD towards r + γ V(s')
        target = q_target(r, d, next_v, cfg.gamma)
        q1, q2 = self.q(s, a)
        q_loss = (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()
        # policy: advantage-weighted regression
        w = awr_weights(tq - v.detach(), cfg.beta, cfg.max_weight)
        logp = self.policy.dist(s).log_prob(a).sum(-1)
        pi_loss = -(w * logp).mean()
        self.pi_opt.zero_grad(set_to_none=True)
        pi_loss.backward()
        self.pi_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.q.parameters(), self.q_target.parameters()):
                tp.lerp_(p, cfg.polyak)
        self.steps += 1
        return {"v_loss": float(v_loss), "q_loss": float(q_loss), "pi_loss": float(pi_loss),
                "adv_weight": float(w.mean())}

    def fit(self, dataset: Any | None = None, steps: int = 10_000, log_every: int = 1000,
            callback: Callable[[int, dict[str, float]], None] | None = None, progress: bool = False) -> list[dict]:
        """Train for ``steps`` gradient steps; returns the averaged losses every ``log_every`` steps."""
        if dataset is not None:
            self.load_data(dataset)
        it: Any = range(int(steps))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="IQL")
        history, acc = [], {}
        for i in it:
            out = self.update(self.sample())
            for k, v in out.items():
                acc[k] = acc.get(k, 0.0) + v
            if (i + 1) % log_every == 0 or i + 1 == steps:
                n = (i % log_every) + 1
                row = {"step": self.steps, **{k: v / n for k, v in acc.items()}}
                history.append(row)
                acc = {}
                if callback is not None:
                    callback(self.steps, row)
        return history

    def act(self, obs: Any) -> np.ndarray:
        """Deterministic action(s) (the policy mean) for ``obs`` ``[obs_dim]`` or ``[n, obs_dim]``."""
        import torch

        o = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        single = o.ndim == 1
        with torch.no_grad():
            a = torch.tanh(self.policy.mean(self._norm(o.reshape(-1, self.obs_dim))))
        a = a.cpu().numpy()
        return a[0] if single else a

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (networks, optimisers, normaliser, config)."""
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({
            "config": json.dumps(asdict(self.config)), "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "v": self.v.state_dict(),
            "policy": self.policy.state_dict(), "obs_mean": self.obs_mean.cpu(), "obs_std": self.obs_std.cpu(),
            "steps": self.steps,
        }, path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "IQL":
        """Read a checkpoint written by :meth:`save`."""
        import torch

        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
        cfg = json.loads(ck["config"])
        cfg["hidden"] = tuple(cfg["hidden"])
        agent = cls(ck["obs_dim"], ck["act_dim"], IQLConfig(**cfg), device)
        for k in ("q", "q_target", "v", "policy"):
            getattr(agent, k).load_state_dict(ck[k])
        agent.obs_mean, agent.obs_std = ck["obs_mean"].to(agent.device), ck["obs_std"].to(agent.device)
        agent.steps = int(ck["steps"])
        return agent


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

"""Behaviour cloning: regress the dataset's actions from its observations.

The policy is the same :class:`~robo_reward.offline.iql.GaussianPolicy` as IQL's (a
tanh-squashed mean and a state-independent log std), trained either by

* ``loss: mse`` — mean squared error between the deterministic action
  ``tanh(μ(s))`` and the dataset action, summed over action dimensions (the log std
  is not trained); or
* ``loss: nll`` — the Gaussian negative log-likelihood ``−log π(a | s)``, which is
  IQL's policy loss with every advantage weight equal to 1.

Rewards are ignored. Everything else (data on the device, the training loop,
:meth:`~robo_reward.offline.iql.OfflineAgent.act`, ``predict``, checkpoints) is shared
with :class:`~robo_reward.offline.iql.IQL` through
:class:`~robo_reward.offline.iql.OfflineAgent`.

Example::

    from robo_reward.offline.bc import BC, BCConfig
    from robo_reward.offline.dataset import load_dataset

    agent = BC.for_dataset(load_dataset("data/reach-mixed.npz"), BCConfig(loss="nll"))
    agent.fit(steps=20_000)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError
from .iql import OfflineAgent, _make_adam, build_policy, gaussian_log_prob

BC_LOSSES = ("mse", "nll")


@dataclass
class BCConfig:
    """Behaviour-cloning hyperparameters.

    Attributes:
        hidden: hidden layer sizes of the policy network.
        lr: Adam learning rate.
        batch_size: transitions per gradient step.
        loss: ``mse`` (squared error of the mean action) or ``nll`` (Gaussian log-likelihood).
        normalize_obs: standardise observations with the dataset's mean and std.
        seed: seeds network initialisation and batch sampling.
    """

    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    batch_size: int = 256
    loss: str = "mse"
    normalize_obs: bool = True
    seed: int = 0


class BC(OfflineAgent):
    """Behaviour cloning on an :class:`~robo_reward.offline.dataset.OfflineDataset`.

    Args:
        obs_dim, act_dim: sizes of flat observations and actions (actions in ``[-1, 1]``).
        config: hyperparameters (:class:`BCConfig`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.

    The same interface as :class:`~robo_reward.offline.iql.IQL`: :meth:`fit`,
    :meth:`train_steps`, :meth:`act`, ``predict``, :meth:`save` / :meth:`load`.
    """

    config_class = BCConfig
    algorithm = "bc"
    loss_names = ("bc_loss", "mse")

    def _check_config(self) -> None:
        super()._check_config()
        if self.config.loss not in BC_LOSSES:
            raise ConfigError(f"BC loss must be one of {', '.join(BC_LOSSES)}, got {self.config.loss!r}")

    def _build(self) -> None:
        self.policy = build_policy(self.obs_dim, self.act_dim, tuple(self.config.hidden)).to(self.device)
        self.optimizer = _make_adam(list(self.policy.parameters()), self.config.lr, self.device)

    def _modules(self) -> dict[str, Any]:
        return {"policy": self.policy}

    def _step(self, s: Any, a: Any, r: Any, s2: Any, term: Any) -> Any:
        import torch

        mean = self.policy.mean_action(s)
        mse = (mean - a).pow(2).sum(-1).mean()
        if self.config.loss == "mse":
            loss = mse
        else:
            loss = -gaussian_log_prob(mean, self.policy.clamped_log_std(), a).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return torch.stack([loss.detach(), mse.detach()])


__all__ = ["BC", "BCConfig", "BC_LOSSES"]

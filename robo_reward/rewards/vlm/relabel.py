"""Accumulation mode for off-policy agents: encode the frames of several steps in one batch.

Per-step mode encodes the ``n_envs`` frames of each step in one forward pass. Agents
that learn from a replay buffer (SAC, TD3, DQN) do not need the reward at the moment of
the step, only before they train on the transition, so the frames of ``accumulate``
steps (``accumulate × n_envs`` frames) can be encoded together — larger batches, far
better use of a GPU. :class:`VLMRelabelReplayBuffer` does that with Stable-Baselines3:

1. the env is wrapped with :class:`~robo_reward.SB3RewardWrapper` and a ``vlm-rm`` reward
   with ``defer=true``; each step it returns a placeholder reward (0 for the VLM part,
   so ``replace`` mode returns 0, ``add`` mode the env reward) and a ticket;
2. the buffer stores the transition with the placeholder and claims the step's frames;
3. once ``accumulate`` steps are pending, it encodes all their frames in one call and
   adds ``plugin_weight × R_vlm`` to their stored rewards (the wrapper's mix is linear);
4. :meth:`VLMRelabelReplayBuffer.sample` never returns a pending transition, so the
   agent only ever trains on relabelled rewards. The delay is at most one batch:
   a transition becomes trainable at most ``accumulate`` env steps after it happened.

What this means for the agent: gradient updates see each transition up to
``accumulate`` steps later than with per-step rewards (with ``accumulate=16`` and a
buffer of a million transitions, immaterial); rewards reported by ``env.step`` (and so
SB3's ``ep_rew_mean``) are the placeholders; the ground truth stays in
``info["env_reward"]``. Not for on-policy agents (PPO, A2C), which use the rewards of a
rollout as they come: use per-step mode there. Not compatible with reward
normalisation by ``VecNormalize`` (the stored reward would be normalised placeholders).

Usage::

    venv = SB3RewardWrapper(DummyVecEnv([...FinalFrameWrapper(env)...]), "vlm-rm:defer=true", task=card)
    model = SAC("MlpPolicy", venv, **relabel_kwargs(venv, accumulate=16))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.errors import ConfigError, MissingDependencyError, RewardComputationError
from .reward import TICKET_TERM, VLMRMReward

try:
    from stable_baselines3.common.buffers import ReplayBuffer
except ImportError:  # pragma: no cover - exercised only without SB3
    ReplayBuffer = object  # type: ignore[assignment,misc]
    _HAVE_SB3 = False
else:
    _HAVE_SB3 = True


class VLMRelabelReplayBuffer(ReplayBuffer):  # type: ignore[misc,valid-type]
    """An SB3 ``ReplayBuffer`` that fills in deferred ``vlm-rm`` rewards, ``accumulate`` steps per encoding.

    Pass it to an off-policy SB3 algorithm as ``replay_buffer_class`` with
    ``replay_buffer_kwargs={"plugin": plugin, "accumulate": 16, "plugin_weight": w}``
    (:func:`relabel_kwargs` finds ``plugin`` and ``plugin_weight`` on the wrapped env).

    Args:
        buffer_size, observation_space, action_space, device, n_envs,
            handle_timeout_termination: as for SB3's ``ReplayBuffer``.
        optimize_memory_usage: must be ``False``.
        plugin: the :class:`~robo_reward.rewards.vlm.reward.VLMRMReward` (with ``defer=True``)
            of the env the agent collects from.
        accumulate: steps whose frames are encoded together (``accumulate × n_envs`` frames).
        plugin_weight: weight of the plugin reward in the wrapper's mix (1 for ``replace``
            and ``add``, ``alpha`` for ``blend``).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: Any,
        action_space: Any,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        plugin: VLMRMReward | None = None,
        accumulate: int = 16,
        plugin_weight: float = 1.0,
    ):
        if not _HAVE_SB3:
            raise MissingDependencyError("stable_baselines3", "sb3", "VLMRelabelReplayBuffer")
        if not isinstance(plugin, VLMRMReward):
            raise ConfigError(
                f"VLMRelabelReplayBuffer needs plugin=<the env's vlm-rm reward>, got {type(plugin).__name__}"
            )
        if not plugin.defer:
            raise ConfigError("the vlm-rm plugin must be made with defer=true for VLMRelabelReplayBuffer")
        if optimize_memory_usage:
            raise ConfigError("VLMRelabelReplayBuffer does not support optimize_memory_usage=True")
        if not isinstance(accumulate, (int, np.integer)) or accumulate < 1:
            raise ConfigError(f"accumulate must be a positive integer, got {accumulate!r}")
        if accumulate >= buffer_size:
            raise ConfigError(f"accumulate ({accumulate}) must be smaller than the buffer size ({buffer_size})")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.plugin = plugin
        self.accumulate = int(accumulate)
        self.plugin_weight = float(plugin_weight)
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (buffer row, frames, env ids)
        self.relabelled_steps = 0
        self.encode_calls = 0

    @property
    def pending_steps(self) -> int:
        """Steps stored with a placeholder reward, waiting for their batch to be encoded."""
        return len(self._pending)

    def add(self, obs, next_obs, action, reward, done, infos) -> None:  # type: ignore[override]
        """Store the transition (placeholder reward), claim its frames, and relabel once ``accumulate`` are pending."""
        ticket = _ticket_of(infos)
        super().add(obs, next_obs, action, reward, done, infos)
        row = (self.pos - 1) % self.buffer_size
        frames, env_ids = self.plugin.claim(ticket)
        self._pending.append((row, frames, env_ids))
        if len(self._pending) >= self.accumulate:
            self.flush()

    def flush(self) -> int:
        """Encode the frames of every pending step in one batch and write their rewards; return how many steps."""
        if not self._pending:
            return 0
        frames = np.concatenate([f for _, f, _ in self._pending])
        scores = self.plugin.score(frames)
        r = scores.reward.astype(np.float32, copy=False)
        self.encode_calls += 1
        k = 0
        for row, f, env_ids in self._pending:
            m = len(f)
            self.rewards[row, env_ids] += np.float32(self.plugin_weight) * r[k : k + m]
            k += m
        done = len(self._pending)
        self._pending.clear()
        self.relabelled_steps += done
        return done

    def sample(self, batch_size: int, env: Any = None):  # type: ignore[override]
        """Sample transitions uniformly, leaving out the pending ones (their rewards are not written yet)."""
        m = len(self._pending)
        if m == 0:
            return super().sample(batch_size, env=env)
        upper = self.buffer_size if self.full else self.pos
        if upper - m <= 0:
            self.flush()
            return super().sample(batch_size, env=env)
        # the pending rows are the m most recent ones, just before self.pos (cyclically)
        if self.full:
            batch_inds = (self.pos + np.random.randint(0, self.buffer_size - m, size=batch_size)) % self.buffer_size
        else:
            batch_inds = np.random.randint(0, self.pos - m, size=batch_size)
        return self._get_samples(batch_inds, env=env)


def _ticket_of(infos: Any) -> int:
    tickets = set()
    for info in infos:
        terms = info.get("reward_terms", {}) if isinstance(info, dict) else {}
        if TICKET_TERM not in terms:
            raise RewardComputationError(
                "VLMRelabelReplayBuffer got a transition without a vlm-rm ticket: wrap the env with "
                "SB3RewardWrapper and a vlm-rm reward made with defer=true (as the top-level reward)"
            )
        tickets.add(int(terms[TICKET_TERM]))
    if len(tickets) != 1:
        raise RewardComputationError(f"the sub-envs of one step carry different vlm-rm tickets {sorted(tickets)}")
    return tickets.pop()


def relabel_kwargs(venv: Any, accumulate: int = 16) -> dict[str, Any]:
    """Keyword arguments for an SB3 off-policy algorithm that turn on accumulation mode.

    Finds the :class:`~robo_reward.SB3RewardWrapper` in ``venv``'s wrapper chain, checks
    that its plugin is ``vlm-rm`` with ``defer=True``, and returns
    ``{"replay_buffer_class": VLMRelabelReplayBuffer, "replay_buffer_kwargs": {...}}``::

        model = SAC("MlpPolicy", venv, **relabel_kwargs(venv, accumulate=16))

    Raises:
        ConfigError: no ``SB3RewardWrapper`` with a deferred ``vlm-rm`` plugin, or reward
            normalisation by ``VecNormalize`` in the chain.
    """
    from ...wrappers import SB3RewardWrapper

    env = venv
    wrapper = None
    while env is not None:
        if type(env).__name__ == "VecNormalize" and getattr(env, "norm_reward", False):
            raise ConfigError("deferred vlm-rm rewards cannot be used with VecNormalize(norm_reward=True)")
        if SB3RewardWrapper is not None and isinstance(env, SB3RewardWrapper):
            wrapper = env
            break
        env = getattr(env, "venv", None)
    if wrapper is None:
        raise ConfigError("relabel_kwargs needs a VecEnv wrapped with SB3RewardWrapper and a vlm-rm reward (defer=true)")
    plugin = wrapper.plugin
    if not isinstance(plugin, VLMRMReward) or not plugin.defer:
        raise ConfigError(f"the env's reward is {plugin!r}; accumulation needs vlm-rm made with defer=true")
    return {
        "replay_buffer_class": VLMRelabelReplayBuffer,
        "replay_buffer_kwargs": {"plugin": plugin, "accumulate": int(accumulate), "plugin_weight": wrapper.mix.plugin_weight},
    }

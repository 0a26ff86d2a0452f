"""Relabel a Stable-Baselines3 replay buffer when the learned reward changes (PEBBLE-style).

Off-policy agents (SAC, TD3) train on stored transitions, so after the reward model
is retrained the stored rewards are stale. PEBBLE (Lee, Smith, Abbeel 2021) relabels
the whole buffer with the new model after every reward update;
:func:`relabel_replay_buffer` does that in place, in batches.

What it computes for each stored transition ``(s, a, s')``:
``plugin_weight · r_new(s, a, s') + env_weight · r_env``, with the weights of the
reward wrapper's mode (:class:`~robo_reward.wrappers.RewardMix`; ``replace`` by
default). Modes that mix in the env reward need the env reward of each transition,
which SB3's buffer does not keep: use :class:`PreferenceReplayBuffer`, which also
stores ``info["env_reward"]``.

SB3's off-policy algorithms store *rescaled* actions (in ``[-1, 1]`` for ``Box``
spaces) while the env — and so the reward wrapper — saw the unscaled ones; the
relabelling maps them back (``actions_scaled=True``, the default) so the model scores
the actions the reward wrapper scored. ``Dict`` observation buffers are not supported.
Do not relabel under reward normalisation (``VecNormalize(norm_reward=True)``): the
buffer would mix normalised and raw rewards.

:class:`PreferenceCallback` runs the whole online loop inside ``model.learn``: every
``every`` steps it cuts segments from the replay buffer, asks the teacher, retrains the
ensemble and relabels the buffer.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...core.errors import ConfigError, MissingDependencyError
from . import SegmentBatch

try:
    from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:  # pragma: no cover - exercised only without SB3
    ReplayBuffer = object  # type: ignore[assignment,misc]
    DictReplayBuffer = None  # type: ignore[assignment,misc]
    BaseCallback = object  # type: ignore[assignment,misc]
    _HAVE_SB3 = False
else:
    _HAVE_SB3 = True

__all__ = [
    "PreferenceReplayBuffer",
    "relabel_replay_buffer",
    "segments_from_replay_buffer",
    "find_reward_mix",
    "PreferenceCallback",
]


def _require_sb3(what: str) -> None:
    if not _HAVE_SB3:
        raise MissingDependencyError("stable_baselines3", "sb3", what)


class PreferenceReplayBuffer(ReplayBuffer):  # type: ignore[misc,valid-type]
    """An SB3 ``ReplayBuffer`` that also keeps the env's own reward of each transition.

    The env reward is read from ``info["env_reward"]`` (the robo_reward wrappers put it
    there); for an unwrapped env the stored reward is the env reward. It lives in
    :attr:`env_rewards` (``float32[buffer_size, n_envs]``) and lets
    :func:`relabel_replay_buffer` handle the ``add``/``blend``/``weighted`` modes, and
    :func:`segments_from_replay_buffer` give synthetic teachers the true reward.
    Pass it to SAC/TD3 as ``replay_buffer_class=PreferenceReplayBuffer``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        _require_sb3("PreferenceReplayBuffer")
        super().__init__(*args, **kwargs)
        self.env_rewards = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

    def add(self, obs: Any, next_obs: Any, action: Any, reward: Any, done: Any, infos: list[dict[str, Any]]) -> None:
        """Store the transition and its env reward."""
        reward_arr = np.asarray(reward, dtype=np.float32).reshape(self.n_envs)
        self.env_rewards[self.pos] = [float(info.get("env_reward", reward_arr[i])) for i, info in enumerate(infos)]
        super().add(obs, next_obs, action, reward, done, infos)


def _check_buffer(buffer: Any) -> None:
    _require_sb3("relabelling a replay buffer")
    if DictReplayBuffer is not None and isinstance(buffer, DictReplayBuffer):
        raise ConfigError("relabelling supports array observations (ReplayBuffer), not DictReplayBuffer")
    if not isinstance(buffer, ReplayBuffer):
        raise ConfigError(f"expected a stable_baselines3 ReplayBuffer, got {type(buffer).__name__}")


def _chronological_rows(buffer: Any) -> np.ndarray:
    """Rows holding valid transitions, oldest first."""
    if buffer.full:
        rows = (buffer.pos + np.arange(buffer.buffer_size)) % buffer.buffer_size
        if buffer.optimize_memory_usage:
            rows = rows[1:]  # the oldest row's observation was overwritten by the newest next observation
        return rows
    return np.arange(buffer.pos)


def _unscale(buffer: Any, actions: np.ndarray, actions_scaled: bool) -> np.ndarray:
    space = buffer.action_space
    if not actions_scaled or not hasattr(space, "low") or not hasattr(space, "high"):
        return actions
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        return actions
    a = actions.reshape(actions.shape[0], *space.shape).astype(np.float64)
    # SB3's BasePolicy.unscale_action: low + 0.5 (a + 1) (high - low)
    return (low + 0.5 * (a + 1.0) * (high - low)).astype(np.float32)


def _next_obs(buffer: Any, rows: np.ndarray) -> np.ndarray:
    if buffer.optimize_memory_usage:
        return buffer.observations[(rows + 1) % buffer.buffer_size]
    return buffer.next_observations[rows]


def _reward_fn(reward: Any) -> Callable[[Any, Any, Any], np.ndarray]:
    if hasattr(reward, "rewards") and hasattr(reward, "compute"):  # a PreferenceReward plugin
        return lambda o, a, n: reward.rewards(o, a, n)[0]
    if hasattr(reward, "predict_members"):  # a RewardEnsemble: its mean
        return lambda o, a, n: reward.predict(o, a, n)
    if hasattr(reward, "infer_latent"):  # a VPL model with its saved latent
        return lambda o, a, n: reward.predict(o, a, n)
    if callable(reward):
        return reward
    raise ConfigError(
        "reward must be a PreferenceReward plugin, a RewardEnsemble, a VPLModel or a callable (obs, action, next_obs) -> float[N]"
    )


def find_reward_mix(venv: Any) -> Any:
    """The :class:`~robo_reward.wrappers.RewardMix` of the first ``SB3RewardWrapper`` in a VecEnv wrapper chain."""
    env = venv
    while env is not None:
        if hasattr(env, "mix") and hasattr(env, "plugin"):
            return env.mix
        env = getattr(env, "venv", None)
    raise ConfigError("no SB3RewardWrapper found in the VecEnv's wrapper chain")


def relabel_replay_buffer(
    buffer: Any,
    reward: Any,
    *,
    mix: Any = None,
    env_rewards: np.ndarray | None = None,
    batch_size: int = 8192,
    actions_scaled: bool = True,
) -> int:
    """Overwrite the rewards of every stored transition with ``reward``'s values, in place.

    Args:
        buffer: an SB3 ``ReplayBuffer`` (e.g. ``model.replay_buffer`` of SAC/TD3).
        reward: a :class:`~robo_reward.rewards.preference.plugin.PreferenceReward`, a
            ``RewardEnsemble`` (its mean), a ``VPLModel``, or ``fn(obs, action, next_obs) -> float[N]``.
        mix: the wrapper's :class:`~robo_reward.wrappers.RewardMix` (``find_reward_mix(venv)``);
            default ``replace`` (the stored reward is the model's).
        env_rewards: ``float[buffer_size, n_envs]`` env rewards for modes that mix them in
            (default: ``buffer.env_rewards`` of a :class:`PreferenceReplayBuffer`).
        batch_size: transitions scored per call of the model.
        actions_scaled: the buffer holds actions rescaled to ``[-1, 1]`` (SB3 SAC/TD3/DDPG do).

    Returns:
        The number of transitions relabelled.

    Raises:
        ConfigError: unsupported buffer, a mode that needs env rewards without them, or a
            reward that is not finite.
    """
    _check_buffer(buffer)
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    fn = _reward_fn(reward)
    pw, ew = (1.0, 0.0) if mix is None else (float(mix.plugin_weight), float(mix.env_weight))
    if ew != 0.0:
        if env_rewards is None:
            env_rewards = getattr(buffer, "env_rewards", None)
        if env_rewards is None:
            raise ConfigError(
                f"the reward mode mixes in the env reward (env_weight={ew}) but the buffer does not store it: "
                "use replay_buffer_class=PreferenceReplayBuffer or pass env_rewards="
            )
        env_rewards = np.asarray(env_rewards, dtype=np.float32)
        if env_rewards.shape != buffer.rewards.shape:
            raise ConfigError(f"env_rewards must have shape {buffer.rewards.shape}, got {env_rewards.shape}")
    rows = _chronological_rows(buffer)
    n_envs = buffer.n_envs
    step = max(1, int(batch_size) // n_envs)
    for start in range(0, len(rows), step):
        r = rows[start : start + step]
        b = len(r)
        obs = buffer.observations[r].reshape(b * n_envs, *buffer.obs_shape)
        nxt = _next_obs(buffer, r).reshape(b * n_envs, *buffer.obs_shape)
        act = _unscale(buffer, buffer.actions[r].reshape(b * n_envs, -1), actions_scaled)
        values = np.asarray(fn(obs, act, nxt), dtype=np.float64).reshape(-1)
        if values.shape[0] != b * n_envs:
            raise ConfigError(f"the reward returned {values.shape[0]} values for {b * n_envs} transitions")
        if not np.all(np.isfinite(values)):
            raise ConfigError("the reward model returned non-finite values while relabelling; it is broken (retrain it)")
        new = pw * values.reshape(b, n_envs)
        if ew != 0.0:
            new = new + ew * env_rewards[r]  # type: ignore[index]
        buffer.rewards[r] = new.astype(buffer.rewards.dtype)
    return int(len(rows) * n_envs)


def segments_from_replay_buffer(
    buffer: Any,
    n: int,
    length: int,
    *,
    seed: int | np.random.Generator | None = None,
    actions_scaled: bool = True,
) -> SegmentBatch:
    """Cut ``n`` random windows of ``length`` consecutive steps of one episode from a replay buffer.

    A window never crosses an episode end (``done``) or the buffer's write position.
    The segments' ``rewards`` are the env rewards of a :class:`PreferenceReplayBuffer`
    (``None`` for a plain buffer: give the teacher a ``reward_fn`` then).

    Raises:
        ConfigError: fewer valid windows than one (windows are drawn with replacement
            only when there are fewer than ``n``).
    """
    _check_buffer(buffer)
    if int(n) < 1 or int(length) < 1:
        raise ConfigError(f"need n >= 1 and length >= 1, got n={n}, length={length}")
    n, length = int(n), int(length)
    rng = np.random.default_rng(seed)
    rows = _chronological_rows(buffer)
    T = len(rows)
    starts: list[tuple[int, int]] = []
    if T >= length:
        for e in range(buffer.n_envs):
            d = buffer.dones[rows, e].astype(bool)
            # a window [k, k+L) is valid when no done occurs in its first L-1 steps
            c = np.concatenate([[0], np.cumsum(d)])
            k = np.arange(T - length + 1)
            ok = (c[k + length - 1] - c[k]) == 0
            starts.extend((e, int(s)) for s in np.flatnonzero(ok))
    if not starts:
        raise ConfigError(f"the replay buffer holds no episode stretch of {length} steps yet ({T} steps stored)")
    pick = rng.choice(len(starts), size=n, replace=len(starts) < n)
    idx = np.array([[rows[s + t] for t in range(length)] for e, s in (starts[i] for i in pick)])
    envs = np.array([starts[i][0] for i in pick])[:, None]
    obs = buffer.observations[idx, envs]
    nxt = _next_obs(buffer, idx.reshape(-1)).reshape(n, length, buffer.n_envs, *buffer.obs_shape)
    nxt = nxt[np.arange(n)[:, None], np.arange(length)[None, :], envs]
    act = buffer.actions[idx, envs]
    act = _unscale(buffer, act.reshape(n * length, -1), actions_scaled).reshape(n, length, -1)
    env_r = getattr(buffer, "env_rewards", None)
    rewards = None if env_r is None else env_r[idx, envs].astype(np.float64)
    return SegmentBatch(obs=obs.astype(np.float32), action=act, next_obs=nxt.astype(np.float32), rewards=rewards)


class PreferenceCallback(BaseCallback):  # type: ignore[misc,valid-type]
    """Online preference learning inside ``model.learn`` (PEBBLE's loop, without its unsupervised pre-training).

    Every ``every`` env steps (after ``start`` steps), while the query budget lasts, at
    the end of a rollout (after its transitions are stored, before the gradient steps):
    cut ``segments`` windows of ``segment_length`` steps from the replay buffer into the
    trainer's pool, run one :meth:`PreferenceTrainer.round` of ``queries`` queries, and
    relabel the buffer with the retrained ensemble. The env must be wrapped with
    ``SB3RewardWrapper(venv, PreferenceReward(model=trainer.model))`` so new transitions
    are scored by the same (updated) ensemble.

    Args:
        trainer: a :class:`~robo_reward.rewards.preference.plugin.PreferenceTrainer`.
        every: env steps between rounds.
        queries: queries per round.
        segment_length: steps per segment.
        segments: windows added to the pool each round.
        start: env steps before the first round.
        max_queries: total query budget (``None``: unlimited).
        relabel: relabel the replay buffer after each round.
        seed: seed of the window draws.
    """

    def __init__(
        self,
        trainer: Any,
        *,
        every: int = 1000,
        queries: int = 20,
        segment_length: int = 25,
        segments: int = 100,
        start: int = 0,
        max_queries: int | None = None,
        relabel: bool = True,
        seed: int | None = 0,
        verbose: int = 0,
    ):
        _require_sb3("PreferenceCallback")
        super().__init__(verbose)
        if min(every, queries, segment_length, segments) < 1 or start < 0:
            raise ConfigError("PreferenceCallback needs every, queries, segment_length, segments >= 1 and start >= 0")
        self.trainer = trainer
        self.every = int(every)
        self.queries_per_round = int(queries)
        self.segment_length = int(segment_length)
        self.segments = int(segments)
        self.start = int(start)
        self.max_queries = max_queries
        self.relabel = bool(relabel)
        self.rng = np.random.default_rng(seed)
        self._next = self.start if self.start > 0 else self.every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        # Runs after the collected transitions are stored and before the gradient steps, so
        # the relabelled buffer is consistent (in _on_step the step's transition is not stored yet).
        if self.num_timesteps < self._next:
            return
        self._next = self.num_timesteps + self.every
        left = None if self.max_queries is None else self.max_queries - self.trainer.queries
        if left is not None and left <= 0:
            return
        buffer = self.model.replay_buffer
        try:
            segs = segments_from_replay_buffer(buffer, self.segments, self.segment_length, seed=self.rng)
        except ConfigError:
            return  # not enough experience yet; try again next time
        self.trainer.add_segments(segs)
        stats = self.trainer.round(self.queries_per_round if left is None else min(left, self.queries_per_round))
        if self.relabel and self.trainer.trained:
            relabel_replay_buffer(buffer, self.trainer.model, mix=find_reward_mix(self.training_env))
        for k, v in stats.items():
            self.logger.record(f"preference/{k}", v)

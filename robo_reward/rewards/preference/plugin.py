"""The ``preference`` reward plugin, and helpers for the preference-learning loop.

* :class:`PreferenceReward` — registered as ``preference``: loads a trained reward model
  (a Bradley–Terry :class:`~robo_reward.rewards.preference.bt.RewardEnsemble`, scored by
  its members' mean, or a :class:`~robo_reward.rewards.preference.vpl.VPLModel` with a
  user's latent) from a file and scores transitions::

      env = rr.RewardWrapper(gym.make("Reacher-v5"), "preference:path=reward.pt")

* :func:`collect_segments` — roll a policy in an env and cut the episodes into segments
  (with the env's reward, and frames for a human teacher).
* :class:`PreferenceTrainer` — the query → label → train loop: draw candidate pairs
  from a pool of segments, pick the most informative (uniform / disagreement /
  entropy), ask a teacher, train the ensemble.

This module is imported by the registry, so it imports ``torch`` only when a model is
loaded or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...core.errors import ConfigError
from ...core.registry import register_reward
from ...core.types import RewardOutput, RewardPlugin, TransitionBatch
from . import PreferencePairs, SegmentBatch

__all__ = ["PreferenceReward", "load_reward_model", "collect_segments", "PreferenceTrainer"]


def load_reward_model(path: str | Path, map_location: str = "cpu") -> Any:
    """Load a reward model saved by ``RewardEnsemble.save`` or ``VPLModel.save`` (the kind is read from the file)."""
    from .bt import RewardEnsemble, _load_state

    state = _load_state(path, map_location)
    kind = state.get("kind")
    if kind == RewardEnsemble.kind:
        return RewardEnsemble.from_state(state)
    if kind == "vpl":
        from .vpl import VPLModel

        return VPLModel.from_state(state)
    raise ConfigError(f"{str(path)!r} holds an unknown kind of reward model {kind!r}")


@register_reward("preference")
class PreferenceReward(RewardPlugin):
    """A reward learned from preferences: the ensemble-mean reward of a saved model.

    Args:
        path: a file written by ``RewardEnsemble.save`` / ``VPLModel.save``.
        model: an in-memory model instead of ``path`` (a ``RewardEnsemble`` or ``VPLModel``);
            the plugin keeps a reference, so training the model in place changes the reward.
        latent: for a VPL model, the user's latent ``z`` (default: the latent saved with it).
        scale: multiply the reward by this.
        device: where the model runs (``cpu`` default).

    Terms: ``preference_std`` (the members' standard deviation) for ensembles of more
    than one member.
    """

    requires = frozenset({"obs", "action", "next_obs"})

    def __init__(
        self,
        path: str | None = None,
        model: Any = None,
        latent: Any = None,
        scale: float = 1.0,
        device: str = "cpu",
    ):
        if (path is None) == (model is None):
            raise ConfigError("the preference reward needs exactly one of path= (a saved model file) or model=")
        if model is None:
            model = load_reward_model(path, map_location=device)  # type: ignore[arg-type]
        else:
            model = model.to(device) if hasattr(model, "to") else model
        if not (hasattr(model, "predict_members") or hasattr(model, "infer_latent")):
            raise ConfigError(f"the preference reward needs a RewardEnsemble or VPLModel, got {type(model).__name__}")
        try:
            self.scale = float(scale)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"scale must be a number, got {scale!r}") from exc
        if not np.isfinite(self.scale):
            raise ConfigError(f"scale must be finite, got {scale!r}")
        self.model = model
        self.path = path
        self._vpl = hasattr(model, "infer_latent")
        if latent is not None and not self._vpl:
            raise ConfigError("latent= applies only to VPL models")
        self.latent = None if latent is None else np.asarray(latent, dtype=np.float32).reshape(-1)
        if self._vpl:
            model._latent(self.latent)  # validates the size now rather than at the first step
        self.requires = frozenset(model.requires)  # type: ignore[misc]
        model.eval()

    def set_model(self, model: Any) -> None:
        """Score with ``model`` from now on (it must read the same inputs)."""
        if frozenset(model.requires) != self.requires:
            raise ConfigError(f"the new model reads {sorted(model.requires)}, the old one {sorted(self.requires)}")
        self.model = model
        self._vpl = hasattr(model, "infer_latent")

    def rewards(self, obs: Any = None, action: Any = None, next_obs: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(reward, member std or None)`` for arrays of transitions (leading dim ``n``)."""
        if self._vpl:
            return self.scale * self.model.predict(obs, action, next_obs, latent=self.latent), None
        members = self.model.predict_members(obs, action, next_obs)
        std = members.std(axis=0) * abs(self.scale) if members.shape[0] > 1 else None
        return self.scale * members.mean(axis=0), std

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Score every transition of the batch with the model."""
        if isinstance(batch.obs, dict) or isinstance(batch.next_obs, dict):
            raise ConfigError("the preference reward reads array observations, not Dict observation spaces")
        reward, std = self.rewards(batch.obs, batch.action, batch.next_obs)
        terms = {} if std is None else {"preference_std": std}
        return RewardOutput(reward.astype(np.float32, copy=False), terms)


# ====================================================================== segments


def _policy_fn(policy: Any, env: Any) -> Callable[[Any], Any]:
    if policy is None:
        return lambda obs: env.action_space.sample()
    if hasattr(policy, "predict"):  # an SB3 model
        return lambda obs: policy.predict(obs, deterministic=False)[0]
    if callable(policy):
        return policy
    raise ConfigError("policy must be None (random actions), an SB3 model or a callable obs -> action")


def collect_segments(
    env: Any,
    policy: Any = None,
    n: int = 64,
    length: int = 25,
    *,
    render: bool = False,
    seed: int | None = None,
    max_steps: int | None = None,
    progress: bool = False,
) -> SegmentBatch:
    """Roll ``policy`` in ``env`` and cut its episodes into ``n`` segments of ``length`` steps.

    Segments are consecutive, non-overlapping windows inside one episode (a window
    never crosses an episode boundary; the leftover steps at the end of an episode are
    dropped). They hold ``obs``, ``action``, ``next_obs`` (the real last observation at
    the end of an episode), the env's reward and, with ``render=True``, frames (rendered
    after each step; the env needs ``render_mode="rgb_array"``).

    Args:
        env: a single Gymnasium env (wrappers included).
        policy: ``None`` (uniformly random actions), an SB3 model (``predict``) or a
            callable ``obs -> action``.
        n: segments to collect.
        length: steps per segment.
        render: also record frames.
        seed: reset seed of the first episode (and of the action space's sampler).
        max_steps: give up (``ConfigError``) after this many env steps; default
            ``max(10_000, 50 · n · length)``.
        progress: show a tqdm bar.
    """
    if int(n) < 1 or int(length) < 1:
        raise ConfigError(f"collect_segments needs n >= 1 and length >= 1, got n={n}, length={length}")
    n, length = int(n), int(length)
    if render and getattr(env, "render_mode", None) != "rgb_array":
        raise ConfigError("render=True needs an env made with render_mode='rgb_array'")
    act = _policy_fn(policy, env)
    limit = max_steps if max_steps is not None else max(10_000, 50 * n * length)
    if seed is not None:
        env.action_space.seed(seed)
    segs: list[dict[str, Any]] = []
    cur: dict[str, list[Any]] = {"obs": [], "action": [], "next_obs": [], "rewards": [], "frames": []}

    def clear() -> None:
        for v in cur.values():
            v.clear()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="segments", unit="seg")
    obs, _ = env.reset(seed=seed)
    steps = 0
    while len(segs) < n:
        if steps >= limit:
            raise ConfigError(
                f"collected only {len(segs)} of {n} segments of {length} steps in {steps} env steps: "
                "are the episodes shorter than the segment length?"
            )
        action = act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        cur["obs"].append(np.array(obs, copy=True))
        cur["action"].append(np.array(action, copy=True))
        cur["next_obs"].append(np.array(next_obs, copy=True))
        cur["rewards"].append(float(reward))
        if render:
            cur["frames"].append(np.asarray(env.render(), dtype=np.uint8))
        if len(cur["obs"]) == length:
            segs.append({k: np.stack(v) if v else None for k, v in cur.items()})
            clear()
            if bar is not None:
                bar.update(1)
        if terminated or truncated:
            clear()
            obs, _ = env.reset()
        else:
            obs = next_obs
    if bar is not None:
        bar.close()
    stack = lambda k: None if segs[0][k] is None else np.stack([s[k] for s in segs])  # noqa: E731
    return SegmentBatch(
        obs=stack("obs").astype(np.float32), action=stack("action"), next_obs=stack("next_obs").astype(np.float32),
        rewards=stack("rewards"), frames=stack("frames"),
    )


# ====================================================================== the loop


class PreferenceTrainer:
    """The preference-learning loop: query → label → train, on a pool of segments.

    Each :meth:`round` draws ``candidate_factor × n`` random pairs from the pool (two
    different segments each), keeps the ``n`` that the sampler ranks most informative
    (``uniform`` on the first round, before the model has been trained, as B-Pref does),
    asks the teacher, appends the answered pairs to :attr:`pairs` and retrains the
    ensemble on all of them.

    Args:
        model: a :class:`~robo_reward.rewards.preference.bt.RewardEnsemble` (trained in place).
        teacher: any :class:`~robo_reward.rewards.preference.teachers.Teacher`.
        sampler: ``uniform``, ``disagreement`` or ``entropy``.
        candidate_factor: candidates drawn per query (B-Pref's ``large_batch``, default 10).
        max_pool: keep at most this many segments (the newest) in the pool.
        train_kwargs: keyword arguments of :func:`~robo_reward.rewards.preference.bt.train_bradley_terry`.
        seed: seed of the candidate draws.

    Attributes:
        pairs: all labelled pairs so far (``None`` before the first answer).
        queries: queries asked (skipped ones included); ``labels`` answers received.
        history: one dict per round (queries, labels, loss, accuracy).
    """

    def __init__(
        self,
        model: Any,
        teacher: Any,
        *,
        sampler: str = "disagreement",
        candidate_factor: int = 10,
        max_pool: int | None = None,
        train_kwargs: dict[str, Any] | None = None,
        seed: int | None = 0,
    ):
        from .bt import QUERY_METHODS, RewardEnsemble
        from .teachers import Teacher

        if not isinstance(model, RewardEnsemble):
            raise ConfigError(f"PreferenceTrainer trains a RewardEnsemble, got {type(model).__name__}")
        if not isinstance(teacher, Teacher):
            raise ConfigError(f"teacher must be a Teacher (BPrefTeacher, HumanTeacher, ...), got {type(teacher).__name__}")
        if sampler not in QUERY_METHODS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(QUERY_METHODS)}")
        if int(candidate_factor) < 1:
            raise ConfigError(f"candidate_factor must be >= 1, got {candidate_factor}")
        if max_pool is not None and int(max_pool) < 2:
            raise ConfigError(f"max_pool must be >= 2, got {max_pool}")
        self.model = model
        self.teacher = teacher
        self.sampler = sampler
        self.candidate_factor = int(candidate_factor)
        self.max_pool = None if max_pool is None else int(max_pool)
        self.train_kwargs = dict(train_kwargs or {})
        self.rng = np.random.default_rng(seed)
        self.pool: SegmentBatch | None = None
        self.pairs: PreferencePairs | None = None
        self.queries = 0
        self.labels = 0
        self.trained = False
        self.history: list[dict[str, Any]] = []

    def add_segments(self, segments: SegmentBatch) -> None:
        """Add segments to the pool (dropping the oldest beyond ``max_pool``)."""
        if not isinstance(segments, SegmentBatch):
            raise ConfigError(f"add_segments takes a SegmentBatch, got {type(segments).__name__}")
        pool = segments if self.pool is None else SegmentBatch.concatenate([self.pool, segments])
        if self.max_pool is not None and len(pool) > self.max_pool:
            pool = pool[slice(len(pool) - self.max_pool, None)]
        self.pool = pool

    def query(self, n: int) -> PreferencePairs | None:
        """Choose ``n`` pairs, ask the teacher, store and return the answered ones (``None`` if all skipped)."""
        from .bt import select_queries

        if self.pool is None or len(self.pool) < 2:
            raise ConfigError("the pool needs at least two segments: call add_segments first")
        n = int(n)
        if n < 1:
            raise ConfigError(f"ask for at least one query, got {n}")
        method = self.sampler if self.trained else "uniform"
        m = n * (self.candidate_factor if method != "uniform" else 1)
        i = self.rng.integers(len(self.pool), size=m)
        j = (i + self.rng.integers(1, len(self.pool), size=m)) % len(self.pool)  # j != i
        seg1, seg2 = self.pool[i], self.pool[j]
        pick = select_queries(self.model if method != "uniform" else None, seg1, seg2, n, method, seed=self.rng)
        answered = self.teacher.query(seg1[pick], seg2[pick])
        self.queries += n
        self.labels += len(answered)
        if len(answered) == 0:
            return None
        self.pairs = answered if self.pairs is None else PreferencePairs.concatenate([self.pairs, answered])
        return answered

    def train(self, **overrides: Any) -> Any:
        """Retrain the ensemble on all labelled pairs; returns the :class:`TrainResult`."""
        from .bt import train_bradley_terry

        if self.pairs is None:
            raise ConfigError("no labelled pairs yet: call query() first")
        result = train_bradley_terry(self.model, self.pairs, **{**self.train_kwargs, **overrides})
        self.trained = True
        return result

    def round(self, n: int) -> dict[str, Any]:
        """One query-and-train round; returns (and records in :attr:`history`) its statistics."""
        answered = self.query(n)
        stats: dict[str, Any] = {"queries": self.queries, "labels": self.labels, "new_labels": 0 if answered is None else len(answered)}
        if self.pairs is not None:
            result = self.train()
            stats.update(loss=result.final_loss, accuracy=float(np.mean(result.accuracy)) if result.accuracy else float("nan"))
        self.history.append(stats)
        return stats

"""Rewards learned from preferences over trajectory segments.

Importing this package is cheap (numpy only): ``torch`` is imported when a reward
model is built or loaded, Stable-Baselines3 when a replay buffer is relabelled, and
the tabular regret model (:mod:`.regret`) only when it is asked for.

* :class:`SegmentBatch`, :class:`PreferencePairs` — segments and labelled pairs (defined here).
* :mod:`.bt` — Bradley–Terry over partial return: :class:`RewardModelConfig`,
  :class:`RewardNet`, :class:`RewardEnsemble`, :func:`train_bradley_terry`,
  :func:`query_scores`, :func:`select_queries`.
* :mod:`.teachers` — synthetic teachers (:class:`BPrefTeacher`, :class:`RegretTeacher`)
  and :class:`HumanTeacher`, which shows two clips and asks on the terminal.
* :mod:`.heron` — HERON hierarchical comparisons (:func:`heron_labels`, :class:`HERONTeacher`).
* :mod:`.vpl` — VPL latent-conditioned rewards for users who disagree (:class:`VPLModel`, :func:`train_vpl`).
* :mod:`.plugin` — the ``preference`` reward plugin (:class:`PreferenceReward`),
  :func:`load_reward_model`, :func:`collect_segments`, :class:`PreferenceTrainer`.
* :mod:`.relabel` — :func:`relabel_replay_buffer`, :class:`PreferenceReplayBuffer`,
  :class:`PreferenceCallback` (SB3 SAC/TD3).
* :mod:`.regret` — the regret preference model (Knox et al. 2022) on tabular MDPs.

Label convention everywhere: ``label = P(σ₁ ≻ σ₂)``, so 1 means the *first* segment
is preferred, 0 the second, 0.5 "equally good".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...core.errors import ConfigError


def _check_leading(name: str, arr: np.ndarray | None, n: int, length: int) -> None:
    if arr is not None and (arr.ndim < 2 or arr.shape[:2] != (n, length)):
        raise ConfigError(f"SegmentBatch.{name} must have leading shape ({n}, {length}) like obs, got {arr.shape}")


@dataclass
class SegmentBatch:
    """``n`` trajectory segments of ``L`` steps each.

    Attributes:
        obs: ``float[n, L, *obs_shape]``, the observations the actions were taken in.
        action: ``float[n, L, *action_shape]`` or ``None``.
        next_obs: ``float[n, L, *obs_shape]`` or ``None``: the observations that followed.
        rewards: ``float[n, L]`` or ``None``: the environment's own reward of each step
            (synthetic teachers read it).
        frames: ``uint8[n, L, H, W, 3]`` or ``None``: rendered frames of each step (the
            human teacher shows them).
    """

    obs: np.ndarray
    action: np.ndarray | None = None
    next_obs: np.ndarray | None = None
    rewards: np.ndarray | None = None
    frames: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.obs = np.asarray(self.obs)
        if self.obs.ndim < 2:
            raise ConfigError(f"SegmentBatch.obs must be [n, L, ...], got shape {self.obs.shape}")
        n, length = self.obs.shape[:2]
        for name in ("action", "next_obs", "rewards", "frames"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                setattr(self, name, value)
                _check_leading(name, value, n, length)
        if self.rewards is not None and self.rewards.ndim != 2:
            raise ConfigError(f"SegmentBatch.rewards must be [n, L], got shape {self.rewards.shape}")

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def length(self) -> int:
        """Steps per segment, ``L``."""
        return int(self.obs.shape[1])

    def __getitem__(self, index: Any) -> "SegmentBatch":
        """The segments ``index`` (an int array, a boolean mask or a slice) as a new batch."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        take = lambda x: None if x is None else x[index]  # noqa: E731
        return SegmentBatch(take(self.obs), take(self.action), take(self.next_obs), take(self.rewards), take(self.frames))

    @staticmethod
    def concatenate(batches: Sequence["SegmentBatch"]) -> "SegmentBatch":
        """Stack batches of segments of the same length (a field is kept only if every batch has it)."""
        batches = [b for b in batches if b is not None]
        if not batches:
            raise ConfigError("SegmentBatch.concatenate needs at least one batch")
        if len({b.length for b in batches}) != 1:
            raise ConfigError(f"cannot concatenate segments of different lengths {sorted({b.length for b in batches})}")

        def cat(name: str) -> np.ndarray | None:
            values = [getattr(b, name) for b in batches]
            return None if any(v is None for v in values) else np.concatenate(values)

        return SegmentBatch(cat("obs"), cat("action"), cat("next_obs"), cat("rewards"), cat("frames"))


@dataclass
class PreferencePairs:
    """Labelled pairs of segments: ``labels[i] = P(seg1[i] ≻ seg2[i])`` (1, 0, or 0.5 for "equal").

    Attributes:
        seg1: the first segment of each pair.
        seg2: the second segment of each pair (same length ``L`` as ``seg1``).
        labels: ``float[n]`` in ``[0, 1]``.
    """

    seg1: SegmentBatch
    seg2: SegmentBatch
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.float64).reshape(-1)
        if len(self.seg1) != len(self.seg2) or len(self.labels) != len(self.seg1):
            raise ConfigError(
                f"PreferencePairs needs one label per pair: {len(self.seg1)} first segments, "
                f"{len(self.seg2)} second segments, {len(self.labels)} labels"
            )
        if self.seg1.length != self.seg2.length:
            raise ConfigError(f"paired segments must have the same length ({self.seg1.length} != {self.seg2.length})")
        if not np.all((self.labels >= 0) & (self.labels <= 1)):
            raise ConfigError("preference labels must lie in [0, 1] (drop skipped pairs, whose label is NaN, first)")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: Any) -> "PreferencePairs":
        """The pairs ``index`` as a new set."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return PreferencePairs(self.seg1[index], self.seg2[index], self.labels[index])

    @staticmethod
    def concatenate(sets: Sequence["PreferencePairs | None"]) -> "PreferencePairs":
        """Join labelled pair sets (``None`` entries are ignored)."""
        sets = [s for s in sets if s is not None and len(s)]
        if not sets:
            raise ConfigError("PreferencePairs.concatenate needs at least one non-empty set")
        return PreferencePairs(
            SegmentBatch.concatenate([s.seg1 for s in sets]),
            SegmentBatch.concatenate([s.seg2 for s in sets]),
            np.concatenate([s.labels for s in sets]),
        )

    @staticmethod
    def from_labels(seg1: SegmentBatch, seg2: SegmentBatch, labels: np.ndarray) -> "PreferencePairs":
        """Keep the pairs whose label is not NaN (NaN marks a skipped query)."""
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        keep = ~np.isnan(labels)
        return PreferencePairs(seg1[keep], seg2[keep], labels[keep])


_LAZY = {
    # bt
    "RewardModelConfig": "bt",
    "RewardNet": "bt",
    "RewardEnsemble": "bt",
    "TrainResult": "bt",
    "train_bradley_terry": "bt",
    "QUERY_METHODS": "bt",
    "query_scores": "bt",
    "select_queries": "bt",
    "bradley_terry_probability": "bt",
    "torch_threads": "bt",
    # teachers
    "Teacher": "teachers",
    "BPrefTeacher": "teachers",
    "BPREF_PRESETS": "teachers",
    "bpref_margin": "teachers",
    "RegretTeacher": "teachers",
    "HumanTeacher": "teachers",
    "write_clip": "teachers",
    "segment_step_rewards": "teachers",
    # heron
    "heron_labels": "heron",
    "heron_margins": "heron",
    "heron_decisions": "heron",
    "HERONTeacher": "heron",
    # vpl
    "VPLConfig": "vpl",
    "VPLModel": "vpl",
    "train_vpl": "vpl",
    "vpl_loss": "vpl",
    "VPLTrainResult": "vpl",
    # plugin
    "PreferenceReward": "plugin",
    "load_reward_model": "plugin",
    "collect_segments": "plugin",
    "PreferenceTrainer": "plugin",
    # relabel
    "relabel_replay_buffer": "relabel",
    "PreferenceReplayBuffer": "relabel",
    "PreferenceCallback": "relabel",
    "segments_from_replay_buffer": "relabel",
    "find_reward_mix": "relabel",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SegmentBatch", "PreferencePairs", *sorted(_LAZY)]

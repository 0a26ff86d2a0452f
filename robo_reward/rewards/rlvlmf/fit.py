"""The RL-VLM-F loop on a fixed set of frames: sample pairs, label them, drop the unsure ones, fit the reward.

This is the offline form (Venkataraman et al. 2024, "Real-World Offline Reinforcement
Learning from Vision Language Model Feedback"): the frames come from a dataset, pairs
are drawn from it uniformly, a labeller compares them, and the learned reward relabels
the dataset for offline RL (:func:`relabel_dataset`, then e.g. IQL)::

    from robo_reward.offline import load_dataset
    from robo_reward.rewards.rlvlmf import ClipLabeller, EncoderSpec, fit_rlvlmf, relabel_dataset

    ds = load_dataset("data/drawer.npz")                       # collected with frames=True
    labeller = ClipLabeller(task="metaworld-drawer-open-v3")
    result = fit_rlvlmf(ds.frames, labeller, n_queries=1000, episode_ids=ds.episode_ids,
                        encoder=EncoderSpec("clip"))
    result.model.save("runs/drawer-rlvlmf.pt")
    ds2 = relabel_dataset(ds, result.model)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ConfigError
from .labellers import PairLabeller
from .model import EncoderSpec, ImageRewardModel
from .prompts import FIRST, SECOND, UNSURE

__all__ = [
    "sample_pairs",
    "preferences_from_labels",
    "pair_accuracy",
    "RLVLMFResult",
    "fit_rlvlmf",
    "relabel_dataset",
]


def sample_pairs(
    n_frames: int,
    n: int,
    *,
    episode_ids: Any = None,
    same_episode: bool = False,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Draw ``n`` pairs of distinct frame indices uniformly, ``int64[n, 2]``.

    Args:
        n_frames: size of the frame pool.
        n: pairs to draw.
        episode_ids: ``int[n_frames]`` episode of each frame (needed for ``same_episode``).
        same_episode: draw both frames of a pair from one episode (episodes weighted by
            their number of distinct pairs).
        seed: randomness.
    """
    n_frames, n = int(n_frames), int(n)
    if n < 0:
        raise ConfigError(f"cannot draw {n} pairs")
    if n_frames < 2:
        raise ConfigError(f"pairs need at least two frames, the pool has {n_frames}")
    rng = np.random.default_rng(seed)
    if not same_episode:
        a = rng.integers(0, n_frames, size=n)
        b = rng.integers(0, n_frames - 1, size=n)
        b = b + (b >= a)
        return np.stack([a, b], axis=1).astype(np.int64)
    if episode_ids is None:
        raise ConfigError("same_episode=True needs episode_ids")
    ep = np.asarray(episode_ids).reshape(-1)
    if len(ep) != n_frames:
        raise ConfigError(f"episode_ids has {len(ep)} entries for {n_frames} frames")
    groups = [np.flatnonzero(ep == e) for e in np.unique(ep)]
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        raise ConfigError("no episode has two frames to compare")
    w = np.array([len(g) * (len(g) - 1) for g in groups], np.float64)
    which = rng.choice(len(groups), size=n, p=w / w.sum())
    out = np.empty((n, 2), np.int64)
    for row, gi in enumerate(which):
        out[row] = rng.choice(groups[gi], size=2, replace=False)
    return out


def preferences_from_labels(labels: Any) -> np.ndarray:
    """RL-VLM-F labels (0, 1, -1) → ``P(first ≻ second)`` (1.0, 0.0, NaN for unsure)."""
    lab = np.asarray(labels).reshape(-1)
    bad = ~np.isin(lab, (FIRST, SECOND, UNSURE))
    if bad.any():
        raise ConfigError(f"labels must be 0, 1 or -1, got {np.unique(lab[bad]).tolist()}")
    out = np.full(lab.shape, np.nan)
    out[lab == FIRST] = 1.0
    out[lab == SECOND] = 0.0
    return out


def pair_accuracy(model: ImageRewardModel, frames: Any, pairs: Any, labels: Any) -> float:
    """Fraction of the decided pairs (label 0 or 1) whose preferred frame the model scores higher (NaN if none)."""
    pr = np.asarray(pairs, np.int64)
    lab = np.asarray(labels).reshape(-1)
    keep = lab != UNSURE
    if not keep.any():
        return float("nan")
    pr, lab = pr[keep], lab[keep]
    used, inv = np.unique(pr, return_inverse=True)
    inv = inv.reshape(pr.shape)
    r = model.predict(np.asarray(frames)[used], normalized=False)
    first_higher = r[inv[:, 0]] > r[inv[:, 1]]
    return float(np.mean(first_higher == (lab == FIRST)))


@dataclass
class RLVLMFResult:
    """What :func:`fit_rlvlmf` returns.

    Attributes:
        model: the trained :class:`~robo_reward.rewards.rlvlmf.model.ImageRewardModel`.
        pairs: every queried pair, ``int64[M, 2]`` (indices into the frames).
        labels: their labels, ``int8[M]`` (0, 1, -1).
        train: the training report (losses per epoch, per-member accuracy on the kept pairs).
        stats: the labeller's counts (pairs, cached, labelled, unsure, unreadable).
    """

    model: ImageRewardModel
    pairs: np.ndarray
    labels: np.ndarray
    train: Any = None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        """Pairs used for training (not unsure)."""
        return int(np.sum(self.labels != UNSURE))

    def summary(self) -> dict[str, Any]:
        """Counts and training figures as a JSON-able dict."""
        return {
            "queries": int(len(self.labels)), "kept": self.kept,
            "unsure": int(np.sum(self.labels == UNSURE)),
            "first_preferred": int(np.sum(self.labels == FIRST)),
            "second_preferred": int(np.sum(self.labels == SECOND)),
            "labeller": dict(self.stats),
            "final_loss": None if self.train is None else float(self.train.final_loss),
            "train_accuracy": None if self.train is None else [float(a) for a in self.train.accuracy],
        }


def fit_rlvlmf(
    frames: Any,
    labeller: PairLabeller,
    n_queries: int = 500,
    *,
    pairs: Any = None,
    episode_ids: Any = None,
    same_episode: bool = False,
    encoder: EncoderSpec | dict[str, Any] | str | None = None,
    model: ImageRewardModel | None = None,
    ensemble_size: int = 3,
    hidden: tuple[int, ...] = (256, 256),
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    num_threads: int | None = 1,
) -> RLVLMFResult:
    """Label pairs of frames with ``labeller`` and fit an image reward model by Bradley–Terry.

    Args:
        frames: the frame pool, ``uint8[N, H, W, 3]`` (e.g. ``dataset.frames``).
        labeller: a :class:`~robo_reward.rewards.rlvlmf.labellers.PairLabeller`
            (:class:`ClipLabeller`, :class:`LLMLabeller`, :class:`ScoreLabeller`).
        n_queries: pairs to draw (ignored when ``pairs`` is given).
        pairs: the pairs to label, ``int[M, 2]`` (default: :func:`sample_pairs`).
        episode_ids, same_episode: see :func:`sample_pairs`.
        encoder: the reward model's encoder (default ``clip``); ignored when ``model`` is given.
        model: an existing model to train further.
        ensemble_size, hidden: architecture of a new model.
        epochs, batch_size, lr, weight_decay: training.
        seed: seeds the pair draws, the initial weights and the shuffling.
        device: where the model runs.
        progress: progress bars for labelling and training.
        num_threads: torch threads while training.

    Unsure labels (``-1``) are dropped before training.

    Raises:
        ConfigError: bad frames/pairs, or every label was unsure.
    """
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8[N, H, W, 3], got {arr.dtype}{list(arr.shape)}")
    if pairs is None:
        pairs = sample_pairs(len(arr), n_queries, episode_ids=episode_ids, same_episode=same_episode, seed=seed)
    pr = np.asarray(pairs, np.int64)
    labels = labeller.label_pairs(arr, pr, progress=progress)
    prefs = preferences_from_labels(labels)
    keep = ~np.isnan(prefs)
    if not keep.any():
        raise ConfigError(
            f"all {len(labels)} labels were unsure: nothing to train on. Lower the labeller's margin, "
            "check the goal prompt, or draw more pairs"
        )
    if model is None:
        model = ImageRewardModel(encoder, ensemble_size=ensemble_size, hidden=hidden, seed=seed, device=device)
    train = model.fit(arr, pr[keep], prefs[keep], epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, progress=progress, num_threads=num_threads)
    model.meta.update({"labeller": labeller.kind, "queries": int(len(labels)), "kept": int(keep.sum())})
    return RLVLMFResult(model, pr, labels, train, labeller.stats.as_dict())


def relabel_dataset(dataset: Any, model: ImageRewardModel | str | Path, normalize: bool = True, batch_size: int = 256,
                    progress: bool = False) -> Any:
    """A copy of an :class:`~robo_reward.offline.OfflineDataset` (collected with frames) with RL-VLM-F rewards.

    ``model`` is a trained :class:`ImageRewardModel` or the path of a saved one. The
    env's own reward stays in ``env_rewards``; the members' spread is stored as the
    term ``infos["term/rlvlmf_std"]``.
    """
    from ...offline.dataset import relabel
    from .plugin import RLVLMFReward

    if isinstance(model, (str, Path)):
        plugin = RLVLMFReward(path=str(model), normalize=normalize, batch_size=batch_size)
    else:
        plugin = RLVLMFReward(model=model, normalize=normalize, batch_size=batch_size)
    return relabel(dataset, plugin, batch_size=batch_size, progress=progress)

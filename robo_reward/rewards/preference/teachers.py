"""Teachers that label pairs of segments: B-Pref's synthetic teachers, a regret teacher, a human.

Every teacher answers :meth:`Teacher.label` with ``float[n]``: ``P(σ₁ ≻ σ₂)`` as 1
(first preferred), 0 (second), 0.5 (equally good) or NaN (the query was skipped).
:meth:`Teacher.query` drops the skipped pairs and returns
:class:`~robo_reward.rewards.preference.PreferencePairs`.

**B-Pref teachers** (Lee, Smith, Dragan, Abbeel 2021, "B-Pref: Benchmarking
Preference-Based Reinforcement Learning", NeurIPS Datasets & Benchmarks,
arXiv:2111.03026). With the ground-truth step reward ``r`` and segments of ``H`` steps:

* *stochastic, myopic* preferences (the paper's Eq. 3)::

      P(σ₁ ≻ σ₂; β, γ) = exp(β Σ_t γ^{H−t} r(σ₁_t)) / (exp(β Σ_t γ^{H−t} r(σ₁_t)) + exp(β Σ_t γ^{H−t} r(σ₂_t)))

  — ``β`` is the rationality (``β → ∞``: always the higher return, deterministic;
  ``β = 0``: coin flips) and ``γ ≤ 1`` the myopia (the *last* step of a segment
  has weight 1, the first ``γ^{H−1}``: a myopic teacher remembers the end best);
* *skip*: a query is skipped when neither segment is good,
  ``max(Σ_t r(σ₁_t), Σ_t r(σ₂_t)) < δ_skip``;
* *equal*: segments are equally preferable (label 0.5) when
  ``|Σ_t r(σ₁_t) − Σ_t r(σ₂_t)| < δ_equal``;
* *mistake*: with probability ``ε`` the label of a decided pair is flipped.

The order is that of the B-Pref code (``get_label``): skip, equal (on undiscounted
sums), the myopic/stochastic choice, mistakes, then equal pairs set to 0.5. B-Pref
sets the thresholds relative to the agent's recent returns:
``δ = ε_{skip|equal} · mean episode return · H / episode length``
(:func:`bpref_margin` computes the factor), and its six named teachers are in
:data:`BPREF_PRESETS`. Two deliberate differences: ``β = math.inf`` (not ``β ≤ 0``)
means perfectly rational, and skipping is off when ``skip_threshold is None`` (B-Pref
turns it off when its threshold is ≤ 0, which also silently disables it on tasks with
negative returns).

**Regret teacher**: labels from the regret preference model of Knox et al. 2022 on a
tabular MDP (:mod:`robo_reward.rewards.preference.regret`).

**Human teacher**: writes the two clips of each pair as GIF or MP4 files, prints their
paths and asks on the terminal which is better.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...core.errors import ConfigError, MissingDependencyError
from . import PreferencePairs, SegmentBatch

__all__ = [
    "Teacher",
    "BPrefTeacher",
    "BPREF_PRESETS",
    "bpref_margin",
    "RegretTeacher",
    "HumanTeacher",
    "write_clip",
    "segment_step_rewards",
]


class Teacher(abc.ABC):
    """Labels pairs of segments. Subclasses implement :meth:`label`."""

    @abc.abstractmethod
    def label(self, seg1: Any, seg2: Any) -> np.ndarray:
        """``float[n]``: 1 first preferred, 0 second, 0.5 equal, NaN skipped."""

    def query(self, seg1: SegmentBatch, seg2: SegmentBatch) -> PreferencePairs:
        """Label the pairs and keep the answered ones."""
        if len(seg1) != len(seg2):
            raise ConfigError(f"seg1 and seg2 must hold the same number of segments ({len(seg1)} != {len(seg2)})")
        return PreferencePairs.from_labels(seg1, seg2, self.label(seg1, seg2))


def segment_step_rewards(seg: SegmentBatch, reward_fn: Callable[..., Any] | None = None) -> np.ndarray:
    """Ground-truth reward of every step, ``float[n, L]``.

    From ``reward_fn(obs, action, next_obs)`` (called once on all ``n·L`` steps,
    flattened to a leading dimension, returning ``float[n·L]``) or else from
    ``seg.rewards`` (the env's reward recorded with the segment).
    """
    n, length = len(seg), seg.length
    if reward_fn is None:
        if seg.rewards is None:
            raise ConfigError(
                "the teacher needs the true reward of each step: collect segments with their env rewards "
                "(collect_segments does) or give the teacher a reward_fn(obs, action, next_obs)"
            )
        return np.asarray(seg.rewards, dtype=np.float64)

    def flat(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x.reshape(n * length, *x.shape[2:])

    r = np.asarray(reward_fn(flat(seg.obs), flat(seg.action), flat(seg.next_obs)), dtype=np.float64)
    if r.size != n * length:
        raise ConfigError(f"reward_fn returned {r.size} values for {n * length} steps; return one reward per step")
    r = r.reshape(n, length)
    if not np.all(np.isfinite(r)):
        raise ConfigError("reward_fn returned non-finite rewards")
    return r


#: B-Pref's named teachers (the paper's Table 1 / the B-Pref README): keyword arguments of
#: :class:`BPrefTeacher`, with ``eps_skip``/``eps_equal`` multiplying the margin of :func:`bpref_margin`.
BPREF_PRESETS: dict[str, dict[str, float]] = {
    "oracle": {"beta": math.inf, "gamma": 1.0, "eps_mistake": 0.0, "eps_skip": 0.0, "eps_equal": 0.0},
    "stoc": {"beta": 1.0, "gamma": 1.0, "eps_mistake": 0.0, "eps_skip": 0.0, "eps_equal": 0.0},
    "mistake": {"beta": math.inf, "gamma": 1.0, "eps_mistake": 0.1, "eps_skip": 0.0, "eps_equal": 0.0},
    "skip": {"beta": math.inf, "gamma": 1.0, "eps_mistake": 0.0, "eps_skip": 0.1, "eps_equal": 0.0},
    "equal": {"beta": math.inf, "gamma": 1.0, "eps_mistake": 0.0, "eps_skip": 0.0, "eps_equal": 0.1},
    "myopic": {"beta": math.inf, "gamma": 0.9, "eps_mistake": 0.0, "eps_skip": 0.0, "eps_equal": 0.0},
}


def bpref_margin(mean_episode_return: float, segment_length: int, episode_length: int) -> float:
    """B-Pref's threshold scale: the mean episode return scaled to one segment, ``R̄ · H / T``."""
    if segment_length < 1 or episode_length < 1:
        raise ConfigError("bpref_margin needs segment_length >= 1 and episode_length >= 1")
    return float(mean_episode_return) * segment_length / episode_length


class BPrefTeacher(Teacher):
    """B-Pref's simulated teacher: rationality ``β``, myopia ``γ``, mistakes ``ε``, skip and equal thresholds.

    Args:
        beta: rationality, ``>= 0``; ``math.inf`` (default) is perfectly rational.
        gamma: myopia discount in ``(0, 1]``; step ``t`` of ``H`` (0-based) weighs ``γ^{H−1−t}``.
        eps_mistake: probability of flipping a decided label.
        skip_threshold: ``δ_skip``; ``None`` (default) never skips.
        equal_threshold: ``δ_equal``; 0 (default) never says "equal" (except exact ties
            of a perfectly rational teacher, which are 0.5).
        reward_fn: ``fn(obs, action, next_obs) -> float[N]`` on flattened steps; default
            the env rewards stored in the segments.
        seed: seed (or generator) of the teacher's randomness.
    """

    def __init__(
        self,
        beta: float = math.inf,
        gamma: float = 1.0,
        eps_mistake: float = 0.0,
        skip_threshold: float | None = None,
        equal_threshold: float = 0.0,
        reward_fn: Callable[..., Any] | None = None,
        seed: int | np.random.Generator | None = None,
    ):
        beta = float(beta)
        if math.isnan(beta) or beta < 0:
            raise ConfigError(f"beta must be >= 0 (math.inf for a perfectly rational teacher), got {beta}")
        if not 0.0 < float(gamma) <= 1.0:
            raise ConfigError(f"gamma must lie in (0, 1], got {gamma}")
        if not 0.0 <= float(eps_mistake) <= 1.0:
            raise ConfigError(f"eps_mistake must lie in [0, 1], got {eps_mistake}")
        if skip_threshold is not None and not math.isfinite(float(skip_threshold)):
            raise ConfigError(f"skip_threshold must be finite or None, got {skip_threshold}")
        if not (math.isfinite(float(equal_threshold)) and float(equal_threshold) >= 0):
            raise ConfigError(f"equal_threshold must be finite and >= 0, got {equal_threshold}")
        if reward_fn is not None and not callable(reward_fn):
            raise ConfigError("reward_fn must be callable: fn(obs, action, next_obs) -> float[N]")
        self.beta = beta
        self.gamma = float(gamma)
        self.eps_mistake = float(eps_mistake)
        self.skip_threshold = None if skip_threshold is None else float(skip_threshold)
        self.equal_threshold = float(equal_threshold)
        self.reward_fn = reward_fn
        self.rng = np.random.default_rng(seed)

    @classmethod
    def preset(
        cls, name: str, margin: float | None = None, *, reward_fn: Callable[..., Any] | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> "BPrefTeacher":
        """One of B-Pref's teachers (:data:`BPREF_PRESETS`); ``skip``/``equal`` need ``margin`` (:func:`bpref_margin`)."""
        if name not in BPREF_PRESETS:
            raise ConfigError(f"unknown B-Pref teacher {name!r}; choose one of {', '.join(BPREF_PRESETS)}")
        p = BPREF_PRESETS[name]
        needs_margin = p["eps_skip"] > 0 or p["eps_equal"] > 0
        if needs_margin and margin is None:
            raise ConfigError(f"the {name!r} teacher needs margin= (bpref_margin(mean_return, segment_len, episode_len))")
        return cls(
            beta=p["beta"],
            gamma=p["gamma"],
            eps_mistake=p["eps_mistake"],
            skip_threshold=p["eps_skip"] * margin if p["eps_skip"] > 0 else None,  # type: ignore[operator]
            equal_threshold=p["eps_equal"] * margin if p["eps_equal"] > 0 else 0.0,  # type: ignore[operator]
            reward_fn=reward_fn,
            seed=seed,
        )

    def myopic_weights(self, length: int) -> np.ndarray:
        """``γ^{H−1−t}`` for ``t = 0 … H−1`` (the last step weighs 1)."""
        return self.gamma ** np.arange(length - 1, -1, -1, dtype=np.float64)

    def label(self, seg1: SegmentBatch, seg2: SegmentBatch) -> np.ndarray:
        """B-Pref labels for each pair (1, 0, 0.5 or NaN for skipped)."""
        if len(seg1) != len(seg2) or seg1.length != seg2.length:
            raise ConfigError("seg1 and seg2 must hold the same number of segments of the same length")
        r1 = segment_step_rewards(seg1, self.reward_fn)
        r2 = segment_step_rewards(seg2, self.reward_fn)
        n = r1.shape[0]
        sum1, sum2 = r1.sum(1), r2.sum(1)
        skip = np.zeros(n, dtype=bool)
        if self.skip_threshold is not None:
            skip = np.maximum(sum1, sum2) < self.skip_threshold
        equal = np.abs(sum1 - sum2) < self.equal_threshold
        w = self.myopic_weights(r1.shape[1])
        g1, g2 = r1 @ w, r2 @ w
        if math.isinf(self.beta):
            labels = np.where(g1 > g2, 1.0, np.where(g1 < g2, 0.0, 0.5))
        else:
            p = 0.5 * (1.0 + np.tanh(0.5 * self.beta * (g1 - g2)))
            labels = (self.rng.random(n) < p).astype(np.float64)
        flip = (self.rng.random(n) < self.eps_mistake) & (labels != 0.5)
        labels[flip] = 1.0 - labels[flip]
        labels[equal] = 0.5
        labels[skip] = np.nan
        return labels


class RegretTeacher(Teacher):
    """Labels from the regret preference model (Knox et al. 2022) on a tabular MDP.

    ``P(σ₁ ≻ σ₂) = logistic((regret(σ₂) − regret(σ₁)) / T)`` with
    ``regret(σ) = −Σ_t γ^t A*(s_t, a_t)`` (exact, by value iteration; see
    :mod:`robo_reward.rewards.preference.regret`). ``model="partial_return"`` gives the
    partial-return teacher on the same segments for comparison.

    Args:
        mdp: a :class:`robo_reward.tabular.TabularMDP`.
        reward: the true reward (default ``mdp.reward``).
        model: ``"regret"`` or ``"partial_return"``.
        temperature: ``T > 0``.
        noiseless: always prefer the lower-regret segment (0.5 on exact ties).
        eps_mistake: probability of flipping a decided label afterwards (as B-Pref).
        seed: seed of the sampling.

    Segments are :class:`robo_reward.tabular.Segments`, or :class:`SegmentBatch` whose
    ``obs``/``action``/``next_obs`` hold integer states and actions.
    """

    def __init__(
        self,
        mdp: Any,
        reward: np.ndarray | None = None,
        *,
        model: str = "regret",
        temperature: float = 1.0,
        noiseless: bool = False,
        eps_mistake: float = 0.0,
        seed: int | np.random.Generator | None = None,
    ):
        from . import regret  # the tabular model; imported only for this teacher

        self._regret = regret
        if model not in regret.MODELS:
            raise ConfigError(f"unknown preference model {model!r}; choose one of {', '.join(regret.MODELS)}")
        if not float(temperature) > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= float(eps_mistake) <= 1.0:
            raise ConfigError(f"eps_mistake must lie in [0, 1], got {eps_mistake}")
        self.mdp = mdp
        self.reward = reward
        self.model = model
        self.temperature = float(temperature)
        self.noiseless = bool(noiseless)
        self.eps_mistake = float(eps_mistake)
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def to_tabular(seg: Any) -> Any:
        """Convert a :class:`SegmentBatch` of integer states/actions to :class:`robo_reward.tabular.Segments`."""
        from ...tabular import Segments

        if isinstance(seg, Segments):
            return seg
        if not isinstance(seg, SegmentBatch):
            raise ConfigError(f"RegretTeacher labels tabular Segments or a SegmentBatch, got {type(seg).__name__}")
        if seg.action is None or seg.next_obs is None:
            raise ConfigError("a SegmentBatch for the regret teacher needs obs, action and next_obs (integer states)")

        def ints(x: np.ndarray, name: str) -> np.ndarray:
            x = np.asarray(x)
            if x.ndim == 3 and x.shape[2] == 1:
                x = x[..., 0]
            if x.ndim != 2 or not np.all(np.equal(np.mod(x, 1), 0)):
                raise ConfigError(f"{name} must hold integer states/actions of shape [n, L] (or [n, L, 1])")
            return x.astype(np.int64)

        s, a, s2 = ints(seg.obs, "obs"), ints(seg.action, "action"), ints(seg.next_obs, "next_obs")
        return Segments(s, a, s2, np.ones_like(s, dtype=bool))

    def label(self, seg1: Any, seg2: Any) -> np.ndarray:
        """Regret-model labels (1, 0, or 0.5 on ties when ``noiseless``)."""
        t1, t2 = self.to_tabular(seg1), self.to_tabular(seg2)
        labels = self._regret.label_preferences(
            self.mdp, t1, t2, self.reward, model=self.model, temperature=self.temperature,
            noiseless=self.noiseless, seed=self.rng,
        ).astype(np.float64)
        flip = (self.rng.random(len(labels)) < self.eps_mistake) & (labels != 0.5)
        labels[flip] = 1.0 - labels[flip]
        return labels


def write_clip(frames: np.ndarray, path: str | Path, fps: int = 15) -> Path:
    """Write ``uint8[T, H, W, 3]`` frames to a GIF or MP4 (by the suffix of ``path``); returns the path.

    Raises:
        MissingDependencyError: imageio (or imageio-ffmpeg, for MP4) is missing.
        ConfigError: bad frames or suffix.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4) or len(frames) == 0:
        raise ConfigError(f"frames must be uint8[T, H, W, 3], got shape {frames.shape}")
    frames = frames.astype(np.uint8, copy=False)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ConfigError(f"clips are written as .gif or .mp4, not {path.suffix!r}")
    try:
        import imageio.v2 as imageio
    except ImportError as exc:
        raise MissingDependencyError("imageio", "video", "showing clips to a human teacher") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        imageio.mimsave(path, list(frames), duration=1000.0 / fps, loop=0)
    else:
        try:
            with imageio.get_writer(path, fps=fps, macro_block_size=1) as writer:
                for f in frames:
                    writer.append_data(f)
        except (ImportError, ValueError) as exc:
            raise MissingDependencyError("imageio-ffmpeg", "video", "writing MP4 clips") from exc
    return path


_ANSWERS = {"1": 1.0, "2": 0.0, "e": 0.5, "=": 0.5, "s": math.nan}


class HumanTeacher(Teacher):
    """Shows each pair as two clips (GIF or MP4 files) and asks on the terminal which is better.

    Answers: ``1`` (first better), ``2`` (second better), ``e`` or ``=`` (equally good),
    ``s`` (skip). Segments need ``frames`` (collect them with ``render=True``).

    Args:
        out_dir: folder the clips are written to (``pair0000_1.gif``, ``pair0000_2.gif``, ...).
        fmt: ``"gif"`` or ``"mp4"``.
        fps: frames per second of the clips.
        input_fn: reads one answer given a prompt (default :func:`input`; inject for tests).
        print_fn: shows the clip paths (default :func:`print`).
        max_attempts: invalid answers tolerated per pair before giving up.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        fmt: str = "gif",
        fps: int = 15,
        input_fn: Callable[[str], str] = input,
        print_fn: Callable[[str], Any] = print,
        max_attempts: int = 5,
    ):
        if fmt not in ("gif", "mp4"):
            raise ConfigError(f"fmt must be 'gif' or 'mp4', got {fmt!r}")
        if int(fps) < 1 or int(max_attempts) < 1:
            raise ConfigError("fps and max_attempts must be >= 1")
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.fps = int(fps)
        self.input_fn = input_fn
        self.print_fn = print_fn
        self.max_attempts = int(max_attempts)
        self.asked = 0

    def _ask(self) -> float:
        prompt = "Which clip is better? [1] first, [2] second, [e] equally good, [s] skip: "
        for _ in range(self.max_attempts):
            try:
                answer = str(self.input_fn(prompt)).strip().lower()
            except EOFError as exc:
                raise ConfigError("no answer from the human teacher (end of input)") from exc
            if answer in _ANSWERS:
                return _ANSWERS[answer]
            self.print_fn(f"  please answer 1, 2, e or s (got {answer!r})")
        raise ConfigError(f"no valid answer after {self.max_attempts} attempts")

    def label(self, seg1: SegmentBatch, seg2: SegmentBatch) -> np.ndarray:
        """Write the clips of each pair, ask, and return the answers."""
        if seg1.frames is None or seg2.frames is None:
            raise ConfigError(
                "the human teacher shows rendered clips: collect segments with render=True "
                "(the env needs render_mode='rgb_array')"
            )
        if len(seg1) != len(seg2):
            raise ConfigError(f"seg1 and seg2 must hold the same number of segments ({len(seg1)} != {len(seg2)})")
        labels = np.empty(len(seg1))
        for i in range(len(seg1)):
            stem = self.out_dir / f"pair{self.asked:04d}"
            a = write_clip(seg1.frames[i], f"{stem}_1.{self.fmt}", self.fps)
            b = write_clip(seg2.frames[i], f"{stem}_2.{self.fmt}", self.fps)
            self.print_fn(f"pair {self.asked}: [1] {a}   [2] {b}")
            labels[i] = self._ask()
            self.asked += 1
        return labels

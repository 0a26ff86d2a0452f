"""Who says which of two frames is closer to the goal: a VLM over an OpenAI-compatible API, CLIP, or known scores.

Every labeller answers :meth:`PairLabeller.label_pairs` with one label per pair in the
RL-VLM-F convention — ``0``: the first frame is closer to the goal, ``1``: the second,
``-1``: unsure — and goes through a :class:`LabelCache` first when it has one:

* :class:`LLMLabeller` — the two-stage query of Wang et al. 2024 (analysis with both
  images, then a text-only labelling query), through any :class:`~robo_reward.llm.LLMBackend`
  (an OpenAI-compatible server, or a :class:`~robo_reward.llm.ReplayBackend` recording).
* :class:`ClipLabeller` — the offline default: the ``vlm-rm`` reward of each frame
  against the task card's goal prompt; the higher-scoring frame wins, and the pair is
  unsure when the scores differ by less than a margin.
* :class:`ScoreLabeller` — labels from per-frame scores you already have (ground-truth
  progress, an env's dense reward): a synthetic teacher for tests and benchmarks.

The cache key of a pair is the SHA-256 of the labeller's fingerprint (model, prompts,
sampling parameters, goal) and the content hashes of the two frames, in order — so a
re-run, or a run replayed from a recording, asks the server only about pairs it has
not seen, and changing the prompt or the model never reuses old labels.
"""

from __future__ import annotations

import abc
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ...core.errors import ConfigError
from .prompts import DEFAULT_PROMPTS, FIRST, SECOND, UNSURE, PromptSet, analysis_messages, label_messages, parse_label

__all__ = [
    "frame_hash",
    "LabelCache",
    "LabelStats",
    "PairLabeller",
    "LLMLabeller",
    "ClipLabeller",
    "ScoreLabeller",
    "make_labeller",
]

CACHE_FORMAT = "robo_reward.rlvlmf.labels/1"


def frame_hash(frame: Any) -> str:
    """Content hash of one frame (shape, dtype and bytes): 32 hex digits."""
    arr = np.ascontiguousarray(np.asarray(frame))
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode("ascii"))
    h.update(arr.tobytes())
    return h.hexdigest()[:32]


class LabelCache:
    """Labels of frame pairs, kept in memory and (with ``path``) appended to a JSONL file as they arrive.

    Each line: ``{"format", "key", "label", "labeller", ...}`` plus what the labeller adds
    (the VLM's analysis and answer text). Opening an existing file loads it, so an
    interrupted run resumes where it stopped. Safe to share between threads.

    Args:
        path: the JSONL file (``None``: memory only).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = None if path is None else Path(path).expanduser()
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        key, label = rec["key"], int(rec["label"])
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ConfigError(f"{self.path} line {lineno} is not a label-cache entry: {exc}") from exc
                    if label not in (FIRST, SECOND, UNSURE):
                        raise ConfigError(f"{self.path} line {lineno} has label {label}; labels are 0, 1 or -1")
                    self._entries[key] = rec

    @staticmethod
    def key(fingerprint: str, hash1: str, hash2: str) -> str:
        """The key of the ordered pair ``(frame 1, frame 2)`` for a labeller with this fingerprint."""
        return hashlib.sha256(f"{fingerprint}|{hash1}|{hash2}".encode("ascii")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or ``None``."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, label: int, labeller: str, **extra: Any) -> None:
        """Store one label (appending it to the file, flushed, when there is one)."""
        rec = {"format": CACHE_FORMAT, "key": key, "label": int(label), "labeller": labeller, **extra,
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self._lock:
            self._entries[key] = rec
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    fh.flush()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __repr__(self) -> str:
        return f"LabelCache({str(self.path) if self.path else 'memory'}, {len(self)} labels)"


def _as_cache(cache: Any) -> LabelCache | None:
    if cache is None or isinstance(cache, LabelCache):
        return cache
    if isinstance(cache, (str, Path)):
        return LabelCache(cache)
    raise ConfigError(f"cache must be a LabelCache, a file path or None, got {type(cache).__name__}")


@dataclass
class LabelStats:
    """Counts over the labeller's lifetime.

    Attributes:
        pairs: pairs asked about (duplicates included).
        cached: answered from the cache.
        labelled: answered by the labeller itself (one per distinct new pair).
        unsure: ``-1`` labels returned (cached or new).
        unreadable: new labels whose reply could not be parsed (counted as unsure too).
        order_disagreements: new pairs whose two decided answers (``both_orders``)
            contradicted each other (counted as unsure too).
    """

    pairs: int = 0
    cached: int = 0
    labelled: int = 0
    unsure: int = 0
    unreadable: int = 0
    order_disagreements: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return dict(self.__dict__)


def _check_frames_pairs(frames: Any, pairs: Any) -> tuple[np.ndarray, np.ndarray]:
    fr = np.asarray(frames)
    if fr.ndim != 4 or fr.shape[-1] != 3 or fr.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8[N, H, W, 3], got {fr.dtype}{list(fr.shape)}")
    pr = np.asarray(pairs, dtype=np.int64)
    if pr.ndim != 2 or pr.shape[1] != 2:
        raise ConfigError(f"pairs must be int[M, 2] (indices into frames), got shape {pr.shape}")
    if pr.size and (pr.min() < 0 or pr.max() >= len(fr)):
        raise ConfigError(f"pair indices must lie in [0, {len(fr)}), got [{pr.min()}, {pr.max()}]")
    return fr, pr


class PairLabeller(abc.ABC):
    """Base class: labels ordered pairs of frames, through a cache.

    Subclasses set :attr:`kind`, implement :meth:`fingerprint` and :meth:`_label`.

    Args:
        cache: a :class:`LabelCache`, a JSONL path for one, or ``None`` (no cache).
    """

    kind: ClassVar[str] = ""

    def __init__(self, cache: LabelCache | str | Path | None = None):
        self.cache = _as_cache(cache)
        self.stats = LabelStats()

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the labels could change (model, prompts, parameters)."""

    @abc.abstractmethod
    def _label(self, frames: np.ndarray, pairs: np.ndarray, emit: Callable[[int, int, dict[str, Any]], None],
               progress: bool) -> None:
        """Label every pair (all distinct, none cached); call ``emit(row, label, extra)`` as each is done."""

    def label_pairs(self, frames: Any, pairs: Any, progress: bool = False) -> np.ndarray:
        """Labels ``int8[M]`` (0 first closer, 1 second closer, -1 unsure) of the pairs ``int[M, 2]`` of ``frames``.

        Args:
            frames: ``uint8[N, H, W, 3]``.
            pairs: indices into ``frames``; row ``(i, j)`` compares frame ``i`` (image 1)
                with frame ``j`` (image 2).
            progress: show a progress bar over the pairs that need labelling.
        """
        fr, pr = _check_frames_pairs(frames, pairs)
        out = np.full(len(pr), UNSURE, np.int8)
        if not len(pr):
            return out
        fp = self.fingerprint()
        used = np.unique(pr)
        hashes = {int(i): frame_hash(fr[i]) for i in used}
        keys = [LabelCache.key(fp, hashes[int(a)], hashes[int(b)]) for a, b in pr]
        todo: dict[str, list[int]] = {}
        for row, k in enumerate(keys):
            hit = self.cache.get(k) if self.cache is not None else None
            if hit is not None:
                out[row] = int(hit["label"])
                self.stats.cached += 1
            else:
                todo.setdefault(k, []).append(row)
        self.stats.pairs += len(pr)
        if todo:
            first_rows = [rows[0] for rows in todo.values()]
            new_pairs = pr[first_rows]
            lock = threading.Lock()

            def emit(j: int, label: int, extra: dict[str, Any]) -> None:
                label = int(label)
                if label not in (FIRST, SECOND, UNSURE):
                    raise ConfigError(f"labeller {self.kind!r} produced label {label}; labels are 0, 1 or -1")
                k = keys[first_rows[j]]
                with lock:
                    for row in todo[k]:
                        out[row] = label
                    self.stats.labelled += 1
                    if extra.get("unreadable"):
                        self.stats.unreadable += 1
                    if extra.get("order_disagreement"):
                        self.stats.order_disagreements += 1
                if self.cache is not None:
                    self.cache.put(k, label, self.kind, **extra)

            self._label(fr, new_pairs, emit, progress)
        self.stats.unsure += int(np.sum(out == UNSURE))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cache={self.cache!r})"


# ----------------------------------------------------------------------------- VLM over an API


def _resize_nearest(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    rows = np.minimum((np.arange(size) * h) // size, h - 1)
    cols = np.minimum((np.arange(size) * w) // size, w - 1)
    return np.ascontiguousarray(frame[rows][:, cols])


class LLMLabeller(PairLabeller):
    """RL-VLM-F labels from a vision-language model behind an OpenAI-compatible chat API.

    For each pair, two requests (Wang et al. 2024): the *analysis* query (one user
    message: intro text, image 1, text, image 2, the three questions with the goal) and
    the *labelling* query (text only: the questions, the analysis, and the request for
    one line of 0, 1 or -1). A labelling reply that cannot be read counts as unsure.

    Args:
        backend: an :class:`~robo_reward.llm.LLMBackend` or a spec for
            :func:`~robo_reward.llm.make_backend` (``"openai:model=...,base_url=..."``,
            ``"replay:path=..."``); it must accept images.
        goal: the goal phrase that completes "The goal is ...", e.g. ``"to open the drawer"``.
        label_backend: another backend for the text-only labelling query (the paper used a
            text model there); default: ``backend``.
        prompts: the texts (:data:`~robo_reward.rewards.rlvlmf.prompts.DEFAULT_PROMPTS`).
        cache: label cache (a :class:`LabelCache` or JSONL path); strongly recommended.
        temperature: sampling temperature of both queries (0, as in the paper).
        max_tokens: token limit of the analysis reply.
        label_max_tokens: token limit of the labelling reply.
        detail: OpenAI's image ``detail`` (``"low"``, ``"high"``, ``"auto"``; omitted when ``None``).
        image_size: resize frames to this square size (nearest neighbour) before sending
            (``None``: as they are).
        workers: pairs labelled concurrently (each pair's two queries stay in order).
        both_orders: also ask about each pair with the images swapped, and keep a label
            only when the two answers agree (image 1 in one order is image 2 in the other);
            otherwise the pair is unsure (``extra["order_disagreement"]``). Vision-language
            judges often favour one position; this doubles the queries and drops the
            labels that depend on the order.
    """

    kind = "llm"

    def __init__(
        self,
        backend: Any,
        goal: str,
        *,
        label_backend: Any = None,
        prompts: PromptSet = DEFAULT_PROMPTS,
        cache: LabelCache | str | Path | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = 1000,
        label_max_tokens: int | None = 32,
        detail: str | None = None,
        image_size: int | None = None,
        workers: int = 1,
        both_orders: bool = False,
    ):
        super().__init__(cache)
        from ...llm import make_backend

        if not goal or not str(goal).strip():
            raise ConfigError("the RL-VLM-F labeller needs a goal phrase, e.g. goal='to open the drawer'")
        if int(workers) < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if image_size is not None and int(image_size) < 8:
            raise ConfigError(f"image_size must be at least 8 pixels, got {image_size}")
        self.backend = make_backend(backend)
        self.label_backend = self.backend if label_backend is None else make_backend(label_backend)
        self.goal = str(goal).strip()
        self.prompts = prompts
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.label_max_tokens = label_max_tokens
        self.detail = detail
        self.image_size = None if image_size is None else int(image_size)
        self.workers = int(workers)
        self.both_orders = bool(both_orders)

    def fingerprint(self) -> str:
        """Models, prompts, goal, sampling parameters, image handling and the order check."""
        return json.dumps({
            "kind": self.kind, "model": self.backend.model, "label_model": self.label_backend.model,
            "prompts": self.prompts.fingerprint(), "goal": self.goal, "temperature": self.temperature,
            "max_tokens": self.max_tokens, "label_max_tokens": self.label_max_tokens, "detail": self.detail,
            "image_size": self.image_size, **({"both_orders": True} if self.both_orders else {}),
        }, sort_keys=True)

    def _image(self, frame: np.ndarray) -> np.ndarray:
        return frame if self.image_size is None else _resize_nearest(frame, self.image_size)

    def compare(self, frame1: Any, frame2: Any) -> tuple[int, dict[str, Any]]:
        """Ask about one pair (no cache): ``(label, {"analysis", "answer", "unreadable"})``.

        With ``both_orders`` the pair is asked about twice (the second time swapped); the
        extra info then also holds ``"swapped"`` (the second answer's dict) and, when
        the two decided answers disagree, ``"order_disagreement": True``.
        """
        label, extra = self._ask(frame1, frame2)
        if not self.both_orders:
            return label, extra
        label2, extra2 = self._ask(frame2, frame1)
        extra["swapped"] = extra2
        flipped = {FIRST: SECOND, SECOND: FIRST}.get(label2, UNSURE)
        if label != flipped:
            if label != UNSURE and flipped != UNSURE:
                extra["order_disagreement"] = True
            label = UNSURE
        return label, extra

    def _ask(self, frame1: Any, frame2: Any) -> tuple[int, dict[str, Any]]:
        first = self.backend.chat(
            analysis_messages(self._image(np.asarray(frame1)), self._image(np.asarray(frame2)), self.goal,
                              self.prompts, self.detail),
            temperature=self.temperature, max_tokens=self.max_tokens,
        )
        analysis = first.text
        second = self.label_backend.chat(label_messages(analysis, self.goal, self.prompts),
                                         temperature=self.temperature, max_tokens=self.label_max_tokens)
        label = parse_label(second.text)
        extra: dict[str, Any] = {"analysis": analysis, "answer": second.text}
        if label is None:
            extra["unreadable"] = True
            label = UNSURE
        return label, extra

    def _label(self, frames: np.ndarray, pairs: np.ndarray, emit: Callable[[int, int, dict[str, Any]], None],
               progress: bool) -> None:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pairs), desc="VLM labels", unit="pair")

        def one(j: int) -> None:
            a, b = pairs[j]
            label, extra = self.compare(frames[a], frames[b])
            emit(j, label, extra)
            if bar is not None:
                bar.update(1)

        try:
            if self.workers == 1:
                for j in range(len(pairs)):
                    one(j)
            else:
                from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

                with ThreadPoolExecutor(self.workers, thread_name_prefix="rlvlmf") as pool:
                    futures = [pool.submit(one, j) for j in range(len(pairs))]
                    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                    for f in pending:
                        f.cancel()
                    for f in futures:
                        if f.done() and not f.cancelled() and f.exception() is not None:
                            raise f.exception()  # type: ignore[misc]
        finally:
            if bar is not None:
                bar.close()

    def __repr__(self) -> str:
        return f"LLMLabeller(model={self.backend.model!r}, goal={self.goal!r}, cache={self.cache!r})"


# ----------------------------------------------------------------------------- score-based labellers


def _labels_from_scores(s1: np.ndarray, s2: np.ndarray, margin: float) -> np.ndarray:
    d = np.asarray(s1, np.float64) - np.asarray(s2, np.float64)
    out = np.full(d.shape, UNSURE, np.int8)
    out[d > margin] = FIRST
    out[d < -margin] = SECOND
    return out


class ScoreLabeller(PairLabeller):
    """Labels from known per-frame scores: the frame with the higher score is closer to the goal.

    A synthetic teacher (ground-truth progress, an env's dense reward) for tests and
    benchmarks. Pairs whose scores differ by at most ``margin`` are unsure.

    Args:
        scores: ``float[N]``, one score per frame of the pool later passed to :meth:`label_pairs`.
        margin: scores closer than this are unsure.
        cache: optional label cache.
    """

    kind = "scores"

    def __init__(self, scores: Any, margin: float = 0.0, cache: LabelCache | str | Path | None = None):
        super().__init__(cache)
        self.scores = np.asarray(scores, np.float64).reshape(-1)
        if not np.all(np.isfinite(self.scores)):
            raise ConfigError("ScoreLabeller scores must be finite")
        if margin < 0:
            raise ConfigError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def fingerprint(self) -> str:
        """Identifies the scores and the margin."""
        return json.dumps({"kind": self.kind, "margin": self.margin,
                           "scores": hashlib.sha256(self.scores.tobytes()).hexdigest()[:16]})

    def _label(self, frames: np.ndarray, pairs: np.ndarray, emit: Callable[[int, int, dict[str, Any]], None],
               progress: bool) -> None:
        if len(self.scores) != len(frames):
            raise ConfigError(f"ScoreLabeller has {len(self.scores)} scores for a pool of {len(frames)} frames")
        labels = _labels_from_scores(self.scores[pairs[:, 0]], self.scores[pairs[:, 1]], self.margin)
        for j, lab in enumerate(labels):
            emit(j, int(lab), {})


class ClipLabeller(PairLabeller):
    """The offline default: CLIP (the ``vlm-rm`` reward) scores each frame against the goal prompt; the higher wins.

    Each frame of the pool is scored once with
    :class:`~robo_reward.rewards.vlm.VLMRMReward` (goal/baseline prompts default to the
    task card's ``vlm`` section). A pair is unsure when its two scores differ by no more
    than ``margin``: with ``relative_margin=True`` (default) the margin is in units of
    the standard deviation of the scores of the frames being labelled in that call, so
    the same setting works for CLIP models whose scores spread differently; otherwise it
    is in the reward's own units.

    Args:
        task: the task card (for the default prompts).
        goal, baseline, alpha: as for ``vlm-rm``.
        model, pretrained, device, seed: the CLIP model (``pretrained=None``: random weights, tests only).
        margin: the unsure band (see above).
        relative_margin: measure ``margin`` in standard deviations of the scores.
        batch_size: frames per CLIP forward pass.
        cache: optional label cache (cached labels are reused as they were made).
        scorer: an already-built ``vlm-rm`` plugin (or anything with ``score(frames).reward``)
            instead of building one.
    """

    kind = "clip"

    def __init__(
        self,
        task: Any = None,
        goal: str | Sequence[str] | None = None,
        baseline: str | Sequence[str] | None = None,
        alpha: float = 0.0,
        model: str | None = None,
        pretrained: str | None = "default",
        device: str = "auto",
        seed: int = 0,
        margin: float = 0.1,
        relative_margin: bool = True,
        batch_size: int = 64,
        cache: LabelCache | str | Path | None = None,
        scorer: Any = None,
    ):
        super().__init__(cache)
        if margin < 0:
            raise ConfigError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.relative_margin = bool(relative_margin)
        if scorer is None:
            from ..vlm import VLMRMReward
            from ..vlm.model import DEFAULT_MODEL, DEFAULT_PRETRAINED

            kwargs: dict[str, Any] = {
                "goal": goal, "baseline": baseline, "alpha": alpha, "model": model or DEFAULT_MODEL,
                "pretrained": DEFAULT_PRETRAINED if pretrained == "default" else pretrained,
                "device": device, "seed": seed, "batch_size": batch_size, "task": task,
            }
            scorer = VLMRMReward(**kwargs)
            self._desc = {k: kwargs[k] for k in ("alpha", "model", "pretrained", "seed")}
            self._desc["goal"] = list(scorer.scorer.goal_prompts)
            self._desc["baseline"] = list(scorer.scorer.baseline_prompts)
        else:
            self._desc = {"scorer": repr(scorer)}
        self.scorer = scorer

    def fingerprint(self) -> str:
        """Prompts, CLIP model, alpha and margin."""
        return json.dumps({"kind": self.kind, "margin": self.margin, "relative": self.relative_margin,
                           **{k: v for k, v in self._desc.items()}}, sort_keys=True, default=str)

    def scores(self, frames: Any) -> np.ndarray:
        """The ``vlm-rm`` reward of each frame, ``float32[N]``."""
        return np.asarray(self.scorer.score(np.asarray(frames)).reward, np.float32)

    def _label(self, frames: np.ndarray, pairs: np.ndarray, emit: Callable[[int, int, dict[str, Any]], None],
               progress: bool) -> None:
        used, inv = np.unique(pairs, return_inverse=True)
        s = self.scores(frames[used])
        inv = inv.reshape(pairs.shape)
        margin = self.margin * (float(np.std(s)) if self.relative_margin else 1.0)
        labels = _labels_from_scores(s[inv[:, 0]], s[inv[:, 1]], margin)
        for j, lab in enumerate(labels):
            emit(j, int(lab), {"scores": [float(s[inv[j, 0]]), float(s[inv[j, 1]])]})

    def __repr__(self) -> str:
        return f"ClipLabeller(margin={self.margin}, relative={self.relative_margin}, scorer={self.scorer!r})"


def make_labeller(kind: str, **kwargs: Any) -> PairLabeller:
    """Build a labeller by name: ``"clip"`` (:class:`ClipLabeller`) or ``"llm"`` (:class:`LLMLabeller`)."""
    if kind == "clip":
        return ClipLabeller(**kwargs)
    if kind == "llm":
        return LLMLabeller(**kwargs)
    raise ConfigError(f"unknown labeller {kind!r}; use 'clip' (CLIP similarity, offline) or 'llm' (a VLM over an API)")

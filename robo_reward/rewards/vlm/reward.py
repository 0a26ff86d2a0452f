"""VLM-RM rewards (Rocamonde et al. 2023): CLIP scores frames against a text goal.

Reference: J. Rocamonde, V. Montesinos, E. Nava, E. Perez, D. Lindner, "Vision-Language
Models are Zero-Shot Reward Models for Reinforcement Learning", ICLR 2024
(arXiv:2310.12921).

With unit-normalised CLIP embeddings of the frame ``x``, the goal ``g`` and the
baseline ``b``, the direction ``d = g − b`` and the projection ``P = d dᵀ / ‖d‖²``
onto it, the goal–baseline regularised reward is::

    R(x) = 1 − ½ ‖(x − g)(α P + (1 − α) I)‖²

``α = 0`` is the plain CLIP reward: ``1 − ½‖x − g‖² = x·g`` for unit ``g``, i.e. the
cosine similarity (an affine map of it when ``g`` is an average that was not
renormalised). ``α = 1`` keeps only the component of ``x − g`` along the
baseline→goal direction. Since ``M = αP + (1 − α)I`` acts as ``1`` along ``d`` and as
``1 − α`` across it, ``‖(x − g)M‖² = ((x − g)·d̂)² + (1 − α)² ‖(x − g)_⊥‖²`` — the "line
form" used here, which needs no ``D × D`` matrix (:func:`projection_matrix` and
:func:`goal_baseline_reward_matrix` give the matrix form, for checking).

Several goal (or baseline) prompts are combined as in the paper's code release: each
prompt's embedding is normalised and the embeddings are averaged; here the average is
then normalised again (``normalize_mean=True``), so that ``g`` and ``b`` are unit
vectors as the paper's definition assumes. ``normalize_mean=False`` keeps the plain
average, exactly as the authors' released implementation (AlignmentResearch/vlmrm).
With one prompt each, both are the same.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...core.errors import ConfigError, RewardComputationError
from ...core.registry import register_reward
from ...core.types import RewardOutput, RewardPlugin, TransitionBatch
from .model import DEFAULT_MODEL, DEFAULT_PRETRAINED

#: Name of the reward term that carries the step's ticket in deferred mode (see :class:`VLMRMReward`).
TICKET_TERM = "vlm_ticket"
_TICKET_MOD = 1 << 24  # float32 holds every integer below 2**24 exactly


# ----------------------------------------------------------------------------- the projection algebra


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _dot(a: Any, b: Any) -> Any:
    return (a * b).sum(-1)


def _norm(a: Any) -> Any:
    return _dot(a, a) ** 0.5


def _direction(goal: Any, baseline: Any) -> Any:
    d = goal - baseline
    n = float(_norm(d))
    if not np.isfinite(n) or n <= 1e-12:
        raise ConfigError(
            "the goal and baseline prompts have the same embedding (goal − baseline = 0), so the goal–baseline "
            "projection is undefined: use different prompts or alpha=0"
        )
    return d / n


def goal_baseline_reward(x: Any, goal: Any, baseline: Any | None = None, alpha: float = 0.0) -> Any:
    """``R = 1 − ½‖(x − g)(αP + (1 − α)I)‖²`` for every row of ``x`` (line form, no ``D × D`` matrix).

    Args:
        x: frame embeddings ``[n, D]`` (unit norm), numpy or torch.
        goal: goal embedding ``[D]``.
        baseline: baseline embedding ``[D]``; needed when ``alpha > 0``.
        alpha: projection strength in ``[0, 1]``.

    Returns:
        ``[n]`` rewards (same array library as ``x``).
    """
    alpha = _check_alpha(alpha)
    u = x - goal
    sq = _dot(u, u)
    if alpha == 0.0:
        return 1.0 - 0.5 * sq
    if baseline is None:
        raise ConfigError("alpha > 0 needs a baseline prompt (the projection direction is goal − baseline)")
    dhat = _direction(goal, baseline)
    par = _dot(u, dhat)
    perp = u - par[..., None] * dhat
    return 1.0 - 0.5 * (par * par + (1.0 - alpha) ** 2 * _dot(perp, perp))


def projection_matrix(goal: Any, baseline: Any, alpha: float) -> Any:
    """``M = αP + (1 − α)I`` with ``P = d dᵀ / ‖d‖²``, ``d = g − b`` (a ``D × D`` matrix, numpy or torch)."""
    alpha = _check_alpha(alpha)
    dhat = _direction(goal, baseline)
    outer = dhat[:, None] * dhat[None, :]
    if _is_torch(goal):
        import torch

        eye = torch.eye(goal.shape[-1], dtype=goal.dtype, device=goal.device)
    else:
        eye = np.eye(goal.shape[-1], dtype=np.result_type(goal, np.float32))
    return alpha * outer + (1.0 - alpha) * eye


def goal_baseline_reward_matrix(x: Any, goal: Any, baseline: Any, alpha: float) -> Any:
    """The matrix form ``1 − ½‖(x − g) M‖²`` of :func:`goal_baseline_reward` (for checks; O(D²) per frame)."""
    v = (x - goal) @ projection_matrix(goal, baseline, alpha)
    return 1.0 - 0.5 * _dot(v, v)


def baseline_goal_position(x: Any, goal: Any, baseline: Any) -> Any:
    """Where ``x`` lies along the baseline→goal line: ``(x − b)·d / ‖d‖²`` (0 at the baseline, 1 at the goal)."""
    d = goal - baseline
    dd = float(_dot(d, d))
    if dd <= 1e-24:
        raise ConfigError("the goal and baseline prompts have the same embedding; use different prompts")
    return _dot(x - baseline, d) / dd


def _check_alpha(alpha: Any) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha!r}")
    return a


def combine_prompt_embeddings(embeddings: Any, normalize_mean: bool = True) -> Any:
    """Average unit prompt embeddings ``[k, D]`` into one ``[D]`` vector (renormalised unless told not to)."""
    e = embeddings / _norm(embeddings)[..., None]
    m = e.mean(0)
    return m / _norm(m) if normalize_mean else m


# ----------------------------------------------------------------------------- the scorer


def _prompts(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    try:
        out = tuple(str(v) for v in value)
    except TypeError:
        raise ConfigError(f"{what} must be a string or a list of strings, got {value!r}") from None
    if any(not s.strip() for s in out):
        raise ConfigError(f"{what} prompts must not be empty strings")
    return out


@dataclass(frozen=True)
class VLMScores:
    """Rewards of a batch of frames and their named terms (``float32[n]`` numpy arrays each).

    Terms: ``cosine_goal`` (cosine similarity of frame and goal), and with a baseline
    ``cosine_baseline`` and ``projection`` (position along the baseline→goal line: 0 at
    the baseline, 1 at the goal).
    """

    reward: np.ndarray
    terms: dict[str, np.ndarray]

    def as_output(self) -> RewardOutput:
        """As a :class:`~robo_reward.core.types.RewardOutput`."""
        return RewardOutput(self.reward, dict(self.terms))


class VLMRewardModel:
    """A CLIP model plus goal/baseline prompts and ``alpha``: scores frames, with or without an env.

    Args:
        goal: one prompt or a list describing frames where the task is done.
        baseline: one prompt or a list describing the scene neutrally (needed for ``alpha > 0``).
        alpha: goal–baseline projection strength in ``[0, 1]`` (0: plain CLIP reward).
        model, pretrained, device, precision, cache_dir, seed: the CLIP model, see
            :class:`~robo_reward.rewards.vlm.model.ClipEncoder` (shared across instances
            through :func:`~robo_reward.rewards.vlm.model.get_encoder`).
        batch_size: most frames per forward pass.
        normalize_mean: renormalise averaged prompt embeddings (see the module docstring).
        encoder: an already-built encoder to use instead of ``model``/``pretrained``/...

    The text embeddings are computed once, here.
    """

    def __init__(
        self,
        goal: str | Sequence[str],
        baseline: str | Sequence[str] | None = None,
        alpha: float = 0.0,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        cache_dir: str | None = None,
        normalize_mean: bool = True,
        seed: int = 0,
        encoder: Any = None,
    ):
        self.goal_prompts = _prompts(goal, "goal")
        self.baseline_prompts = _prompts(baseline, "baseline")
        if not self.goal_prompts:
            raise ConfigError("VLM-RM needs at least one goal prompt (goal='a humanoid robot kneeling')")
        self.alpha = _check_alpha(alpha)
        if self.alpha > 0 and not self.baseline_prompts:
            raise ConfigError(f"alpha={alpha} needs baseline prompt(s): give baseline=... or use alpha=0")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.normalize_mean = bool(normalize_mean)
        if encoder is None:
            from .model import get_encoder

            encoder = get_encoder(model, pretrained, device, precision, cache_dir, self.batch_size, seed)
        self.encoder = encoder
        self.goal = combine_prompt_embeddings(encoder.encode_text(self.goal_prompts), self.normalize_mean)
        self.baseline = (
            combine_prompt_embeddings(encoder.encode_text(self.baseline_prompts), self.normalize_mean)
            if self.baseline_prompts
            else None
        )
        if self.alpha > 0:
            _direction(self.goal, self.baseline)  # fail now on identical prompts
        self._goal_unit = self.goal / _norm(self.goal)
        self._baseline_unit = self.baseline / _norm(self.baseline) if self.baseline is not None else None

    def __repr__(self) -> str:
        return (
            f"VLMRewardModel(goal={list(self.goal_prompts)!r}, baseline={list(self.baseline_prompts)!r}, "
            f"alpha={self.alpha}, encoder={self.encoder!r})"
        )

    def embed(self, frames: Any) -> Any:
        """Unit image embeddings ``float32[n, D]`` (a torch tensor on the model's device)."""
        return self.encoder.encode_frames(frames, self.batch_size)

    def score_embeddings(self, x: Any) -> VLMScores:
        """Rewards and terms from unit image embeddings ``[n, D]`` (torch or numpy)."""
        if not _is_torch(x):
            import torch

            x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.goal.device)
        reward = goal_baseline_reward(x, self.goal, self.baseline, self.alpha)
        terms = {"cosine_goal": _dot(x, self._goal_unit)}
        if self.baseline is not None:
            terms["cosine_baseline"] = _dot(x, self._baseline_unit)
            if float(_norm(self.goal - self.baseline)) > 1e-12:
                terms["projection"] = baseline_goal_position(x, self.goal, self.baseline)

        def _host(t: Any) -> np.ndarray:
            return t.detach().to("cpu").float().numpy().astype(np.float32, copy=False)

        return VLMScores(_host(reward), {k: _host(v) for k, v in terms.items()})

    def score(self, frames: Any) -> VLMScores:
        """Score ``uint8`` frames ``[n, H, W, 3]`` (or a list of ``[H, W, 3]``): rewards and terms."""
        return self.score_embeddings(self.embed(frames))


# ----------------------------------------------------------------------------- the plugin


@register_reward("vlm-rm")
class VLMRMReward(RewardPlugin):
    """VLM-RM (Rocamonde et al. 2023): CLIP similarity of rendered frames to a text goal, with goal–baseline projection.

    ``R = 1 − ½‖(x − g)(αP + (1 − α)I)‖²`` on unit CLIP embeddings of the frame ``x``,
    goal ``g`` and baseline ``b`` (``P`` projects onto ``g − b``); terms
    ``cosine_goal``, ``cosine_baseline`` and ``projection`` (0 at the baseline, 1 at the
    goal). Prompts default to the task card's ``vlm`` section; frames are rendered by the
    wrappers with the card's camera, size and render options, all sub-envs in one batch.

    Args:
        goal: goal prompt(s); default: the task card's ``vlm.goal``.
        baseline: baseline prompt(s); default: the card's ``vlm.baseline``.
        alpha: projection strength in ``[0, 1]``; 0 (default) is the plain CLIP reward.
        model: open_clip model name, ``hf-hub:org/repo`` or ``local-dir:/path``.
        pretrained: open_clip tag, checkpoint file, or ``None``/``"random"`` (random weights: tests only).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda[:N]"``.
        precision: ``"auto"`` (fp16 on CUDA, fp32 on the CPU), ``"fp32"``, ``"fp16"``, ``"bf16"``.
        batch_size: most frames per forward pass.
        cache_dir: download cache for the weights.
        normalize_mean: renormalise averaged prompt embeddings.
        seed: seed of random weights (``pretrained=None`` only).
        defer: accumulation mode for off-policy agents (see below).
        task: the task card (filled in by ``make_reward(..., task=card)``).

    Two modes:

    * **per step** (``defer=False``, default): every step, the frames of all sub-envs
      are encoded in one forward pass and the reward is returned with the step, exactly
      like any other reward — for every agent, on-policy included.
    * **deferred** (``defer=True``): the plugin stores each step's frames and returns a
      placeholder reward of 0 (so the env returns only the env-reward part of the mix)
      plus a ``vlm_ticket`` term naming the step. A
      :class:`~robo_reward.rewards.vlm.relabel.VLMRelabelReplayBuffer` collects the frames
      of ``accumulate`` steps, encodes them in one batch and writes the rewards into the
      replay buffer — at most one batch (``accumulate`` steps) after the transition, and
      never sampled before that. Only for off-policy agents that learn from a replay
      buffer (SAC, TD3, DQN); episode returns logged from ``env.step`` show the
      placeholder, not the VLM reward.
    """

    requires = frozenset({"frames"})

    #: Most unclaimed deferred steps kept before :meth:`compute` raises (their frames are held in memory).
    max_unclaimed_steps: int = 64

    def __init__(
        self,
        goal: str | Sequence[str] | None = None,
        baseline: str | Sequence[str] | None = None,
        alpha: float = 0.0,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        cache_dir: str | None = None,
        normalize_mean: bool = True,
        seed: int = 0,
        defer: bool = False,
        task: Any = None,
    ):
        vlm = getattr(task, "vlm", None)
        if goal is None and vlm is not None:
            goal = list(vlm.goal)
        if baseline is None and vlm is not None:
            baseline = list(vlm.baseline)
        if goal is None:
            where = f"task card {task.name!r} has no vlm section" if task is not None else "no task card was given"
            raise ConfigError(f"vlm-rm needs goal prompt(s): pass goal='...' ({where})")
        self._config = dict(
            goal=goal,
            baseline=baseline,
            alpha=alpha,
            model=model,
            pretrained=pretrained,
            device=device,
            precision=precision,
            batch_size=batch_size,
            cache_dir=cache_dir,
            normalize_mean=normalize_mean,
            seed=seed,
        )
        self.defer = bool(defer)
        self.task_name = getattr(task, "name", None)
        self.scorer = VLMRewardModel(**self._config)
        self._init_deferred()

    def _init_deferred(self) -> None:
        self._stash: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._tickets = itertools.count(1)
        self._stash_lock = threading.Lock()

    @property
    def alpha(self) -> float:
        """The projection strength."""
        return self.scorer.alpha

    def score(self, frames: Any) -> VLMScores:
        """Score frames directly (no env): see :meth:`VLMRewardModel.score`."""
        return self.scorer.score(frames)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Score ``batch.frames`` in one batch, or (deferred mode) store them and return placeholders."""
        if batch.frames is None:
            raise RewardComputationError("vlm-rm needs rendered frames; the wrapper passed none")
        if not self.defer:
            return self.scorer.score(batch.frames).as_output()
        n = len(batch)
        with self._stash_lock:
            if len(self._stash) >= self.max_unclaimed_steps:
                raise RewardComputationError(
                    f"vlm-rm is in deferred mode (defer=true) but the frames of {len(self._stash)} steps were never "
                    "collected: train with robo_reward.rewards.vlm.VLMRelabelReplayBuffer (see relabel_kwargs), "
                    "or use defer=false"
                )
            ticket = (next(self._tickets) - 1) % (_TICKET_MOD - 1) + 1  # 1 .. 2**24 - 1
            self._stash[ticket] = (np.array(batch.frames, copy=True), np.array(batch.env_ids, copy=True))
        return RewardOutput(np.zeros(n, np.float32), {TICKET_TERM: np.full(n, ticket, np.float32)})

    def claim(self, ticket: int) -> tuple[np.ndarray, np.ndarray]:
        """Hand over (and forget) the frames and env ids stored under ``ticket`` in deferred mode.

        Raises:
            RewardComputationError: no such ticket (it was claimed already, or came from another plugin).
        """
        with self._stash_lock:
            try:
                return self._stash.pop(int(ticket))
            except KeyError:
                raise RewardComputationError(
                    f"vlm-rm has no frames for ticket {int(ticket)}: was the buffer given the plugin of the env it "
                    "collects from?"
                ) from None

    @property
    def unclaimed_steps(self) -> int:
        """Number of deferred steps whose frames no buffer has claimed yet."""
        return len(self._stash)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (e.g. inside an SB3 model's replay_buffer_kwargs) as its configuration only:
        # the CLIP weights are loaded again, through the shared cache, when unpickled.
        return {"_config": self._config, "defer": self.defer, "task_name": self.task_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._config = state["_config"]
        self.defer = state["defer"]
        self.task_name = state.get("task_name")
        self.scorer = VLMRewardModel(**self._config)
        self._init_deferred()

    def __repr__(self) -> str:
        return (
            f"VLMRMReward(goal={list(self.scorer.goal_prompts)!r}, baseline={list(self.scorer.baseline_prompts)!r}, "
            f"alpha={self.alpha}, model={self._config['model']!r}, pretrained={self._config['pretrained']!r}, "
            f"device={str(self.scorer.encoder.device)!r}, defer={self.defer})"
        )

"""VLM-RM: CLIP rewards from rendered frames (Rocamonde et al. 2023, arXiv:2310.12921).

Importing this package registers the ``vlm-rm`` reward and is cheap: ``torch`` and
``open_clip`` are imported only when a model is built, Stable-Baselines3 only when
:class:`VLMRelabelReplayBuffer` is used.

* :class:`VLMRMReward` — the ``vlm-rm`` plugin (per-step batched, or deferred for replay buffers).
* :class:`VLMRewardModel` — prompts + CLIP model: score frames with or without an env.
* :func:`goal_baseline_reward`, :func:`projection_matrix`, :func:`goal_baseline_reward_matrix`,
  :func:`baseline_goal_position`, :func:`combine_prompt_embeddings` — the projection algebra.
* :class:`ClipEncoder`, :func:`get_encoder`, :func:`resolve_weights`,
  :class:`MissingWeightsError` — loading CLIP models through open_clip.
* :class:`VLMRelabelReplayBuffer`, :func:`relabel_kwargs` — accumulation mode for SB3 off-policy agents.
* :func:`pearson_distance`, :func:`evaluate_reward`, :func:`plot_reward_vs_ground_truth` — evaluation.
* :func:`iter_frames`, :func:`read_frames`, :func:`score_recorded` — videos and image folders.
"""

from __future__ import annotations

from robo_reward._lazy import lazy_attributes

from typing import Any

from .model import DEFAULT_MODEL, DEFAULT_PRETRAINED, MissingWeightsError
from .reward import (
    TICKET_TERM,
    VLMRewardModel,
    VLMRMReward,
    VLMScores,
    baseline_goal_position,
    combine_prompt_embeddings,
    goal_baseline_reward,
    goal_baseline_reward_matrix,
    projection_matrix,
)

_LAZY = {
    "ClipEncoder": "model",
    "PreprocessSpec": "model",
    "ResolvedWeights": "model",
    "clear_encoder_cache": "model",
    "get_encoder": "model",
    "preprocess_frames": "model",
    "resolve_device": "model",
    "resolve_precision": "model",
    "resolve_weights": "model",
    "VLMRelabelReplayBuffer": "relabel",
    "relabel_kwargs": "relabel",
    "RewardEvaluation": "evaluate",
    "evaluate_reward": "evaluate",
    "pearson_correlation": "evaluate",
    "pearson_distance": "evaluate",
    "plot_reward_vs_ground_truth": "evaluate",
    "iter_frames": "recorded",
    "load_labels": "recorded",
    "read_frames": "recorded",
    "score_recorded": "recorded",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(
    [
        "DEFAULT_MODEL",
        "DEFAULT_PRETRAINED",
        "MissingWeightsError",
        "TICKET_TERM",
        "VLMRMReward",
        "VLMRewardModel",
        "VLMScores",
        "baseline_goal_position",
        "combine_prompt_embeddings",
        "goal_baseline_reward",
        "goal_baseline_reward_matrix",
        "projection_matrix",
        *_LAZY,
    ]
)

"""RL-VLM-F: rewards learned from a vision-language model's preferences between frames.

Wang et al. 2024, "RL-VLM-F: Reinforcement Learning from Vision Language Foundation
Model Feedback" (ICML 2024, arXiv:2402.03681); the offline form follows Venkataraman et
al. 2024, "Real-World Offline Reinforcement Learning from Vision Language Model Feedback".
A VLM is shown two frames of the same task and asked which is closer to the goal (or
that it cannot tell); the answers train a Bradley–Terry reward model on single frames,
which then rewards an agent or relabels an offline dataset.

* :mod:`.prompts` — the two-stage prompt (analysis with both images, then a labelling
  query answered with 0 / 1 / -1) and :func:`parse_label`.
* :mod:`.labellers` — :class:`LLMLabeller` (any OpenAI-compatible server, or a recorded
  replay), :class:`ClipLabeller` (the offline default: CLIP similarity to the task
  card's goal prompt), :class:`ScoreLabeller` (known scores), and the on-disk
  :class:`LabelCache` keyed by frame hashes and prompt.
* :mod:`.model` — :class:`ImageRewardModel` with a ``clip``, ``pixels`` or ``cnn`` encoder.
* :mod:`.fit` — :func:`sample_pairs`, :func:`fit_rlvlmf`, :func:`pair_accuracy`,
  :func:`relabel_dataset`.
* :mod:`.plugin` — the ``rl-vlm-f`` reward plugin (frames required).

Importing this package registers the plugin and imports neither ``torch`` nor an HTTP client.
"""

from __future__ import annotations

from robo_reward._lazy import lazy_attributes

from . import plugin as _plugin  # noqa: F401  (registers "rl-vlm-f")
from .plugin import RLVLMFReward

_LAZY = {
    "PromptSet": "prompts",
    "DEFAULT_PROMPTS": "prompts",
    "analysis_messages": "prompts",
    "label_messages": "prompts",
    "parse_label": "prompts",
    "goal_from_card": "prompts",
    "frame_hash": "labellers",
    "LabelCache": "labellers",
    "LabelStats": "labellers",
    "PairLabeller": "labellers",
    "LLMLabeller": "labellers",
    "ClipLabeller": "labellers",
    "ScoreLabeller": "labellers",
    "make_labeller": "labellers",
    "EncoderSpec": "model",
    "ImageRewardModel": "model",
    "ENCODER_KINDS": "model",
    "sample_pairs": "fit",
    "preferences_from_labels": "fit",
    "pair_accuracy": "fit",
    "RLVLMFResult": "fit",
    "fit_rlvlmf": "fit",
    "relabel_dataset": "fit",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(["RLVLMFReward", *_LAZY])

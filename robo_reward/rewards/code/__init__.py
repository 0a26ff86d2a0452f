"""LLM-written (or hand-written) reward code: extraction, validation, sandboxed execution, the ``code`` plugin.

Importing this package is cheap: the submodules load on first use of a name.

* :func:`extract_reward_code` — the reward function out of an LLM response
  (:mod:`.extract`).
* :func:`validate_reward_code` — check code against the allowed subset and compile it
  (:mod:`.validate`, whose docstring is the reference for what reward code may do).
* :class:`Sandbox`, :func:`run_reward_code` — run it batched in a limited worker process
  (:mod:`.sandbox`, whose docstring states the threat model).
* :class:`CodeReward` — the ``code`` reward plugin (:mod:`.plugin`).
"""

from __future__ import annotations

from robo_reward._lazy import lazy_attributes

from typing import Any

_LAZY = {
    "extract_reward_code": "extract",
    "extract_code_blocks": "extract",
    "strip_reasoning": "extract",
    "CodeBlock": "extract",
    "CodeExtractionError": "extract",
    "validate_reward_code": "validate",
    "ValidatedCode": "validate",
    "CodeIssue": "validate",
    "CodeValidationError": "validate",
    "INPUT_NAMES": "validate",
    "DEFAULT_FUNCTION": "validate",
    "Sandbox": "sandbox",
    "CodeResult": "sandbox",
    "run_reward_code": "sandbox",
    "RewardCodeError": "sandbox",
    "RewardCodeOutputError": "sandbox",
    "RewardCodeTimeout": "sandbox",
    "RewardCodeMemoryError": "sandbox",
    "RewardCodeCrash": "sandbox",
    "CodeReward": "plugin",
    "load_reward_source": "plugin",
    "VERSION_CODE_FILE": "plugin",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

"""The ``code`` reward plugin: reward code from a file, a reward-library version or a string, sandboxed.

::

    env = rr.VectorRewardWrapper(gym.make_vec("Reacher-v5", 8), "code:path=my_reward.py")
    env = rr.VectorRewardWrapper(venv, {"name": "code", "code": source, "params": {"scale": 0.5}})
    env = rr.VectorRewardWrapper(venv, "code:path=rewards/reacher/v003")   # a reward-library version

The code follows :mod:`robo_reward.rewards.code.validate` (``def compute_reward(obs,
action, next_obs, ...)`` on batched ``float64`` arrays, returning ``float[n]``, a dict of
named terms, or ``(reward, terms)``). It runs once per env step for all sub-envs in a
:class:`~robo_reward.rewards.code.sandbox.Sandbox`; the wrappers ask only for the inputs
the function takes. Terms go to ``info["reward_terms"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...core.errors import ConfigError
from ...core.registry import register_reward
from ...core.types import RewardOutput, RewardPlugin, TransitionBatch
from .sandbox import Sandbox
from .validate import DEFAULT_FUNCTION, validate_reward_code

#: The file a reward-library version folder keeps its code in.
VERSION_CODE_FILE = "reward.py"

_INPUT_REQUIRES = {"obs": "obs", "action": "action", "next_obs": "next_obs"}


def load_reward_source(path: str | Path) -> tuple[str, str]:
    """Read reward code from a ``.py`` file or a reward-library version folder (its ``reward.py``).

    Returns:
        ``(source, filename)``.

    Raises:
        ConfigError: the path does not exist, or the folder has no ``reward.py``.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        f = p / VERSION_CODE_FILE
        if not f.is_file():
            present = sorted(x.name for x in p.iterdir())[:20]
            raise ConfigError(
                f"reward-code folder {p} has no {VERSION_CODE_FILE}; it holds: {', '.join(present) or '(nothing)'}"
            )
        p = f
    elif not p.is_file():
        raise ConfigError(f"reward code file {p} does not exist")
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read reward code {p}: {exc}") from exc


@register_reward("code")
class CodeReward(RewardPlugin):
    """Reward code (LLM-written or hand-written) run in a sandbox, one batched call per step.

    Args:
        path: a ``.py`` file or a reward-library version folder (its ``reward.py``).
        code: the source as a string (instead of ``path``).
        function: the reward function's name (default ``compute_reward``).
        params: overrides of the function's tunable constants (parameters with defaults).
        timeout: per-call time limit in seconds (the trainer gets
            :class:`~robo_reward.rewards.code.sandbox.RewardCodeTimeout` past it).
        memory_mb: memory the code may use (Linux).
        isolation: ``"process"`` (default: a limited worker process) or ``"none"``
            (in-process; only for code you trust).
    """

    requires = frozenset({"obs", "action", "next_obs"})

    def __init__(
        self,
        path: str | None = None,
        code: str | None = None,
        function: str = DEFAULT_FUNCTION,
        params: Mapping[str, Any] | None = None,
        timeout: float = 1.0,
        memory_mb: int = 512,
        isolation: str = "process",
    ):
        if (path is None) == (code is None):
            raise ConfigError("the code reward needs exactly one of path= (a .py file or version folder) or code= (the source)")
        if path is not None:
            source, filename = load_reward_source(path)
        else:
            source, filename = str(code), "<reward>"
        self.path = str(path) if path is not None else None
        self.validated = validate_reward_code(source, function, filename)
        self.sandbox = Sandbox(
            self.validated, params=params, timeout_s=timeout, memory_mb=memory_mb, isolation=isolation
        )
        # ask the wrappers only for what the function reads (terminated/truncated always come)
        self.requires = frozenset(_INPUT_REQUIRES[k] for k in self.validated.inputs if k in _INPUT_REQUIRES)

    @property
    def source(self) -> str:
        """The reward code."""
        return self.validated.source

    @property
    def params(self) -> dict[str, Any]:
        """The tunable constants in effect (defaults updated by ``params=``)."""
        return dict(self.sandbox.params)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Run the code on the batch in the sandbox; raises a ``RewardCodeError`` naming the line on failure."""
        arrays: dict[str, Any] = {}
        for name in self.validated.inputs:
            value = getattr(batch, name)
            if type(value) is np.ndarray:  # the usual case; the checks below are slow-ish
                arrays[name] = value
                continue
            if value is None:
                raise ConfigError(f"the code reward needs {name!r} but the wrapper did not provide it")
            if isinstance(value, Mapping):
                raise ConfigError(
                    f"the code reward needs flat Box observations; {name!r} is a dict (Dict observation space). "
                    "Flatten the observations (gymnasium.wrappers.FlattenObservation) first"
                )
            arrays[name] = value
        if len(batch) == 0:
            return RewardOutput(np.zeros(0, np.float32))
        reward, terms = self.sandbox.call(arrays).astype(np.float32)
        return RewardOutput(reward, terms)

    def close(self) -> None:
        """Stop the sandbox's worker process (it also stops when the plugin is garbage-collected)."""
        self.sandbox.close()

    def __repr__(self) -> str:
        where = self.path or "<string>"
        return f"CodeReward({where}:{self.validated.function}, inputs={list(self.validated.inputs)})"

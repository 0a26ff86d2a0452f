"""Demonstrations with phase labels, for perceptual rewards and their evaluation.

:func:`collect_demos` runs MetaWorld's scripted expert (optionally with action noise)
through a task card's env, records the rendered frames, and labels every frame with a
task phase read from ``info``:

* 0 — reach (``near_object`` false, not grasped),
* 1 — grasp (``near_object`` true, ``grasp_success`` false),
* 2 — move (``grasp_success`` true, not yet ``success``),
* 3 — place (``success`` true).

Labels are made monotone (a running maximum), since a phase, once reached, counts as
reached; the boundaries are where the label increases. Tasks whose env never sets a
key simply skip that phase. These labels are a ground truth for the steps discovered by
:func:`robo_reward.rewards.perceptual.segment_features`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.errors import ConfigError

PHASE_NAMES = ("reach", "grasp", "move", "place")


@dataclass
class Demo:
    """One demonstration: ``frames`` ``uint8[T, H, W, 3]`` (after each step), ``obs`` ``[T, D]``
    (before each step), ``actions`` ``[T, A]``, ``phases`` ``int64[T]``, ``success`` (reached at any step)."""

    frames: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    phases: np.ndarray
    success: bool

    @property
    def phase_boundaries(self) -> list[int]:
        """Frames where the phase label increases (start of each later phase)."""
        return [int(i) for i in np.flatnonzero(np.diff(self.phases) > 0) + 1]

    def save(self, path: str | Path) -> Path:
        """Write the demo to one compressed ``.npz`` (readable by :func:`~robo_reward.rewards.perceptual.load_demo_frames`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, frames=self.frames, obs=self.obs, actions=self.actions, phases=self.phases,
                                success=np.array(self.success))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Demo":
        """Read a demo written by :meth:`save`."""
        with np.load(Path(path)) as z:
            return cls(z["frames"], z["obs"], z["actions"], z["phases"], bool(z["success"]))


def phase_of(info: Mapping[str, Any]) -> int:
    """The raw phase (0–3, see the module docstring) of one step's ``info``."""
    if float(info.get("success", 0.0)) > 0:
        return 3
    if float(info.get("grasp_success", 0.0)) > 0:
        return 2
    if float(info.get("near_object", 0.0)) > 0:
        return 1
    return 0


def collect_demos(
    task: Any = "metaworld-pick-place-v3",
    n: int = 5,
    seed: int = 0,
    noise: float = 0.0,
    max_steps: int | None = None,
    stop_after_success: int | None = 10,
    render_overrides: Mapping[str, Any] | None = None,
) -> list[Demo]:
    """Record ``n`` scripted-expert demos with frames and phase labels.

    Args:
        task: a MetaWorld task card.
        n: number of demos.
        seed: demo ``i`` resets with ``seed + i``; also seeds the action noise.
        noise: std of Gaussian noise added to the expert's actions.
        max_steps: cut demos at this length (default: the card's time limit).
        stop_after_success: end a demo this many steps after success is first reached
            (``None``: run to the time limit).
        render_overrides: e.g. ``{"width": 96, "height": 96}``.
    """
    from ..envs import load_card, make_env
    from .dataset import _metaworld_expert

    card = load_card(task)
    if card.family != "metaworld":
        raise ConfigError(f"phase-labelled demos need a MetaWorld task card, not {card.name!r}")
    expert = _metaworld_expert(card)
    rng = np.random.default_rng(seed)
    env = make_env(card, seed=seed, render_mode="rgb_array", render_overrides=render_overrides)
    low, high = env.action_space.low, env.action_space.high
    demos = []
    try:
        for i in range(n):
            obs, _ = env.reset(seed=seed + i)
            frames, o_list, acts, phases = [], [], [], []
            ok_at = None
            while True:
                a = expert(obs)
                if noise > 0:
                    a = np.clip(a + rng.normal(0, noise, a.shape), low, high).astype(np.float32)
                o_list.append(np.asarray(obs, np.float32))
                obs, _, term, trunc, info = env.step(a)
                acts.append(a)
                frames.append(np.asarray(env.render(), np.uint8))
                phases.append(phase_of(info))
                if phases[-1] == 3 and ok_at is None:
                    ok_at = len(phases)
                done = term or trunc or (max_steps is not None and len(phases) >= max_steps)
                if done or (ok_at is not None and stop_after_success is not None
                            and len(phases) >= ok_at + stop_after_success):
                    break
            ph = np.maximum.accumulate(np.asarray(phases, np.int64))
            demos.append(Demo(np.stack(frames), np.stack(o_list), np.stack(acts), ph, ok_at is not None))
    finally:
        env.close()
    return demos

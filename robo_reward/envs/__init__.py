"""Task cards, env factories and rendering options for Gymnasium robotics tasks.

Importing this package is cheap: it sets ``MUJOCO_GL=egl`` when there is no display
(before MuJoCo can be imported), and registers every shipped task card as the
Gymnasium id ``robo_reward/<card name>`` from the card *file names* alone. Cards are
parsed, and simulators imported, only when used::

    from robo_reward.envs import load_card, make_env, make_vec_env
    env = make_env("metaworld-reach-v3", reward="sparse-success", seed=0)
    env = gymnasium.make("robo_reward/mujoco-reacher-v5", reward="sparse-success")

Public names (loaded on first use): :class:`TaskCard`, :func:`load_card`,
:func:`list_cards`, :func:`make_env`, :func:`make_vec_env`,
:func:`apply_render_options`, :class:`SuccessInfoWrapper`,
:class:`MetaWorldCompatWrapper`; and, defined here, :func:`register_gym_envs`,
:func:`card_names`, :func:`shipped_card_paths`.
"""

from __future__ import annotations

from robo_reward._lazy import lazy_attributes

from pathlib import Path
from typing import Any

from .render import configure_headless_gl

configure_headless_gl()

#: Namespace of the Gymnasium ids under which task cards are registered.
GYM_NAMESPACE = "robo_reward"

_LAZY = {
    "TaskCard": "cards",
    "SuccessSpec": "cards",
    "RenderSpec": "cards",
    "VLMSpec": "cards",
    "ObsField": "cards",
    "FAMILIES": "cards",
    "load_card": "cards",
    "list_cards": "cards",
    "card_from_dict": "cards",
    "make_env": "make",
    "make_vec_env": "make",
    "make_registered_env": "make",
    "SuccessInfoWrapper": "make",
    "MetaWorldCompatWrapper": "make",
    "SUCCESS_INFO_KEY": "make",
    "apply_render_options": "render",
    "render_options_of": "render",
    "camera_names": "render",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


def shipped_card_paths() -> dict[str, Path]:
    """Map card name → YAML file for every card in the shipped ``envs/`` data folder (recursively).

    Reads only file names: a shipped card's file is named ``<card name>.yaml``
    (:func:`~robo_reward.envs.cards.load_card` checks that the name inside agrees).

    Raises:
        TaskCardError: two files carry the same card name.
    """
    from ..core.errors import TaskCardError
    from ..paths import data_dir

    try:
        root = data_dir("envs")
    except FileNotFoundError:
        return {}
    out: dict[str, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()):
        if path.stem in out:
            raise TaskCardError(f"two task cards are named {path.stem!r}: {out[path.stem]} and {path}")
        out[path.stem] = path
    return out


def card_names() -> list[str]:
    """Names of the shipped task cards, sorted (without parsing the files)."""
    return sorted(shipped_card_paths())


def register_gym_envs() -> list[str]:
    """Register every shipped card as the Gymnasium id ``robo_reward/<card name>``; return the ids.

    Idempotent and cheap (no card is parsed, no simulator imported). The entry point is
    :func:`~robo_reward.envs.make.make_registered_env`, so ``gym.make`` accepts
    :func:`~robo_reward.envs.make.make_env`'s keywords::

        gym.make("robo_reward/metaworld-reach-v3", reward="sparse-success", mode="add", seed=0)
    """
    from gymnasium.envs.registration import register, registry

    ids = []
    for name in card_names():
        gid = f"{GYM_NAMESPACE}/{name}"
        ids.append(gid)
        if gid not in registry:
            register(id=gid, entry_point="robo_reward.envs.make:make_registered_env", kwargs={"task": name})
    return ids


register_gym_envs()

__all__ = sorted(["GYM_NAMESPACE", "card_names", "configure_headless_gl", "register_gym_envs", "shipped_card_paths", *_LAZY])

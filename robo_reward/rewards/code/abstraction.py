"""Text2Reward-style environment abstraction: Python class stubs generated from a task card.

Text2Reward (Xie et al. 2023, "Text2Reward: Reward Shaping with Language Models for
Reinforcement Learning", §2.1) describes the environment to the LLM as a compact,
Pythonic hierarchy of classes — the robot and the objects, with their attributes — rather
than as prose or raw observation indices. This module builds that description from a
task card's ``observation`` fields, so every shipped (and every user-written) card gets
one for free::

    from robo_reward.envs import load_card
    from robo_reward.rewards.code.abstraction import build_abstraction

    abstraction = build_abstraction(load_card("mujoco-reacher-v5"))
    print(abstraction.to_python())          # the stubs, as shown to the LLM
    abstraction.views(next_obs)["fingertip_to_target"]   # next_obs[:, 8:10]

Each observation field becomes one attribute with its shape, units, meaning and the
slice of the flat observation it is read from (``obs[:, 8:10]``). Fields are grouped into
entities by their names: ``*_to_*`` fields are relations between entities, ``goal*`` /
``target*`` fields the goal, ``object*`` / ``second_object*`` the objects, and everything
else the robot; a ``previous_`` prefix keeps the field with the entity it belongs to.
The grouping is only presentation: the mapping to slices is exact either way.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...core.errors import ConfigError

#: Entities in the order they are shown, with the docstring of their class.
ENTITY_DOCS: dict[str, str] = {
    "robot": "The robot (agent) itself: its joints, links, end effector and body.",
    "object": "The object the task is about (see each attribute's meaning for what it is).",
    "second_object": "A second object slot (often unused: see the meanings).",
    "goal": "Where the task wants the robot or the object to end up.",
    "relations": "Quantities relating two entities (e.g. a vector from one to another).",
}

_UNIT_WORDS = {"-": "dimensionless", "": "dimensionless"}


def _entity_of(name: str) -> str:
    """The entity a field belongs to, from its name (see the module docstring)."""
    base = name[len("previous_"):] if name.startswith("previous_") else name
    if "_to_" in base:
        return "relations"
    if base.startswith(("goal", "target")) or base.endswith(("_goal", "_target")):
        return "goal"
    if base.startswith("second_object"):
        return "second_object"
    if base.startswith("object"):
        return "object"
    return "robot"


def _class_name(entity: str) -> str:
    return "".join(part.capitalize() for part in entity.split("_"))


@dataclass(frozen=True)
class Attribute:
    """One observation field as an attribute of an entity.

    Attributes:
        name: the field name (an identifier, unique within the card).
        entity: the entity it is grouped under (``robot``, ``object``, ``goal``, ...).
        start, stop: the slice of the flat observation, ``obs[:, start:stop]``.
        meaning: what the numbers are, in words (from the card).
        units: the card's units (``m``, ``rad``, ``m/s``, ``-`` when dimensionless).
    """

    name: str
    entity: str
    start: int
    stop: int
    meaning: str
    units: str

    @property
    def size(self) -> int:
        """Number of observation entries (the ``k`` of the ``[n, k]`` shape)."""
        return self.stop - self.start

    def slice_text(self, array: str = "obs") -> str:
        """How the attribute is read from a flat observation array, e.g. ``obs[:, 8:10]``."""
        return f"{array}[:, {self.start}:{self.stop}]"

    @property
    def units_text(self) -> str:
        """The units, with ``-`` spelled out as ``dimensionless``."""
        return _UNIT_WORDS.get(self.units.strip(), self.units.strip())


@dataclass(frozen=True)
class Entity:
    """A group of attributes shown as one stub class (the robot, an object, the goal, ...).

    Attributes:
        name: attribute name of the entity on the environment (``robot``, ``goal``).
        doc: one-line docstring of its class.
        attributes: its fields, in observation order.
    """

    name: str
    doc: str
    attributes: tuple[Attribute, ...]

    @property
    def class_name(self) -> str:
        """The stub's class name (``Robot``, ``SecondObject``)."""
        return _class_name(self.name)


@dataclass(frozen=True)
class ActionInfo:
    """The action space as shown to the LLM: shape and bounds (when known)."""

    shape: tuple[int, ...]
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def text(self) -> str:
        """``float array [n, 2], each entry in [-1, 1]`` (bounds summarised when uniform)."""
        dims = ", ".join(str(d) for d in self.shape)
        out = f"float array [n, {dims}]"
        if self.low is not None and self.high is not None:
            lo, hi = np.asarray(self.low), np.asarray(self.high)
            if lo.size and np.all(lo == lo.flat[0]) and np.all(hi == hi.flat[0]):
                out += f", each entry in [{lo.flat[0]:g}, {hi.flat[0]:g}]"
            else:
                out += f", bounds low={[float(f'{v:g}') for v in lo.ravel()]} high={[float(f'{v:g}') for v in hi.ravel()]}"
        return out


@dataclass(frozen=True)
class EnvAbstraction:
    """The LLM-facing description of a task: entities with attributes mapped to observation slices.

    Build it with :func:`build_abstraction`; :meth:`to_python` renders the class stubs.

    Attributes:
        task: the task card's name.
        env_id: the Gymnasium id.
        description: the card's free-text description.
        success: what success means, in words.
        obs_dim: the flat observation size (from the card, or the last field's ``stop``).
        entities: the entities, in display order.
        action: the action space, when known.
        max_episode_steps: episode length.
    """

    task: str
    env_id: str
    description: str
    success: str
    obs_dim: int
    entities: tuple[Entity, ...]
    action: ActionInfo | None = None
    max_episode_steps: int | None = None

    @property
    def attributes(self) -> list[Attribute]:
        """Every attribute, in observation order."""
        return sorted((a for e in self.entities for a in e.attributes), key=lambda a: a.start)

    def attribute(self, name: str) -> Attribute:
        """The attribute ``name``; :class:`ConfigError` listing the names otherwise."""
        for a in self.attributes:
            if a.name == name:
                return a
        raise ConfigError(f"{self.task} has no observation field {name!r}; fields: {', '.join(self.field_names)}")

    @property
    def field_names(self) -> list[str]:
        """Names of all attributes, in observation order."""
        return [a.name for a in self.attributes]

    def views(self, obs: Any) -> dict[str, np.ndarray]:
        """Slice a flat observation batch ``[n, obs_dim]`` into ``{field name: [n, k] array}``.

        Raises:
            ConfigError: ``obs`` is not ``[n, obs_dim]``.
        """
        x = np.asarray(obs)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] < max((a.stop for a in self.attributes), default=0):
            raise ConfigError(f"{self.task}: expected observations of shape [n, {self.obs_dim}], got {x.shape}")
        return {a.name: x[:, a.start:a.stop] for a in self.attributes}

    def to_python(self, array: str = "obs", width: int = 100) -> str:
        """The class stubs shown to the LLM (Text2Reward's Pythonic environment abstraction).

        Args:
            array: the name of the flat observation array in the slice comments
                (``obs``; the same layout holds for ``next_obs``).
            width: wrap long meaning comments at this many characters.
        """
        lines = [
            f"# Environment abstraction of task `{self.task}` (Gymnasium id {self.env_id}),",
            "# generated from its task card. `np` is numpy. Every attribute is a float array",
            f"# with one row per transition, shape [n, k], read from the flat observation array",
            f"# ({self.obs_dim} numbers per row) by the slice shown: `{array}[:, start:stop]`.",
            "",
        ]
        for ent in self.entities:
            lines.append(f"class {ent.class_name}:")
            lines.append(f'    """{ent.doc}"""')
            lines.append("")
            for a in ent.attributes:
                lines.append(f"    {a.name}: np.ndarray  # shape [n, {a.size}] = {a.slice_text(array)}; units: {a.units_text}")
                for chunk in textwrap.wrap(a.meaning, max(width - 8, 40)):
                    lines.append(f"    #   {chunk}")
            lines.append("")
            lines.append("")
        lines.append("class Env:")
        doc = textwrap.wrap(self.description, max(width - 4, 40)) or [self.task]
        lines.append('    """' + doc[0])
        lines.extend("    " + d for d in doc[1:])
        lines.append('    """')
        lines.append("")
        for ent in self.entities:
            lines.append(f"    {ent.name}: {ent.class_name}")
        if self.action is not None:
            lines.append(f"    action: np.ndarray  # {self.action.text()}")
        if self.max_episode_steps:
            lines.append(f"    max_episode_steps: int = {self.max_episode_steps}")
        if self.success:
            lines.append("    # success (how the task is judged):")
            for chunk in textwrap.wrap(self.success, max(width - 8, 40)):
                lines.append(f"    #   {chunk}")
        return "\n".join(lines).rstrip() + "\n"

    def field_table(self) -> str:
        """A plain table ``name  slice  units  meaning`` (for people, logs and critic feedback)."""
        rows = [(a.name, f"[{a.start}:{a.stop}]", a.units, a.meaning) for a in self.attributes]
        w0 = max((len(r[0]) for r in rows), default=4)
        w1 = max((len(r[1]) for r in rows), default=5)
        w2 = max((len(r[2]) for r in rows), default=5)
        return "\n".join(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]:<{w2}}  {r[3]}" for r in rows)


def _action_info(action_space: Any) -> ActionInfo | None:
    if action_space is None:
        return None
    shape = tuple(int(d) for d in getattr(action_space, "shape", ()) or ())
    low = getattr(action_space, "low", None)
    high = getattr(action_space, "high", None)
    if low is None or high is None:
        return ActionInfo(shape)
    return ActionInfo(shape, tuple(float(v) for v in np.ravel(low)), tuple(float(v) for v in np.ravel(high)))


def build_abstraction(card: Any, action_space: Any = None) -> EnvAbstraction:
    """Build the :class:`EnvAbstraction` of a task card.

    Args:
        card: a :class:`~robo_reward.envs.cards.TaskCard`, or a card name / YAML path.
        action_space: the env's action space (a Gymnasium ``Box``), to show the action's
            shape and bounds; omitted when ``None``.

    Raises:
        ConfigError: the card describes no observation fields (an LLM cannot write a
            reward from observation indices it knows nothing about; add ``observation:``
            entries to the card).
    """
    if not hasattr(card, "observation"):
        from ...envs import load_card

        card = load_card(card)
    fields: Sequence[Any] = list(card.observation)
    if not fields:
        raise ConfigError(
            f"task card {card.name!r} has no 'observation' fields; add one entry per observation slice "
            "(name, start, stop, meaning, units) so the LLM knows what the numbers are"
        )
    groups: dict[str, list[Attribute]] = {}
    for f in sorted(fields, key=lambda f: f.start):
        ent = _entity_of(f.name)
        groups.setdefault(ent, []).append(
            Attribute(f.name, ent, int(f.start), int(f.stop), " ".join(str(f.meaning).split()), str(f.units))
        )
    order = [e for e in ENTITY_DOCS if e in groups] + [e for e in groups if e not in ENTITY_DOCS]
    entities = tuple(Entity(e, ENTITY_DOCS.get(e, ""), tuple(groups[e])) for e in order)
    obs_dim = int(card.obs_dim or max(f.stop for f in fields))
    success = " ".join(str(card.success.description or card.success.summary()).split())
    return EnvAbstraction(
        task=card.name,
        env_id=card.env_id,
        description=" ".join(str(card.description or "").split()),
        success=success,
        obs_dim=obs_dim,
        entities=entities,
        action=_action_info(action_space),
        max_episode_steps=int(card.max_episode_steps),
    )


_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def fields_used(code: str, abstraction: EnvAbstraction) -> list[str]:
    """Observation fields whose slices (``[:, a:b]``) or names occur in ``code`` (for critic notes)."""
    used = []
    words = set(_WORD_RE.findall(code))
    compact = code.replace(" ", "")
    for a in abstraction.attributes:
        if a.name in words or f"[:,{a.start}:{a.stop}]" in compact:
            used.append(a.name)
    return used


__all__ = [
    "ActionInfo",
    "Attribute",
    "ENTITY_DOCS",
    "Entity",
    "EnvAbstraction",
    "build_abstraction",
    "fields_used",
]

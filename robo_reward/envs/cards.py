"""Task cards: one YAML file per task that says how to build, judge, render and describe it.

A task card is the single place where the library learns about a task::

    name: mujoco-reacher-v5          # card name, ends in -vN
    family: mujoco                   # mujoco | metaworld | pybullet | maniskill | other
    env_id: Reacher-v5               # the Gymnasium id that is built
    env_kwargs: {}                   # keyword arguments for gymnasium.make
    max_episode_steps: 50
    obs_dim: 10                      # optional: checked against the observation fields
    success:                         # an info key (with optional threshold) ...
      predicate: robo_reward.envs.success_predicates:reacher_fingertip_near_target
      description: fingertip within 5 cm of the target
    render: {camera: null, width: 224, height: 224, shadows: false, reflections: false}
    vlm:                             # text for VLM rewards (goal vs. baseline prompts)
      goal: ["a robot arm touching the red dot with its fingertip"]
      baseline: ["a robot arm"]
    observation:                     # what each slice of the flat observation means
      - {name: cos_joint_angles, start: 0, stop: 2, meaning: "...", units: "-"}
    description: free text for people and LLMs

Cards shipped with the library live in the data folder ``envs/`` (see
:func:`robo_reward.paths.data_dir`), one file per card, named ``<card name>.yaml``,
in any sub-folder. :func:`load_card` finds them by name or loads any YAML path;
:func:`list_cards` loads them all. Every problem is raised as
:class:`~robo_reward.core.errors.TaskCardError` naming the file.
"""

from __future__ import annotations

import difflib
import re
import threading
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..core.errors import TaskCardError
from ..core.success import SuccessSignal
from . import GYM_NAMESPACE, card_names, shipped_card_paths

#: The families a card may belong to (decides how the env is built and rendered).
FAMILIES = ("mujoco", "metaworld", "pybullet", "maniskill", "other")

#: Card names: lower-case words joined by ``-``/``_``/``.``, ending in a version ``-vN``.
CARD_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*-v[0-9]+$")

_FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PREDICATE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SuccessSpec(BaseModel):
    """The card's success signal: an ``info`` key (optionally with a threshold) or a predicate.

    Mirrors :class:`robo_reward.core.success.SuccessSignal`; exactly one of ``info_key``
    and ``predicate`` is set.

    Attributes:
        info_key: success when ``info[info_key]`` is truthy, or with ``threshold`` when
            ``info[info_key] >= threshold`` (``<=`` with ``below: true``).
        threshold: optional numeric threshold for ``info_key``.
        below: compare with ``<=`` instead of ``>=``.
        predicate: ``"module:function"`` called as ``fn(next_obs, infos) -> bool[n]``.
        description: what success means, in words (shown by ``robo-reward tasks``).
    """

    model_config = _STRICT

    info_key: str | None = None
    threshold: float | None = None
    below: bool = False
    predicate: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> "SuccessSpec":
        if (self.info_key is None) == (self.predicate is None):
            raise ValueError("give exactly one of 'info_key' or 'predicate'")
        if self.predicate is not None:
            if self.threshold is not None or self.below:
                raise ValueError("'threshold' and 'below' apply to 'info_key', not to 'predicate'")
            if not _PREDICATE_RE.match(self.predicate):
                raise ValueError(f"'predicate' must look like 'package.module:function', got {self.predicate!r}")
        if self.info_key is not None and not self.info_key.strip():
            raise ValueError("'info_key' must not be empty")
        if self.below and self.threshold is None:
            raise ValueError("'below: true' needs a 'threshold'")
        return self

    def signal(self) -> SuccessSignal:
        """Return the equivalent :class:`~robo_reward.core.success.SuccessSignal`."""
        return SuccessSignal(
            info_key=self.info_key, threshold=self.threshold, below=self.below, predicate=self.predicate
        )

    def summary(self) -> str:
        """A one-line rendering such as ``info['success']`` or ``info['x_velocity'] >= 2.0``."""
        if self.predicate is not None:
            return f"{self.predicate}(obs, info)"
        if self.threshold is None:
            return f"info[{self.info_key!r}]"
        return f"info[{self.info_key!r}] {'<=' if self.below else '>='} {self.threshold:g}"


class RenderSpec(BaseModel):
    """How frames are rendered for this task (VLM rewards, videos).

    Attributes:
        camera: a named camera of the model, or ``None`` for the env's default view.
        camera_roll: degrees to turn the named camera about its viewing axis before
            rendering (MetaWorld's cameras are defined upside down for the renderer
            it was written for; its cards use ``180``).
        width, height: frame size in pixels.
        shadows: keep the lights' shadows (off by default: ~8x faster software rendering).
        reflections: keep reflective materials (off by default).
    """

    model_config = _STRICT

    camera: str | None = None
    camera_roll: float = 0.0
    width: int = Field(224, gt=0, le=8192)
    height: int = Field(224, gt=0, le=8192)
    shadows: bool = False
    reflections: bool = False

    @model_validator(mode="after")
    def _roll_needs_camera(self) -> "RenderSpec":
        if self.camera_roll and self.camera is None:
            raise ValueError("'camera_roll' needs a named 'camera'")
        return self


class VLMSpec(BaseModel):
    """Prompts for vision-language rewards (VLM-RM's goal–baseline projection).

    Attributes:
        goal: descriptions of frames where the task is done.
        baseline: neutral descriptions of the scene (the direction the goal is measured from).
    """

    model_config = _STRICT

    goal: list[str] = Field(min_length=1)
    baseline: list[str] = Field(min_length=1)

    @field_validator("goal", "baseline", mode="before")
    @classmethod
    def _one_string_is_a_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("goal", "baseline")
    @classmethod
    def _no_empty_prompts(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("prompts must not be empty strings")
        return v


class ObsField(BaseModel):
    """A named slice ``obs[start:stop]`` of the flat observation.

    Attributes:
        name: an identifier, unique within the card.
        start, stop: the slice (``0 <= start < stop``).
        meaning: what the numbers are, in words (LLM-facing).
        units: e.g. ``m``, ``rad``, ``m/s``, ``rad/s``, ``N``; ``-`` when dimensionless.
    """

    model_config = _STRICT

    name: str
    start: int = Field(ge=0)
    stop: int = Field(gt=0)
    meaning: str
    units: str = "-"

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _FIELD_NAME_RE.match(v):
            raise ValueError(f"field name {v!r} must be an identifier (letters, digits, '_')")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "ObsField":
        if self.stop <= self.start:
            raise ValueError(f"field {self.name!r}: stop ({self.stop}) must be greater than start ({self.start})")
        return self

    @property
    def size(self) -> int:
        """Number of observation entries in the field."""
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        """``slice(start, stop)``."""
        return slice(self.start, self.stop)


class TaskCard(BaseModel):
    """A validated task card (see the module docstring for the YAML layout).

    Attributes:
        name: card name ending in ``-vN`` (``mujoco-reacher-v5``); the Gymnasium id
            ``robo_reward/<name>`` builds it.
        family: which simulator family the env belongs to; it decides how the env is
            built and rendered. ``mujoco`` (Gymnasium MuJoCo), ``metaworld`` (MetaWorld
            v3), ``pybullet`` (the envs of :mod:`robo_reward.envs.pybullet_envs`, which take
            the ``render`` section as constructor arguments; the ``pybullet`` extra),
            ``maniskill`` (ManiSkill 3 on the CPU, one env per process; the ``maniskill``
            extra and a Vulkan driver), ``other`` (any Gymnasium id, built as is).
        env_id: the Gymnasium id passed to ``gymnasium.make``.
        env_kwargs: keyword arguments for ``gymnasium.make``.
        max_episode_steps: episode length (time limit).
        obs_dim: the flat observation size, when known (checked against ``observation``).
        success: the success signal.
        render: camera, frame size and visual options.
        vlm: goal/baseline prompts for VLM rewards (optional).
        observation: named slices of the observation (may be empty).
        description: free text for people and LLMs.
        deploy: optional deployment settings (``rate_hz`` and ``safety``), validated by
            :func:`robo_reward.deploy.safety.make_deploy_settings`.
    """

    model_config = _STRICT

    name: str
    family: Literal["mujoco", "metaworld", "pybullet", "maniskill", "other"]
    env_id: str = Field(min_length=1)
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    max_episode_steps: int = Field(gt=0)
    obs_dim: int | None = Field(None, gt=0)
    success: SuccessSpec
    render: RenderSpec = Field(default_factory=RenderSpec)
    vlm: VLMSpec | None = None
    observation: list[ObsField] = Field(default_factory=list)
    description: str = ""
    deploy: dict[str, Any] | None = None

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("deploy")
    @classmethod
    def _deploy_settings_valid(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from ..deploy.safety import make_deploy_settings

            make_deploy_settings(v, where=" in the task card")
        return v

    @field_validator("name")
    @classmethod
    def _versioned_name(cls, v: str) -> str:
        if not CARD_NAME_RE.match(v):
            raise ValueError(
                f"card name {v!r} must be lower-case letters, digits, '-', '_' or '.', ending in a version "
                "like '-v1' (e.g. 'mujoco-reacher-v5')"
            )
        return v

    @model_validator(mode="after")
    def _fields_consistent(self) -> "TaskCard":
        seen: set[str] = set()
        for f in self.observation:
            if f.name in seen:
                raise ValueError(f"observation field name {f.name!r} is used twice")
            seen.add(f.name)
            if self.obs_dim is not None and f.stop > self.obs_dim:
                raise ValueError(
                    f"observation field {f.name!r} [{f.start}:{f.stop}] lies outside the observation "
                    f"(obs_dim is {self.obs_dim})"
                )
        ordered = sorted(self.observation, key=lambda f: f.start)
        for a, b in zip(ordered, ordered[1:]):
            if b.start < a.stop:
                raise ValueError(
                    f"observation fields {a.name!r} [{a.start}:{a.stop}] and {b.name!r} [{b.start}:{b.stop}] overlap"
                )
        return self

    @property
    def source(self) -> Path | None:
        """The YAML file the card was loaded from (``None`` if built in code)."""
        return self._source

    @property
    def gym_id(self) -> str:
        """The Gymnasium id this card is registered under: ``robo_reward/<name>``."""
        return f"{GYM_NAMESPACE}/{self.name}"

    def success_signal(self) -> SuccessSignal:
        """Return the card's :class:`~robo_reward.core.success.SuccessSignal`."""
        return self.success.signal()

    def field(self, name: str) -> ObsField:
        """Return the observation field ``name`` or raise :class:`TaskCardError` listing the fields."""
        for f in self.observation:
            if f.name == name:
                return f
        raise TaskCardError(
            f"task card {self.name!r} has no observation field {name!r}; fields: "
            f"{', '.join(f.name for f in self.observation) or '(none)'}"
        )

    def covered_dims(self) -> int:
        """How many observation entries the ``observation`` fields describe."""
        return sum(f.size for f in self.observation)


# ----------------------------------------------------------------------------- loading

_CACHE: dict[Path, tuple[float, TaskCard]] = {}
_CACHE_LOCK = threading.Lock()


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(card)"
        msg = err.get("msg", "")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (check the spelling; see robo_reward.envs.cards.TaskCard for the allowed fields)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def card_from_dict(data: Any, source: str | Path | None = None) -> TaskCard:
    """Validate a mapping as a :class:`TaskCard`.

    Raises:
        TaskCardError: the mapping does not describe a valid card (the message lists every problem).
    """
    where = str(source) if source is not None else "<task card>"
    if not isinstance(data, dict):
        raise TaskCardError(f"{where}: a task card must be a YAML mapping, got {type(data).__name__}")
    try:
        card = TaskCard.model_validate(data)
    except ValidationError as exc:
        raise TaskCardError(f"{where}: invalid task card:\n{_format_validation_error(exc)}") from None
    if source is not None:
        card._source = Path(source)
    return card


def _read_card_file(path: Path) -> TaskCard:
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise TaskCardError(f"{path}: cannot read task card: {exc}") from None
    with _CACHE_LOCK:
        hit = _CACHE.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskCardError(f"{path}: cannot read task card: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaskCardError(f"{path}: not valid YAML: {exc}") from None
    card = card_from_dict(data, source=path)
    with _CACHE_LOCK:
        _CACHE[path] = (mtime, card)
    return card


def _looks_like_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml")) or "/" in s or "\\" in s


def load_card(name_or_path: str | Path | TaskCard) -> TaskCard:
    """Load a task card by shipped name (``"metaworld-reach-v3"``) or from a YAML path.

    A :class:`TaskCard` is returned as is. Loaded files are cached (until they change).

    Raises:
        TaskCardError: unknown name (the message lists close matches and every known
            card), missing file, invalid YAML, or a card that fails validation.
    """
    if isinstance(name_or_path, TaskCard):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path.startswith(GYM_NAMESPACE + "/") and not name_or_path.endswith(
        (".yaml", ".yml")
    ):
        name_or_path = name_or_path[len(GYM_NAMESPACE) + 1 :]  # a Gymnasium id: robo_reward/<card>
    if isinstance(name_or_path, Path) or (isinstance(name_or_path, str) and _looks_like_path(name_or_path)):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise TaskCardError(f"task card file {str(path)!r} does not exist")
        return _read_card_file(path.resolve())
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise TaskCardError(f"a task card is given by name or YAML path, got {name_or_path!r}")
    name = name_or_path.strip()
    paths = shipped_card_paths()
    path = paths.get(name)
    if path is None:
        known = sorted(paths)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise TaskCardError(
            f"unknown task card {name!r}.{hint} Known cards: {', '.join(known) or '(none)'}. "
            "You can also pass the path of a YAML card."
        )
    card = _read_card_file(path)
    if card.name != name:
        raise TaskCardError(f"{path}: the card is named {card.name!r} but its file is named {name!r}.yaml; rename one")
    return card


def list_cards() -> list[TaskCard]:
    """Load and return every shipped task card, sorted by name."""
    return [load_card(name) for name in card_names()]

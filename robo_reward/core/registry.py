"""The reward registry: names → plugin factories, spec strings, entry points.

A reward is made from

* a registered name plus keyword arguments: ``make_reward("sparse-success", key="success")``;
* a spec string ``"name:key=value,key2=value2"`` (values are parsed as YAML scalars, so
  ``3``, ``0.5``, ``true`` and ``[1, 2]`` have their natural types; a value may contain
  commas as long as no ``word=`` follows them);
* a mapping ``{"name": ..., **kwargs}`` (the form used in YAML run configs);
* an already-built :class:`~robo_reward.core.types.RewardPlugin`, returned as is.

Third-party packages add rewards through the entry-point group ``robo_reward.rewards``;
each entry point names a :class:`RewardPlugin` subclass or a factory returning one.
"""

from __future__ import annotations

import inspect
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import yaml

from .errors import ConfigError, UnknownRewardError
from .types import RewardPlugin

ENTRY_POINT_GROUP = "robo_reward.rewards"

Factory = Callable[..., RewardPlugin]


@dataclass(frozen=True)
class RewardEntry:
    """One registered reward: its name, factory, one-line summary and origin."""

    name: str
    factory: Factory
    summary: str
    origin: str  # "builtin", or the distribution that provided the entry point


_REGISTRY: dict[str, RewardEntry] = {}
_ENTRY_POINTS_LOADED = False
_LOCK = threading.Lock()
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def register_reward(name: str, factory: Factory | None = None, *, overwrite: bool = False, origin: str = "builtin"):
    """Register ``factory`` under ``name``. Usable as a class decorator.

    Args:
        name: lower-case name (letters, digits, ``-``, ``_``, ``.``).
        factory: a :class:`RewardPlugin` subclass or a callable returning a plugin.
        overwrite: replace an existing entry instead of raising.
        origin: where the entry comes from, shown by :func:`list_rewards`.
    """

    def deco(f: Factory) -> Factory:
        if not _NAME_RE.match(name):
            raise ConfigError(f"invalid reward name {name!r}: use lower-case letters, digits, '-', '_' or '.'")
        if name in _REGISTRY and not overwrite and _REGISTRY[name].factory is not f:
            raise ConfigError(f"a reward named {name!r} is already registered ({_REGISTRY[name].origin})")
        if isinstance(f, type) and issubclass(f, RewardPlugin):
            f.name = name
        _REGISTRY[name] = RewardEntry(name, f, _summary(f), origin)
        return f

    if factory is not None:
        return deco(factory)
    return deco


def _load_builtins() -> None:
    # Importing the modules runs their @register_reward decorators.
    from ..rewards import builtin  # noqa: F401
    from ..rewards import compose  # noqa: F401
    from ..rewards import vlm  # noqa: F401  (vlm-rm; open_clip loads only when a model is built)
    from ..rewards.code import plugin as _code_plugin  # noqa: F401  (sandboxed reward code)
    from ..rewards.preference import plugin as _preference_plugin  # noqa: F401  (torch loads only with a model)
    from ..rewards import perceptual  # noqa: F401  (torch/torchvision load only when a model is built)
    from ..rewards import rlvlmf  # noqa: F401  (rl-vlm-f; torch loads only when a model is built)


def load_entry_points(force: bool = False) -> None:
    """Register the rewards of every installed ``robo_reward.rewards`` entry point.

    Done once, lazily, on first use of the registry; ``force=True`` looks again (for
    packages installed while the process runs).
    """
    global _ENTRY_POINTS_LOADED
    with _LOCK:
        if _ENTRY_POINTS_LOADED and not force:
            return
        _ENTRY_POINTS_LOADED = True
        _load_builtins()
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _REGISTRY:
                continue  # built-ins win; a plugin package cannot silently shadow them
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party package must not break the library
                import warnings

                warnings.warn(f"could not load reward entry point {ep.name!r} ({ep.value}): {exc}", stacklevel=2)
                continue
            dist = getattr(ep, "dist", None)
            register_reward(ep.name, obj, origin=f"entry point of {dist.name if dist else ep.value}")


def list_rewards() -> dict[str, str]:
    """Return ``{name: one-line summary}`` of every registered reward, sorted by name."""
    load_entry_points()
    return {k: _REGISTRY[k].summary for k in sorted(_REGISTRY)}


def get_reward_entry(name: str) -> RewardEntry:
    """Return the registry entry for ``name`` or raise :class:`UnknownRewardError` listing what exists."""
    load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownRewardError(
            f"unknown reward {name!r}.{hint} Registered rewards: {', '.join(sorted(_REGISTRY))}"
        ) from None


_SPLIT_RE = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:k=v,k2=v2"`` into ``("name", {"k": v, "k2": v2})``.

    Values are parsed as YAML scalars (``"0.5"`` → ``0.5``, ``"true"`` → ``True``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a reward spec must be a non-empty string, got {spec!r}")
    name, sep, rest = spec.strip().partition(":")
    name = name.strip()
    kwargs: dict[str, Any] = {}
    if sep and rest.strip():
        for part in _SPLIT_RE.split(rest):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise ConfigError(
                    f"bad argument {part!r} in reward spec {spec!r}: write 'name:key=value,key2=value2'"
                )
            if key in kwargs:
                raise ConfigError(f"argument {key!r} given twice in reward spec {spec!r}")
            try:
                kwargs[key] = yaml.safe_load(value.strip()) if value.strip() else ""
            except yaml.YAMLError:
                kwargs[key] = value.strip()
    return name, kwargs


def _accepted_params(factory: Factory) -> tuple[list[str], bool]:
    target = factory.__init__ if isinstance(factory, type) else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return [], True
    names = [
        p.name
        for p in sig.parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def make_reward(spec: Any, /, task: Any = None, **kwargs: Any) -> RewardPlugin:
    """Build a reward plugin from a name, spec string, mapping or plugin instance.

    Args:
        spec: ``"name"``, ``"name:k=v,..."``, ``{"name": ..., **kwargs}`` or a plugin.
        task: an optional :class:`~robo_reward.envs.cards.TaskCard`; passed to factories
            that take a ``task`` argument (e.g. ``sparse-success`` reads its success signal).
        **kwargs: more keyword arguments for the factory (they override the spec's).

    Raises:
        UnknownRewardError: the name is not registered (the message lists what is).
        ConfigError: the arguments do not fit the factory (the message lists what does).
    """
    if isinstance(spec, RewardPlugin):
        if kwargs:
            raise ConfigError("keyword arguments cannot be applied to an already-built reward plugin")
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ConfigError(f"a reward mapping needs a 'name' key, got keys {sorted(spec)}")
        name = spec.pop("name")
        args = {**spec, **kwargs}
    elif isinstance(spec, str):
        name, args = parse_spec(spec)
        args.update(kwargs)
    else:
        raise ConfigError(
            f"cannot make a reward from {type(spec).__name__}; give a name, 'name:k=v' string, mapping or RewardPlugin"
        )
    entry = get_reward_entry(name)
    accepted, var_kw = _accepted_params(entry.factory)
    if task is not None and "task" in accepted and "task" not in args:
        args["task"] = task
    unknown = [k for k in args if k not in accepted] if not var_kw else []
    if unknown:
        shown = [a for a in accepted if a != "task"]
        raise ConfigError(
            f"reward {name!r} got unknown argument(s) {unknown}; it accepts: {', '.join(shown) or '(no arguments)'}"
        )
    try:
        plugin = entry.factory(**args)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for reward {name!r}: {exc}") from exc
    if not isinstance(plugin, RewardPlugin):
        raise ConfigError(f"the factory for reward {name!r} returned {type(plugin).__name__}, not a RewardPlugin")
    return plugin

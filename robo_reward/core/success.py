"""Success signals: how a task card says whether an episode step counts as success."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ConfigError
from .infos import unbatch_infos


def import_object(path: str, what: str = "object") -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises:
        ConfigError: the path is malformed, the module cannot be imported or has no such attribute.
    """
    if not isinstance(path, str) or ":" not in path:
        raise ConfigError(f"{what} must be given as 'package.module:name', got {path!r}")
    mod_name, _, attr = path.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {mod_name!r} for {what} {path!r}: {exc}") from exc
    obj: Any = mod
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {mod_name!r} has no attribute {attr!r} ({what} {path!r})") from None
    return obj


@dataclass(frozen=True)
class SuccessSignal:
    """Where success comes from: an ``info`` key (optionally against a threshold) or a predicate.

    Exactly one of ``info_key`` and ``predicate`` is set.

    Attributes:
        info_key: ``info[info_key]`` is truthy (or, with ``threshold``, ``>= threshold``;
            with ``below=True``, ``<= threshold``).
        threshold: optional numeric threshold for ``info_key``.
        below: compare ``<=`` instead of ``>=``.
        predicate: ``"module:function"``; called as ``fn(next_obs, infos) -> bool[n]`` on
            a batch (``next_obs`` is ``[n, ...]``, ``infos`` a list of ``n`` dicts).
    """

    info_key: str | None = None
    threshold: float | None = None
    below: bool = False
    predicate: str | None = None

    def __post_init__(self) -> None:
        if (self.info_key is None) == (self.predicate is None):
            raise ConfigError("a success signal needs exactly one of 'info_key' or 'predicate'")
        if self.predicate is not None and self.threshold is not None:
            raise ConfigError("'threshold' applies to 'info_key', not to 'predicate'")

    @property
    def requires(self) -> frozenset[str]:
        """What a reward plugin evaluating this signal needs from the wrappers."""
        return frozenset({"info"}) if self.predicate is None else frozenset({"next_obs", "info"})

    def _fn(self) -> Callable[..., Any]:
        fn = getattr(self, "_cached_fn", None)
        if fn is None:
            fn = import_object(self.predicate, "success predicate")  # type: ignore[arg-type]
            object.__setattr__(self, "_cached_fn", fn)
        return fn

    def evaluate(self, next_obs: Any, infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Return ``bool[n]``: which rows are successful."""
        if self.predicate is not None:
            out = np.asarray(self._fn()(next_obs, infos), dtype=bool).reshape(-1)
            if out.shape != (len(infos),):
                raise ConfigError(
                    f"success predicate {self.predicate!r} returned shape {out.shape}, expected ({len(infos)},)"
                )
            return out
        key = self.info_key
        vals = []
        for info in infos:
            if key not in info:
                raise ConfigError(
                    f"success info key {key!r} is missing from the step info (keys: {sorted(info)[:20]}); "
                    "fix the task card's success signal"
                )
            vals.append(info[key])
        arr = np.asarray(vals, dtype=np.float64)
        if self.threshold is None:
            return arr != 0
        return arr <= self.threshold if self.below else arr >= self.threshold

    def evaluate_vector(self, next_obs: Any, info: Mapping[str, Any], n: int) -> np.ndarray:
        """:meth:`evaluate` on a Gymnasium *vector* ``info`` (a dict of ``[n]`` arrays with ``_key`` masks).

        An ``info_key`` signal reads the batched array directly (no per-row dicts, which
        matters for thousands of sub-envs); a predicate gets the per-row dicts it expects.
        """
        if self.info_key is not None and self.info_key in info:
            mask = info.get(f"_{self.info_key}")
            if mask is None or bool(np.all(mask)):
                arr = np.asarray(info[self.info_key], dtype=np.float64).reshape(-1)
                if arr.shape == (n,):
                    if self.threshold is None:
                        return arr != 0
                    return arr <= self.threshold if self.below else arr >= self.threshold
        return self.evaluate(next_obs, unbatch_infos(info, n))

"""Offline reinforcement learning: datasets collected through the wrappers, reward relabelling, IQL.

* :mod:`.dataset` — :class:`OfflineDataset`, :func:`collect_dataset` (scripted MetaWorld
  experts, noisy experts, random actions, mixtures), ``.npz`` files and Minari export,
  :func:`relabel` with any reward plugin.
* :mod:`.iql` — Implicit Q-Learning (Kostrikov et al. 2021).
* :mod:`.demos` — demonstrations with MetaWorld phase labels, for perceptual rewards.

Submodules import ``torch`` and the simulators lazily, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "OfflineDataset": "dataset",
    "collect_dataset": "dataset",
    "load_dataset": "dataset",
    "relabel": "dataset",
    "to_minari": "dataset",
    "from_minari": "dataset",
    "IQL": "iql",
    "IQLConfig": "iql",
    "evaluate_policy": "iql",
    "collect_demos": "demos",
    "Demo": "demos",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public names lazily from their submodules."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)

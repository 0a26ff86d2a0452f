"""Where the shipped data folders (``envs/``, ``agents/``, ``assets/``) are.

In a wheel they live inside the package as ``robo_reward/_data/<name>``; in a source
checkout (editable install) they are the top-level folders of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder of shipped data ``name`` (``"envs"``, ``"agents"`` or ``"assets"``)."""
    if name not in ("envs", "agents", "assets"):
        raise ValueError(f"unknown data folder {name!r}")
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"robo_reward's data folder {name!r} is missing (looked in {_PKG / '_data' / name} and "
        f"{_PKG.parent / name}); reinstall the package"
    )

"""The reward library: a folder in which every LLM-written reward version is kept, with its history.

Every candidate a loop produces — accepted or rejected — becomes a *version*, a
sub-folder named ``v0001``, ``v0002``, ... ::

    <library>/
      v0003/
        version.json   id, task, parent version, method (text2reward / auto-mc / icpl / ...),
                       status, model, token usage, round/sample, human feedback, timestamps
        prompt.json    the chat messages sent to the LLM
        response.txt   the LLM's raw answer
        reward.py      the extracted reward code, with a ``# task:`` / ``# written-by:`` header
        critic.json    the critic's findings (static checks and dry run)
        metrics.json   training metrics and the trajectory analysis (when it was trained)

``parent`` links a version to the one it was revised from, so :meth:`RewardLibrary.lineage`
walks a refinement chain back to its zero-shot origin. The ``code`` reward plugin loads a
version by its folder (``code:path=<library>/v0003``) or its ``reward.py``.

Files are written atomically (temporary file, then rename) and version folders are
claimed with an exclusive ``mkdir``, so a killed loop never leaves a half-written
version and two loops writing to one library never take the same number.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ...core.errors import ConfigError

from .plugin import VERSION_CODE_FILE as CODE_FILE  # the file of a version folder the ``code`` plugin reads

#: The file of a version folder that holds its metadata.
META_FILE = "version.json"
#: Status values of a version, in the order a loop moves them along.
STATUSES = ("proposed", "rejected", "accepted", "trained")

_ID_RE = re.compile(r"^v(\d{4,})$")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def _jsonable(x: Any) -> Any:
    """Turn numpy scalars/arrays, paths, tuples and non-finite floats into strict JSON values."""
    import math

    import numpy as np

    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def code_header(task: str, written_by: str, **extra: Any) -> str:
    """The ``# key: value`` header of a stored ``reward.py`` (same form as the few-shot examples)."""
    lines = [f"# task: {task}", f"# written-by: {written_by}"]
    lines += [f"# {k.replace('_', '-')}: {v}" for k, v in extra.items() if v not in (None, "")]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RewardVersion:
    """One version in a :class:`RewardLibrary` (a view of its folder; reads files on access).

    Attributes:
        path: the version folder.
        meta: the contents of ``version.json`` when the view was made.
    """

    path: Path
    meta: Mapping[str, Any]

    @property
    def id(self) -> str:
        """The version id (``v0003``)."""
        return str(self.meta["id"])

    @property
    def task(self) -> str:
        """The task card the reward was written for."""
        return str(self.meta["task"])

    @property
    def parent(self) -> str | None:
        """The id of the version this one was revised from (``None`` for a first draft)."""
        return self.meta.get("parent")

    @property
    def status(self) -> str:
        """``proposed``, ``rejected`` (failed the critic), ``accepted`` or ``trained``."""
        return str(self.meta.get("status", "proposed"))

    @property
    def method(self) -> str:
        """The loop that made it (``text2reward``, ``refine``, ``auto-mc``, ``icpl``, ...)."""
        return str(self.meta.get("method", ""))

    @property
    def code_path(self) -> Path:
        """``<version>/reward.py``."""
        return self.path / CODE_FILE

    @property
    def spec(self) -> dict[str, Any]:
        """The reward spec that trains on this version: ``{"name": "code", "path": <version folder>}``."""
        return {"name": "code", "path": str(self.path)}

    @property
    def spec_string(self) -> str:
        """The same spec as a string, for the command line: ``code:path=<version folder>``."""
        return f"code:path={self.path}"

    def code(self) -> str:
        """The stored reward code (header included)."""
        return self.code_path.read_text(encoding="utf-8")

    def body(self) -> str:
        """The code without its ``# key: value`` header (what an LLM is shown when revising it)."""
        from .fewshot import strip_header

        return strip_header(self.code())

    def prompt(self) -> list[dict[str, Any]]:
        """The chat messages that produced it."""
        return self._json("prompt.json") or []

    def response(self) -> str:
        """The LLM's raw answer."""
        p = self.path / "response.txt"
        return p.read_text(encoding="utf-8") if p.is_file() else ""

    def critic(self) -> dict[str, Any] | None:
        """The critic's findings, or ``None`` if it was not checked."""
        return self._json("critic.json")

    def metrics(self) -> dict[str, Any] | None:
        """Training metrics and trajectory analysis, or ``None`` if it was not trained."""
        return self._json("metrics.json")

    def _json(self, name: str) -> Any:
        p = self.path / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


class RewardLibrary:
    """A folder of reward versions (see the module docstring for the layout).

    Args:
        root: the library folder (created when ``create`` is true).
        create: make the folder if it does not exist.

    Raises:
        ConfigError: ``root`` does not exist and ``create`` is false, or is a file.
    """

    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"reward library {self.root} is a file, not a folder")
        if not self.root.exists():
            if not create:
                raise ConfigError(f"reward library {self.root} does not exist")
            self.root.mkdir(parents=True)

    def __repr__(self) -> str:
        return f"RewardLibrary({str(self.root)!r})"

    # ------------------------------------------------------------------ writing
    def _claim(self) -> tuple[str, Path]:
        numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _ID_RE.match(p.name))]
        n = max(numbers, default=0) + 1
        while True:
            vid = f"v{n:04d}"
            path = self.root / vid
            try:
                path.mkdir()
                return vid, path
            except FileExistsError:
                n += 1

    def add(
        self,
        *,
        task: str,
        code: str,
        prompt: Sequence[Mapping[str, Any]] = (),
        response: str = "",
        parent: str | None = None,
        method: str = "",
        written_by: str = "",
        status: str = "proposed",
        critic: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        **info: Any,
    ) -> RewardVersion:
        """Store a new version and return it.

        Args:
            task: the task card name.
            code: the extracted reward code (a ``# task:``/``# written-by:`` header is
                prepended unless the code already starts with one).
            prompt: the chat messages sent.
            response: the LLM's raw answer.
            parent: the version this one revises (must exist in this library).
            method: which loop made it.
            written_by: who wrote it (e.g. the model name) for the code header.
            status: one of :data:`STATUSES`.
            critic, metrics: findings / training results, if already known.
            **info: more metadata for ``version.json`` (model, usage, round, sample, feedback, ...).

        Raises:
            ConfigError: unknown ``status`` or ``parent``.
        """
        if status not in STATUSES:
            raise ConfigError(f"unknown version status {status!r}; use one of {', '.join(STATUSES)}")
        if parent is not None and not (self.root / parent / META_FILE).is_file():
            raise ConfigError(f"parent version {parent!r} is not in {self.root}")
        vid, path = self._claim()
        if not code.lstrip().startswith("# task:"):
            code = code_header(task, written_by or "unknown", version=vid, parent=parent, method=method) + "\n" + code
        meta = {
            "id": vid,
            "task": task,
            "parent": parent,
            "method": method,
            "status": status,
            "written_by": written_by,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **info,
        }
        _write_json(path / "prompt.json", list(prompt))
        _write_text(path / "response.txt", response)
        _write_text(path / CODE_FILE, code)
        if critic is not None:
            _write_json(path / "critic.json", critic)
        if metrics is not None:
            _write_json(path / "metrics.json", metrics)
        _write_json(path / META_FILE, meta)  # last: a folder without it is not a version
        return RewardVersion(path, meta)

    def update(
        self,
        version: str | RewardVersion,
        *,
        status: str | None = None,
        critic: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        **info: Any,
    ) -> RewardVersion:
        """Record the critic's findings, training metrics, a new status or more metadata for a version."""
        v = self.get(version)
        if status is not None and status not in STATUSES:
            raise ConfigError(f"unknown version status {status!r}; use one of {', '.join(STATUSES)}")
        if critic is not None:
            _write_json(v.path / "critic.json", critic)
        if metrics is not None:
            _write_json(v.path / "metrics.json", metrics)
        meta = dict(v.meta)
        if status is not None:
            meta["status"] = status
        meta.update(info)
        meta["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _write_json(v.path / META_FILE, meta)
        return RewardVersion(v.path, meta)

    # ------------------------------------------------------------------ reading
    def get(self, version: str | Path | RewardVersion) -> RewardVersion:
        """A version by id (``v0003``), folder path, or a stale :class:`RewardVersion` (re-read).

        Raises:
            ConfigError: no such version (the message lists the ones there are).
        """
        if isinstance(version, RewardVersion):
            path = version.path
        else:
            s = str(version)
            path = self.root / s if _ID_RE.match(s) else Path(s)
            if path.is_file() and path.name == CODE_FILE:
                path = path.parent
        meta_path = path / META_FILE
        if not meta_path.is_file():
            have = ", ".join(v.id for v in self.versions()) or "(none)"
            raise ConfigError(f"no reward version {version!s} in {self.root}; versions: {have}")
        return RewardVersion(path, json.loads(meta_path.read_text(encoding="utf-8")))

    def __iter__(self) -> Iterator[RewardVersion]:
        return iter(self.versions())

    def __len__(self) -> int:
        return len(self.versions())

    def versions(self, task: str | None = None, status: str | None = None) -> list[RewardVersion]:
        """All complete versions, oldest first; optionally only of ``task`` / with ``status``."""
        out = []
        for p in sorted(self.root.iterdir()):
            if not _ID_RE.match(p.name) or not (p / META_FILE).is_file():
                continue
            v = RewardVersion(p, json.loads((p / META_FILE).read_text(encoding="utf-8")))
            if (task is None or v.task == task) and (status is None or v.status == status):
                out.append(v)
        return out

    def lineage(self, version: str | RewardVersion) -> list[RewardVersion]:
        """The chain of parents of ``version``, oldest first, ending with ``version`` itself."""
        chain = [self.get(version)]
        seen = {chain[0].id}
        while chain[-1].parent is not None:
            parent = self.get(chain[-1].parent)
            if parent.id in seen:
                raise ConfigError(f"reward library {self.root} has a parent cycle through {parent.id}")
            seen.add(parent.id)
            chain.append(parent)
        return chain[::-1]

    def children(self, version: str | RewardVersion) -> list[RewardVersion]:
        """Versions whose parent is ``version``."""
        vid = self.get(version).id
        return [v for v in self.versions() if v.parent == vid]

    def best(self, task: str | None = None, key: str = "success_rate") -> RewardVersion | None:
        """The trained version with the highest ``metrics[key]`` (ties: higher ground-truth return, then newer)."""

        def score(v: RewardVersion) -> tuple[float, float, str]:
            m = v.metrics() or {}
            val = m.get(key)
            gt = m.get("env_return")
            return (
                float(val) if isinstance(val, (int, float)) else float("-inf"),
                float(gt) if isinstance(gt, (int, float)) else float("-inf"),
                v.id,
            )

        trained = [v for v in self.versions(task=task) if v.metrics()]
        return max(trained, key=score) if trained else None


__all__ = ["CODE_FILE", "META_FILE", "STATUSES", "RewardLibrary", "RewardVersion", "code_header"]

"""Run one benchmark cell to completion: ``python -m robo_reward.bench.worker RUN_DIR``.

The scheduler (:mod:`robo_reward.bench.runner`) writes ``bench_cell.json`` into the run
folder and starts this module in a fresh process per cell, so a crash or a kill loses
only that cell. What it does depends on what the folder already holds:

* nothing (or only ``bench_cell.json``): train from scratch (``robo_reward.train.train``);
* ``config.yaml`` but no ``summary.json`` (a killed cell): continue from the latest
  checkpoint (``robo_reward.train.resume``), or start over in the same folder when no
  checkpoint was written yet;
* ``summary.json``: training is done.

Then, for a learned reward, it correlates that reward with the ground truth over
evaluation rollouts (:func:`~robo_reward.bench.alignment.reward_alignment`); a failure
there is recorded in ``alignment.json`` and does not fail the cell.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import ConfigError
from .suite import Cell

CELL_JSON = "bench_cell.json"
#: Keys of a run's ``config.yaml`` that must match the cell for the folder to count as this cell.
IDENTITY_KEYS = ("task", "reward", "agent", "seed", "steps", "mode")


def read_cell(run_dir: str | Path) -> Cell:
    """The cell recorded in ``run_dir/bench_cell.json``."""
    path = Path(run_dir) / CELL_JSON
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {CELL_JSON}; it was not created by `robo-reward bench run`")
    return Cell.from_json(json.loads(path.read_text()))


def write_cell(cell: Cell) -> Path:
    """Write ``bench_cell.json`` into the cell's run folder (creating it); return its path."""
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    path = cell.run_dir / CELL_JSON
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cell.to_json(), indent=2))
    tmp.replace(path)
    return path


def check_identity(cell: Cell) -> None:
    """Raise :class:`ConfigError` if the run folder holds a run of a different task/reward/agent/seed/steps."""
    from ..train.config import read_yaml_mapping

    path = cell.run_dir / "config.yaml"
    if not path.is_file():
        return
    have = read_yaml_mapping(path)
    want = {"mode": "replace", **cell.config}
    diff = [k for k in IDENTITY_KEYS if have.get(k) != want.get(k)]
    if diff:
        detail = ", ".join(f"{k}: folder has {have.get(k)!r}, suite wants {want.get(k)!r}" for k in diff)
        raise ConfigError(
            f"{cell.run_dir} already holds a different run ({detail}); delete the folder or give `bench run` "
            "another --out"
        )


def alignment_needed(cell: Cell) -> bool:
    """True when the cell wants reward-alignment rollouts and has no ``alignment.json`` yet."""
    from .alignment import ALIGNMENT_JSON

    return cell.alignment_episodes > 0 and not (cell.run_dir / ALIGNMENT_JSON).is_file()


def cell_state(cell: Cell) -> str:
    """``"done"`` (trained and, if asked, aligned), ``"partial"`` (started, not finished) or ``"new"``."""
    if (cell.run_dir / "summary.json").is_file():
        return "partial" if alignment_needed(cell) else "done"
    if (cell.run_dir / "config.yaml").is_file():
        return "partial"
    return "new"


LOCK_NAME = "bench.lock"


@contextmanager
def cell_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder, so two processes never train the same cell at once.

    The lock (``flock`` on ``bench.lock``) is released when the process exits, however it
    exits, so a killed cell never leaves a stale lock behind.

    Raises:
        ConfigError: another process holds the lock.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / LOCK_NAME, "a+")
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no protection
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                who = fh.read().strip() or "another process"
                raise ConfigError(f"{run_dir} is being run by {who}; wait for it or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def run_cell(cell: Cell, *, progress: bool = False, log: Any = print) -> dict[str, Any]:
    """Train (or resume) the cell's run and compute its reward alignment; return the training summary."""
    with cell_lock(cell.run_dir):
        return _run_cell(cell, progress=progress, log=log)


def _run_cell(cell: Cell, *, progress: bool, log: Any) -> dict[str, Any]:
    from ..train.config import make_run_config
    from ..train.runner import resume, train

    check_identity(cell)
    run_dir = cell.run_dir
    if (run_dir / "summary.json").is_file():
        log(f"{cell.id}: already trained")
        summary = json.loads((run_dir / "summary.json").read_text())
    elif (run_dir / "config.yaml").is_file():
        log(f"{cell.id}: resuming {run_dir}")
        summary = resume(run_dir, progress=progress, log=log)
    else:
        log(f"{cell.id}: training in {run_dir}")
        config = make_run_config({**cell.config, "out": str(run_dir)}, source=f" (cell {cell.id})")
        summary = train(config, progress=progress, log=log)
    if alignment_needed(cell):
        from .alignment import reward_alignment, write_alignment

        log(f"{cell.id}: correlating the learned reward with the ground truth over {cell.alignment_episodes} episodes")
        try:
            reward_alignment(run_dir, cell.alignment_episodes)
        except Exception as exc:  # a reward that cannot be replayed must not fail the trained cell
            log(f"{cell.id}: warning: reward alignment failed: {type(exc).__name__}: {exc}")
            write_alignment(run_dir, {"episodes": cell.alignment_episodes,
                                      "error": f"{type(exc).__name__}: {exc}"})
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m robo_reward.bench.worker RUN_DIR``: 0 on success, 1 on failure."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m robo_reward.bench.worker RUN_DIR", file=sys.stderr)
        return 2
    try:
        cell = read_cell(args[0])
        run_cell(cell, progress=False, log=lambda m: print(m, flush=True))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main())

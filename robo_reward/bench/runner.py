"""Run every cell of a suite: locally with a pool of worker processes, or as Ray tasks.

Each cell runs in its own process (``python -m robo_reward.bench.worker RUN_DIR``), so a
crash, an out-of-memory kill or a Ctrl-C loses at most that cell's progress since its
last checkpoint. Running the suite again skips finished cells and resumes the others
from their checkpoints. Output of each cell goes to ``RUN_DIR/bench.log``.

Backends:

* **local** (default): ``workers`` cells at a time; by default as many as the machine's
  cores divided by the suite's ``resources.cpus``.
* **Ray** (``ray=`` ``"local"`` or a cluster address such as ``"auto"`` or
  ``"ray://head:10001"``): each cell is a Ray task that asks for the suite's
  ``resources.cpus`` / ``resources.gpus``; Ray places them on the cluster. The run
  folders must be on a filesystem every node sees (NFS, a shared volume), and
  robo_reward must be installed on every node. Needs ``pip install ray``.

Progress shows cells done/total and environment steps done/total, read live from the
running cells' ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..core.errors import ConfigError, MissingDependencyError
from .suite import Cell, Suite
from .worker import cell_state, check_identity, write_cell

LOG_NAME = "bench.log"


@dataclass
class CellOutcome:
    """What happened to one cell in a :func:`run_suite` call.

    ``status`` is ``"skipped"`` (already done before this call), ``"done"``,
    ``"failed"`` (see ``log``) or ``"interrupted"``.
    """

    cell: Cell
    status: str
    seconds: float = 0.0
    returncode: int | None = None
    log: Path | None = None


def default_workers(cpus_per_cell: float = 1.0) -> int:
    """Cells to run at once on this machine: its usable cores divided by the cores per cell (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, int(cores // max(cpus_per_cell, 1e-9)))


def _child_env(cpus: float) -> dict[str, str]:
    env = dict(os.environ)
    threads = str(max(1, int(cpus)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, threads)
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_cell_process(run_dir: str, cpus: float = 1.0, on_start: Callable[[subprocess.Popen], None] | None = None) -> tuple[int, float]:
    """Run the worker for the cell in ``run_dir`` in a fresh Python process; return ``(returncode, seconds)``.

    Output is appended to ``run_dir/bench.log``. Used by both backends (on a Ray node
    it runs inside the Ray task).
    """
    t0 = time.perf_counter()
    log_path = Path(run_dir) / LOG_NAME
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start on {os.uname().nodename}\n")
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "robo_reward.bench.worker", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_child_env(cpus),
            start_new_session=True,  # Ctrl-C in the terminal is forwarded by the scheduler, once
        )
        if on_start is not None:
            on_start(proc)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:  # e.g. a cancelled Ray task: let the cell save a checkpoint first
            _signal(proc, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
            raise
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} exit {rc}\n")
    return rc, time.perf_counter() - t0


# ----------------------------------------------------------------------------- progress


def _last_timesteps(run_dir: Path) -> int:
    """The step count of the last ``metrics.jsonl`` line (0 if none), read from the file's end."""
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["timesteps"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


class _Progress:
    """Cells done/total and env steps done/total on a rich progress display (or plain log lines)."""

    def __init__(self, cells: Sequence[Cell], enabled: bool, log: Callable[[str], None]):
        self.cells = list(cells)
        self.enabled = enabled
        self.log = log
        self.total_steps = sum(c.steps for c in self.cells)
        self.done_steps: dict[str, int] = {}
        self.running: set[str] = set()
        self.n_done = 0
        self.n_failed = 0
        self._progress: Any = None
        self._lock = threading.Lock()  # worker threads report starts; the main thread draws

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), transient=False,
            )
            self._progress.__enter__()
            self._cells_task = self._progress.add_task("cells", total=len(self.cells), extra="")
            self._steps_task = self._progress.add_task("env steps", total=max(1, self.total_steps), extra="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.__exit__(*exc)

    def print(self, msg: str) -> None:
        if self._progress is not None:
            self._progress.console.print(msg, markup=False, highlight=False)
        else:
            self.log(msg)

    def started(self, cell: Cell) -> None:
        with self._lock:
            self.running.add(cell.id)

    def finished(self, cell: Cell, ok: bool) -> None:
        with self._lock:
            self.running.discard(cell.id)
        if ok:
            self.n_done += 1
            self.done_steps[cell.id] = cell.steps
        else:
            self.n_failed += 1
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            running_now = sorted(self.running)
        for cell in self.cells:
            if cell.id in running_now:
                self.done_steps[cell.id] = min(cell.steps, _last_timesteps(cell.run_dir))
        if self._progress is None:
            return
        steps = sum(self.done_steps.values())
        running = ", ".join(running_now[:3]) + (" …" if len(running_now) > 3 else "")
        failed = f" · {self.n_failed} failed" if self.n_failed else ""
        self._progress.update(self._cells_task, completed=self.n_done + self.n_failed,
                              extra=f"{len(running_now)} running{failed}")
        self._progress.update(self._steps_task, completed=min(steps, self.total_steps), extra=running)


# ----------------------------------------------------------------------------- scheduling


def plan(suite: Suite, out: str | Path, only: Sequence[str] | None = None) -> list[Cell]:
    """The suite's cells (optionally only those whose id contains one of ``only``), identity-checked."""
    cells = suite.cells(out)
    if only:
        cells = [c for c in cells if any(s in c.id for s in only)]
        if not cells:
            raise ConfigError(f"no cell of suite {suite.name!r} matches {list(only)}")
    for cell in cells:
        check_identity(cell)
    return cells


def _write_suite_copy(suite: Suite, out: Path) -> None:
    import yaml

    root = out / suite.name
    root.mkdir(parents=True, exist_ok=True)
    data = suite.model_dump(mode="json", exclude={"source"})
    (root / "suite.yaml").write_text(
        f"# resolved copy of {suite.source or suite.name}, written by `robo-reward bench run`\n"
        + yaml.safe_dump(data, sort_keys=False)
    )


def run_suite(
    suite: Suite,
    out: str | Path = "runs/bench",
    *,
    workers: int | None = None,
    ray: str | None = None,
    only: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[CellOutcome]:
    """Run every unfinished cell of ``suite`` under ``out/<suite.name>``; return one outcome per cell.

    Args:
        suite: the suite (:func:`~robo_reward.bench.suite.load_suite`).
        out: the output folder; run folders go to ``out/<suite>/<task>/<reward>/<agent>/seed<k>``.
        workers: cells at a time (local backend; default :func:`default_workers`). For
            Ray's local mode, the CPUs given to the local Ray instance.
        ray: ``None`` for the local backend, ``"local"`` to start a Ray instance on this
            machine, or a Ray address (``"auto"``, ``"ray://host:10001"``).
        only: run only cells whose id (``task/reward/agent/seed<k>``) contains one of these.
        progress: show a live progress display.
        log: where messages go when the live display is off.

    Cells that were already done are ``"skipped"``; the others are run (``"done"`` or
    ``"failed"``). On Ctrl-C, running cells get SIGINT (they save a checkpoint) and the
    interrupt is re-raised.
    """
    out = Path(out)
    cells = plan(suite, out, only)
    _write_suite_copy(suite, out)
    outcomes: dict[str, CellOutcome] = {}
    todo = []
    for cell in cells:
        if cell_state(cell) == "done":
            outcomes[cell.id] = CellOutcome(cell, "skipped")
        else:
            todo.append(cell)
    for cell in todo:
        write_cell(cell)
    log(f"suite {suite.name}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run"
        + (f" on Ray ({ray})" if ray else f" with {workers or default_workers(suite.resources.cpus)} workers"))
    with _Progress(cells, progress, log) as prog:
        for c in cells:
            if outcomes.get(c.id) is not None:
                prog.finished(c, True)
        if todo:
            if ray:
                _run_ray(todo, ray, workers, prog, outcomes)
            else:
                _run_local(todo, workers or default_workers(suite.resources.cpus), prog, outcomes)
    return [outcomes[c.id] for c in cells]


def _report(prog: _Progress, outcome: CellOutcome) -> None:
    if outcome.status == "done":
        prog.print(f"done    {outcome.cell.id}  ({outcome.seconds:.0f} s)")
    else:
        prog.print(f"FAILED  {outcome.cell.id}  (exit {outcome.returncode}; see {outcome.log})")


def _run_local(todo: Sequence[Cell], workers: int, prog: _Progress, outcomes: dict[str, CellOutcome]) -> None:
    procs: dict[str, subprocess.Popen] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def job(cell: Cell) -> CellOutcome:
        if stop.is_set():
            return CellOutcome(cell, "interrupted")

        def remember(p: subprocess.Popen) -> None:
            with lock:
                procs[cell.id] = p

        prog.started(cell)
        rc, secs = run_cell_process(str(cell.run_dir), cell.cpus, on_start=remember)
        with lock:
            procs.pop(cell.id, None)
        status = "done" if rc == 0 else ("interrupted" if stop.is_set() else "failed")
        return CellOutcome(cell, status, secs, rc, cell.run_dir / LOG_NAME)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bench")
    futures: dict[Future, Cell] = {pool.submit(job, c): c for c in todo}
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                outcome = fut.result()
                outcomes[outcome.cell.id] = outcome
                prog.finished(outcome.cell, outcome.status == "done")
                _report(prog, outcome)
            prog.refresh()
    except KeyboardInterrupt:
        stop.set()
        with lock:
            running = list(procs.values())
        prog.print(f"interrupted: asking {len(running)} running cell(s) to save a checkpoint …")
        for p in running:
            _signal(p, signal.SIGINT)
        deadline = time.monotonic() + 60
        for p in running:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(p, signal.SIGKILL)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the worker and anything it started (its own session)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- Ray


def ray_available() -> bool:
    """True when ``ray`` can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _ray_cell(run_dir: str, cpus: float) -> tuple[int, float]:
    return run_cell_process(run_dir, cpus)


def _run_ray(todo: Sequence[Cell], address: str, workers: int | None, prog: _Progress,
             outcomes: dict[str, CellOutcome]) -> None:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("ray", None, "running benchmark cells on Ray") from exc
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address == "local":
            kwargs["num_cpus"] = workers or default_workers(1.0)
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
        started_here = True
    try:
        remote = ray.remote(_ray_cell)
        refs: dict[Any, Cell] = {}
        for cell in todo:
            ref = remote.options(num_cpus=cell.cpus, num_gpus=cell.gpus, max_retries=0).remote(
                str(cell.run_dir), cell.cpus
            )
            refs[ref] = cell
            prog.started(cell)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    cell = refs[ref]
                    try:
                        rc, secs = ray.get(ref)
                    except Exception as exc:  # the task itself died (node lost, ...)
                        prog.print(f"ray task of {cell.id} failed: {type(exc).__name__}: {exc}")
                        rc, secs = -1, 0.0
                    outcome = CellOutcome(cell, "done" if rc == 0 else "failed", secs, rc, cell.run_dir / LOG_NAME)
                    outcomes[cell.id] = outcome
                    prog.finished(cell, rc == 0)
                    _report(prog, outcome)
                prog.refresh()
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=False)  # sends KeyboardInterrupt into the task
            raise
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["CellOutcome", "LOG_NAME", "default_workers", "plan", "ray_available", "run_cell_process", "run_suite"]

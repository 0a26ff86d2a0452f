"""Helpers for tests of `robo-reward train`: its typer app, reading metrics lines, and a real
process killed with SIGKILL after a checkpoint, then resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from robo_reward.train.runner import latest_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _script(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    script = tmp_path / "cli.py"
    script.write_text(
        "import typer\nfrom robo_reward.agents.cli import register\n"
        "app = typer.Typer()\nregister(app)\napp()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return script, env


def kill_then_resume(tmp_path: Path, train_args: list[str], min_checkpoint_steps: int,
                     poll_s: float = 0.2) -> dict[str, Any]:
    """Start ``train *train_args --out RUN`` in its own process, SIGKILL it once a checkpoint of at least
    ``min_checkpoint_steps`` exists, check it left no summary, then ``train --resume RUN`` to the end.

    Returns ``{"run_dir", "checkpoint" (the one killed at), "lines_before" (metrics.jsonl lines then),
    "summary", "lines" (all metrics lines after the resume)}``.
    """
    script, env = _script(tmp_path)
    run_dir = tmp_path / "run"
    args = [sys.executable, str(script), "train", *train_args, "--no-progress", "--out", str(run_dir)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        ck = latest_checkpoint(run_dir) if run_dir.exists() else None
        if ck is not None and ck.timesteps >= min_checkpoint_steps:
            break
        if proc.poll() is not None:
            pytest.fail("training finished or crashed before it could be killed")
        time.sleep(poll_s)
    proc.kill()
    proc.wait()
    assert not (run_dir / "summary.json").exists()
    ckpt = latest_checkpoint(run_dir)
    lines_before = len(read_jsonl(run_dir / "metrics.jsonl"))
    done = subprocess.run(
        [sys.executable, str(script), "train", "--resume", str(run_dir), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"run_dir": run_dir, "checkpoint": ckpt, "lines_before": lines_before,
            "summary": json.loads((run_dir / "summary.json").read_text()),
            "lines": read_jsonl(run_dir / "metrics.jsonl")}


def train_app() -> Any:
    """A typer app with the `train` and `eval` commands, for ``CliRunner``."""
    import typer

    from robo_reward.agents.cli import register

    app = typer.Typer()
    register(app)
    return app


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (``metrics.jsonl``, ``evals.jsonl``)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

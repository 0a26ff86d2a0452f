"""`robo-reward demos collect` and `robo-reward reward fit perceptual` end to end.

Each command runs in its own process, as a user runs it: MuJoCo's EGL context (Mesa's
llvmpipe) and triton, which torchvision's import pulls in, cannot share one process here.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from robo_reward.offline.demos import Demo
from robo_reward.rewards.perceptual import PerceptualRewardModel


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robo_reward.cli", *args], capture_output=True, text=True, timeout=300)


def test_collect_demos_then_fit_perceptual(tmp_path):
    pytest.importorskip("torchvision", reason="needs torchvision (the vlm extra); scripts/setup.sh leaves it out in its CPU-only torch mode")
    res = _cli("demos", "collect", "metaworld-reach-v3", "--n", "2", "--size", "48", "--out", str(tmp_path / "demos"))
    assert res.returncode == 0, res.stdout + res.stderr
    files = sorted((tmp_path / "demos").glob("demo_*.npz"))
    assert len(files) == 2
    demo = Demo.load(files[0])
    assert demo.frames.shape[1:] == (48, 48, 3) and demo.frames.dtype == np.uint8
    assert len(demo.frames) == len(demo.actions) == len(demo.phases)
    assert np.all(np.diff(demo.phases) >= 0)  # phase labels only move forward

    out = tmp_path / "reach.npz"
    res = _cli("reward", "fit", "perceptual", *map(str, files), "--steps", "2", "--min-length", "3",
               "--weighting", "step", "--pretrained", "none", "--image-size", "32", "--device", "cpu",
               "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "step weighting" in res.stdout
    assert PerceptualRewardModel.load(out).n_steps == 2


def test_fit_perceptual_rejects_unknown_weighting(tmp_path):
    # checked before any demo is read or backbone built
    res = _cli("reward", "fit", "perceptual", str(tmp_path / "missing.npz"), "--weighting", "frames",
               "--out", str(tmp_path / "m.npz"))
    assert res.returncode == 2
    out = res.stdout + res.stderr
    assert "--weighting must be one of length, step" in out and "'frames'" in out
    assert not (tmp_path / "m.npz").exists()


def test_collect_demos_refuses_non_metaworld_task(tmp_path):
    res = _cli("demos", "collect", "mujoco-reacher-v5", "--n", "1", "--out", str(tmp_path))
    assert res.returncode == 2
    assert "metaworld" in (res.stdout + res.stderr).lower()

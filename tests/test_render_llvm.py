"""Mesa's software GL and triton in one process (see robo_reward.envs.render.preload_triton)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or importlib.util.find_spec("torchvision") is None,
    reason="the crash needs triton and torchvision installed (torch's CUDA builds bring triton)",
)

SCRIPT = textwrap.dedent(
    """
    import os
    import robo_reward
    from robo_reward.envs.make import make_env
    env = make_env("mujoco-half-cheetah-v5", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    import torchvision  # imports torch._dynamo and with it triton
    frame2 = env.render()
    print("OK", frame.shape, int(frame.mean() > 0), int((frame == frame2).all()))
    env.close()
    """
)


def _run(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl", **extra_env}
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)


def test_render_then_torchvision_in_one_process():
    proc = _run({})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK (224, 224, 3) 1 1" in proc.stdout

"""A non-editable wheel ships the data folders (envs/, agents/, assets/) and finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (whl,) = out.glob("robo_reward-*.whl")
    return whl


def test_wheel_contains_data_folders(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("envs", "agents", "assets"):
        src = [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        shipped = [n for n in names if n.startswith(f"robo_reward/_data/{folder}/")]
        assert len(shipped) == len(src), f"{folder}: {len(shipped)} files in the wheel, {len(src)} in the tree"
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_finds_its_data(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    code = (
        "import robo_reward, robo_reward.paths as p; "
        "print(robo_reward.__file__); print(p.data_dir('envs')); print(p.data_dir('agents'))"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(str(target))
    assert lines[1] == str(target / "robo_reward" / "_data" / "envs")
    assert lines[2] == str(target / "robo_reward" / "_data" / "agents")

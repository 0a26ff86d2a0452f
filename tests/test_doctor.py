"""`robo-reward doctor`: each check says ok with what it found, or what to install."""

from __future__ import annotations

import json

import pytest

typer = pytest.importorskip("typer")
from typer.testing import CliRunner  # noqa: E402

from robo_reward import doctor  # noqa: E402


def test_report_lists_every_check_and_finds_torch():
    rep = doctor.report()
    names = [c["name"] for c in rep["checks"]]
    assert names[0] == "torch" and "mjx" in names and "simulator: maniskill" in names and "rendering" in names
    assert len(names) == len(set(names))
    torch_check = rep["checks"][0]
    import torch

    assert torch_check["ok"] and torch.__version__ in torch_check["detail"]
    assert all(c["fix"] == "" for c in rep["checks"] if c["ok"])
    assert all(c["fix"] for c in rep["checks"] if not c["ok"])


def test_missing_module_names_the_extra(monkeypatch):
    real = doctor.importlib.util.find_spec
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a))
    c = doctor.check_module("open_clip", "VLM-RM", "vlm")
    assert not c.ok and "not installed" in c.detail and c.fix == "pip install 'robo-reward[vlm]'"
    ok = doctor.check_module("numpy", "arrays", "")
    assert ok.ok and ok.detail.startswith(__import__("numpy").__version__)


def test_broken_module_says_how_it_broke(monkeypatch, tmp_path):
    (tmp_path / "brokenpkg_rr.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    c = doctor.check_module("brokenpkg_rr", "nothing", "", package="brokenpkg-rr")
    assert not c.ok and "half installed" in c.detail and c.fix == "pip install brokenpkg-rr"


def test_rendering_check(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    c = doctor.check_rendering()
    assert not c.ok and "unset" in c.detail and "MUJOCO_GL=egl" in c.fix
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: None)
    c = doctor.check_rendering()
    assert not c.ok and "libOSMesa" in c.detail and "libosmesa6" in c.fix
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: f"lib{name}.so.1")
    assert doctor.check_rendering().ok


def test_mjx_missing_is_reported(monkeypatch):
    import robo_reward.envs.mjx_backend as mjx_backend

    monkeypatch.setattr(mjx_backend, "mjx_problem", lambda: "jax / mujoco.mjx cannot be imported (x); install it")
    c = doctor.check_mjx()
    assert not c.ok and c.detail == "jax / mujoco.mjx cannot be imported (x)" and "mjx" in c.fix


def test_cli_json():
    from robo_reward.cli import app

    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.output[result.output.index("{"):])
    assert rep["checks"] and {"name", "ok", "detail", "fix"} <= set(rep["checks"][0])
    table = CliRunner().invoke(app, ["doctor"])
    assert table.exit_code == 0 and "torch" in table.output and "fix" in table.output


def test_vision_fix_mentions_the_cpu_only_torch_wheel(monkeypatch):
    import torch

    missing = doctor.Check("torchvision", False, "not installed", "pip install 'robo-reward[vlm]'")
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    assert "ROBO_REWARD_TORCH=cuda" in doctor._vision(missing).fix
    monkeypatch.setattr(torch, "__version__", "2.14.1+cu130")
    other = doctor.Check("torchvision", False, "not installed", "pip install 'robo-reward[vlm]'")
    assert doctor._vision(other).fix == "pip install 'robo-reward[vlm]'"

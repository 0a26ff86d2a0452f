"""``robo-reward doctor``: which optional parts of robo_reward can run on this machine, and why not.

Each check imports or probes one thing (nothing is downloaded, nothing is trained) and
says ``ok`` with what it found, or ``missing`` with what to install or set. The checks are
ordered from the core to the optional extras::

    robo-reward doctor            # a table
    robo-reward doctor --json     # the same as JSON
"""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass
class Check:
    """The outcome of one check.

    Attributes:
        name: what was checked (``"torch"``, ``"simulator: metaworld"``, ...).
        ok: whether it can be used here.
        detail: what was found (versions, devices), or why it cannot be used.
        fix: what to install or set when it cannot (empty when ``ok``).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(module: Any) -> str:
    return str(getattr(module, "__version__", "?"))


def _import(name: str) -> tuple[Any, str | None]:
    """``(module, None)``, or ``(None, why)`` when it does not import."""
    if importlib.util.find_spec(name.split(".")[0]) is None:
        return None, "not installed"
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # a package that is there but broken: say how it broke
        return None, f"installed but does not import ({type(exc).__name__}: {exc})"


def check_torch() -> Check:
    """torch: version, CUDA build and devices."""
    torch, why = _import("torch")
    if torch is None:
        return Check("torch", False, why or "", "pip install torch (scripts/setup.sh pins the tested build)")
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    if torch.cuda.is_available():
        devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("torch", True, f"{torch.__version__} ({build}); GPU: {devices}")
    return Check("torch", True, f"{torch.__version__} ({build}); no GPU: agents and reward models run on the CPU")


def check_module(name: str, purpose: str, extra: str, package: str | None = None) -> Check:
    """Whether ``name`` imports; ``purpose`` says what needs it, ``extra`` which extra installs it."""
    mod, why = _import(name)
    if mod is None:
        return Check(name, False, f"{why}: needed for {purpose}", f"pip install 'robo-reward[{extra}]'"
                     if extra else f"pip install {package or name}")
    return Check(name, True, f"{_version(mod)}: {purpose}")


def _vision(check: Check) -> Check:
    """A missing vision package next to a CPU-only torch wheel: no PyPI torchvision imports beside it."""
    if not check.ok:
        torch, _ = _import("torch")
        if torch is not None and str(torch.__version__).endswith("+cpu"):
            check.fix = ("torch is the CPU-only wheel, beside which no PyPI torchvision imports: reinstall with "
                         "ROBO_REWARD_TORCH=cuda bash scripts/setup.sh (a CUDA build, which also runs on the CPU)")
    return check


def check_rendering() -> Check:
    """Headless MuJoCo rendering: the ``MUJOCO_GL`` backend and its library."""
    backend = os.environ.get("MUJOCO_GL", "")
    lib = {"egl": "EGL", "osmesa": "OSMesa", "glfw": "glfw"}.get(backend)
    if lib is None:
        found = ctypes.util.find_library("EGL")
        hint = "export MUJOCO_GL=egl" if found else "install Mesa's EGL (Debian: libegl1 libegl-mesa0), then export MUJOCO_GL=egl"
        return Check("rendering", False, f"MUJOCO_GL is {backend or 'unset'}: frames need a headless backend", hint)
    path = ctypes.util.find_library(lib)
    if path is None:
        pkg = "libegl1 libegl-mesa0" if lib == "EGL" else "libosmesa6" if lib == "OSMesa" else "libglfw3"
        return Check("rendering", False, f"MUJOCO_GL={backend} but lib{lib} was not found", f"Debian: apt-get install {pkg}")
    return Check("rendering", True, f"MUJOCO_GL={backend} ({path})")


def check_simulator(family: str) -> Check:
    """Whether a task-card family's simulator imports (and, for ManiSkill, has a Vulkan driver it can use)."""
    from .envs.make import family_import_error, maniskill_render_problem

    failed = family_import_error(family)
    name = f"simulator: {family}"
    if failed is not None:
        missing, extra, _ = failed
        return Check(name, False, f"'{missing}' is not installed", f"pip install 'robo-reward[{extra}]'"
                     if extra else f"pip install {missing}")
    if family == "maniskill":
        problem = maniskill_render_problem()
        if problem is not None:
            return Check(name, False, problem, "see the README's ManiSkill section (Vulkan driver)")
    return Check(name, True, "imports" + (" and SAPIEN can create its render system" if family == "maniskill" else ""))


def check_mjx() -> Check:
    """MuJoCo MJX (the ``mjx`` extra): jax, ``mujoco.mjx`` and jax's devices."""
    from .envs.mjx_backend import mjx_problem

    problem = mjx_problem()
    if problem is not None:
        return Check("mjx", False, problem.split("; install")[0], "pip install 'robo-reward[mjx]'")
    import jax

    devices = ", ".join(sorted({d.platform for d in jax.devices()}))
    note = "" if "gpu" in devices or "cuda" in devices else " (on a CPU MJX is slower than native MuJoCo)"
    return Check("mjx", True, f"jax {jax.__version__} on {devices}{note}")


def check_chromium() -> Check:
    """A Chromium for the benchmark report's browser test."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        return Check("chromium", False, "not found: the report's browser test skips", "Debian: apt-get install chromium")
    return Check("chromium", True, path)


def run_checks() -> list[Check]:
    """Every check, core first."""
    checks: list[Callable[[], Check]] = [
        check_torch,
        lambda: check_module("stable_baselines3", "SB3 agents (ppo, sac, td3)", "sb3"),
        check_rendering,
        lambda: _vision(check_module("torchvision", "perceptual rewards' image backbones", "vlm")),
        lambda: _vision(check_module("open_clip", "VLM-RM and the CLIP labeller of RL-VLM-F", "vlm")),
        lambda: check_module("httpx", "LLM backends (OpenAI-compatible servers)", "llm"),
        lambda: check_module("onnxruntime", "policy export to ONNX and its parity check", "deploy"),
        lambda: check_module("minari", "Minari offline datasets", "offline"),
        lambda: check_module("ray", "benchmark suites on a Ray cluster (--ray)", "ray"),
        lambda: check_simulator("mujoco"),
        lambda: check_simulator("metaworld"),
        lambda: check_simulator("pybullet"),
        lambda: check_simulator("maniskill"),
        check_mjx,
        check_chromium,
    ]
    return [fn() for fn in checks]


def report() -> dict[str, Any]:
    """The checks with the versions of robo_reward and Python: what ``--json`` prints."""
    from . import __version__

    return {"robo_reward": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "checks": [asdict(c) for c in run_checks()]}

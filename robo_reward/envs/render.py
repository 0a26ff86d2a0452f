"""Rendering options for MuJoCo-based envs (Gymnasium MuJoCo v5, MetaWorld).

Two things make headless rendering practical:

* :func:`configure_headless_gl` picks ``MUJOCO_GL=egl`` when the variable is unset
  and there is no display (called by ``import robo_reward.envs``, before MuJoCo is
  imported: MuJoCo reads the variable once, at import);
* :func:`preload_triton` loads triton's LLVM before Mesa's, which avoids a crash when
  both end up in one process;
* :func:`apply_render_options` turns off shadows and reflections (on a CPU renderer
  this is several times faster), sets the frame size and camera, and can roll a
  camera about its viewing axis (MetaWorld's cameras are defined upside down).

Everything here works on the ``MjModel`` of ``env.unwrapped`` and on Gymnasium's
``MujocoRenderer``; envs that are not MuJoCo-based are left unchanged.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np

from ..core.errors import ConfigError

_DEFAULTS_ATTR = "_robo_reward_render_defaults"


def configure_headless_gl() -> str | None:
    """Default ``MUJOCO_GL`` to ``egl`` on Linux when it is unset and there is no display.

    Also sets ``PYOPENGL_PLATFORM=egl`` when that is unset (MuJoCo's EGL backend needs
    it). Call before ``mujoco`` is imported; an explicit ``MUJOCO_GL`` is never changed.

    Returns:
        the value of ``MUJOCO_GL`` now in effect (``None`` when left unset).
    """
    if "MUJOCO_GL" in os.environ:
        return os.environ["MUJOCO_GL"]
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    return "egl"


def preload_triton() -> bool:
    """Import ``triton`` now, before the first software-rendered GL context, when it is installed.

    Mesa's CPU renderers (llvmpipe, behind ``MUJOCO_GL=egl`` or ``osmesa`` without a GPU)
    and ``triton`` each carry their own LLVM. Loading ``libtriton`` into a process that
    already holds such a GL context crashed it (a segfault inside ``import triton``,
    which ``torch._dynamo`` and so ``torchvision`` trigger); loaded the other way round
    both work. So rendering code calls this first: it costs about a second once per
    process and does nothing when triton is absent, already imported, when MuJoCo renders
    through a display (``MUJOCO_GL=glfw``), or when ``ROBO_REWARD_PRELOAD_TRITON=0``.

    Returns:
        whether triton is imported now.
    """
    if "triton" in sys.modules:
        return True
    if os.environ.get("ROBO_REWARD_PRELOAD_TRITON", "1") == "0":
        return False
    if os.environ.get("MUJOCO_GL", "").lower() not in ("egl", "osmesa"):
        return False
    import importlib.util

    try:
        if importlib.util.find_spec("triton") is None:
            return False
        import triton  # noqa: F401
    except Exception:  # a broken triton install must not stop rendering
        return False
    return True


def mujoco_base_env(env: Any) -> Any | None:
    """Return ``env.unwrapped`` if it is MuJoCo-based (has an ``MjModel`` as ``.model``), else ``None``."""
    base = getattr(env, "unwrapped", env)
    model = getattr(base, "model", None)
    if model is None or type(model).__name__ != "MjModel":
        return None
    return base


def camera_names(env: Any) -> list[str]:
    """Names of the cameras defined in a MuJoCo-based env's model (empty for other envs)."""
    base = mujoco_base_env(env)
    if base is None:
        return []
    import mujoco

    m = base.model
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(m.ncam)]
    return [n for n in names if n]


def _defaults(base: Any) -> dict[str, Any]:
    """The model's original visual settings, saved the first time they are changed."""
    saved = getattr(base, _DEFAULTS_ATTR, None)
    if saved is None:
        m = base.model
        saved = {
            "shadowsize": int(m.vis.quality.shadowsize),
            "castshadow": np.array(m.light_castshadow, copy=True),
            "reflectance": np.array(m.mat_reflectance, copy=True),
            "cam_quat": np.array(m.cam_quat, copy=True),
        }
        setattr(base, _DEFAULTS_ATTR, saved)
    return saved


def _quat_roll(q: np.ndarray, degrees: float) -> np.ndarray:
    """``q ⊗ r`` where ``r`` turns by ``degrees`` about the camera's own z (viewing) axis."""
    half = math.radians(degrees) / 2.0
    w1, x1, y1, z1 = (float(v) for v in q)
    w2, z2 = math.cos(half), math.sin(half)
    out = np.array(
        [w1 * w2 - z1 * z2, x1 * w2 + y1 * z2, y1 * w2 - x1 * z2, w1 * z2 + z1 * w2],
        dtype=np.float64,
    )
    return out / np.linalg.norm(out)


def _drop_viewers(base: Any) -> None:
    """Close the renderer's GL contexts so that the next ``render()`` makes them afresh."""
    renderer = getattr(base, "mujoco_renderer", None)
    viewers = getattr(renderer, "_viewers", None)
    if not viewers:
        return
    for viewer in list(viewers.values()):
        try:
            # Free MuJoCo's GL objects while their own context is current; freed later by
            # the garbage collector they could hit whichever context is current then.
            viewer.make_context_current()
            viewer.con.free()
        except Exception:
            pass
        try:
            viewer.free()
        except Exception:  # a context that cannot be freed is simply dropped
            pass
        # OffScreenViewer frees its context again in __del__; make that a no-op.
        viewer.free = lambda: None  # type: ignore[method-assign]
    viewers.clear()
    renderer.viewer = None


def apply_render_options(
    env: Any,
    shadows: bool = False,
    reflections: bool = False,
    width: int | None = None,
    height: int | None = None,
    camera: str | None = None,
    camera_roll: float = 0.0,
) -> Any:
    """Set visual options on a MuJoCo-based env (in place) and return it.

    Args:
        env: the env (wrapped or not); non-MuJoCo envs are returned unchanged.
        shadows: keep the lights' shadows. ``False`` sets ``model.vis.quality.shadowsize = 0``
            and every light's ``castshadow`` off; ``True`` restores the model's own values.
        reflections: keep reflective materials. ``False`` sets every material's
            ``reflectance`` to 0; ``True`` restores them.
        width, height: frame size (the offscreen buffer is enlarged when needed).
        camera: name of a model camera to render from (``None`` keeps the current one).
        camera_roll: degrees to turn the camera about its viewing axis, relative to the
            model's original orientation (needs a named camera, given or already set).

    Raises:
        ConfigError: unknown camera name (the message lists the model's cameras), bad
            size, or ``camera_roll`` without a fixed camera.
    """
    base = mujoco_base_env(env)
    if base is None:
        return env
    import mujoco

    if getattr(base, "render_mode", None) is not None:
        preload_triton()  # before the first GL context exists (see preload_triton)
    m = base.model
    saved = _defaults(base)
    renderer = getattr(base, "mujoco_renderer", None)
    context_changed = False

    shadowsize = saved["shadowsize"] if shadows else 0
    if int(m.vis.quality.shadowsize) != shadowsize:
        m.vis.quality.shadowsize = shadowsize
        context_changed = True  # the shadow map is allocated with the GL context
    m.light_castshadow[:] = saved["castshadow"] if shadows else 0
    m.mat_reflectance[:] = saved["reflectance"] if reflections else 0.0

    for value, what in ((width, "width"), (height, "height")):
        if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
            raise ConfigError(f"render {what} must be a positive integer, got {value!r}")
    if width is not None or height is not None:
        w = int(width) if width is not None else int(getattr(renderer, "width", None) or 0)
        h = int(height) if height is not None else int(getattr(renderer, "height", None) or 0)
        if w > m.vis.global_.offwidth:
            m.vis.global_.offwidth = w
            context_changed = True
        if h > m.vis.global_.offheight:
            m.vis.global_.offheight = h
            context_changed = True
        if renderer is not None and (renderer.width != w or renderer.height != h):
            renderer.width, renderer.height = w, h
            context_changed = True
        if hasattr(base, "width"):
            base.width = w
        if hasattr(base, "height"):
            base.height = h

    cam_id: int | None = None
    if camera is not None:
        cam_id = int(mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera))
        if cam_id < 0:
            known = camera_names(base)
            raise ConfigError(
                f"the model of {type(base).__name__} has no camera named {camera!r}; its cameras: "
                f"{', '.join(known) or '(none: use camera=None for the default free camera)'}"
            )
        if renderer is not None:
            renderer.camera_id = cam_id
    elif renderer is not None and getattr(renderer, "camera_id", -1) is not None and renderer.camera_id >= 0:
        cam_id = int(renderer.camera_id)

    if camera_roll:
        if cam_id is None:
            raise ConfigError("camera_roll needs a named camera (the free camera has no fixed orientation)")
        m.cam_quat[cam_id] = _quat_roll(saved["cam_quat"][cam_id], float(camera_roll))
    elif cam_id is not None:
        m.cam_quat[cam_id] = saved["cam_quat"][cam_id]

    if context_changed:
        _drop_viewers(base)
    return env


def render_options_of(env: Any) -> dict[str, Any]:
    """Report the visual settings in effect (for logs and tests): shadows, reflections, size, camera."""
    base = mujoco_base_env(env)
    if base is None:
        return {}
    import mujoco

    m = base.model
    renderer = getattr(base, "mujoco_renderer", None)
    cam_id = getattr(renderer, "camera_id", None)
    cam = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, cam_id) if cam_id is not None and cam_id >= 0 else None
    return {
        "shadowsize": int(m.vis.quality.shadowsize),
        "shadows": bool(m.vis.quality.shadowsize > 0 and np.any(m.light_castshadow)),
        "reflections": bool(np.any(m.mat_reflectance > 0)),
        "width": getattr(renderer, "width", None),
        "height": getattr(renderer, "height", None),
        "camera": cam,
    }

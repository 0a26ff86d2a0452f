"""Build Gymnasium envs from task cards, optionally wrapped with a reward plugin.

* :func:`make_env` — one env: the card's Gymnasium id with its time limit and render
  options, ``info["is_success"]`` on every step (Stable-Baselines3's convention), and a
  :class:`~robo_reward.RewardWrapper` when a reward is given.
* :func:`make_vec_env` — a Gymnasium ``VectorEnv`` of such envs, wrapped with
  :class:`~robo_reward.VectorRewardWrapper` when a reward is given.
* :func:`make_registered_env` — the entry point of the Gymnasium ids
  ``robo_reward/<card name>`` that :func:`robo_reward.envs.register_gym_envs` registers,
  so that ``gym.make("robo_reward/mujoco-reacher-v5", reward="sparse-success")`` works.
* :func:`simulator_problem` — why a card's simulator cannot run here (a missing extra,
  no suitable Vulkan driver for ManiSkill), or ``None``.

Simulators are imported only when an env is made. Per family: MuJoCo and MetaWorld
envs get the card's render options applied to the model; PyBullet cards build
:mod:`robo_reward.envs.pybullet_envs` envs, which take the render section as
constructor arguments; ManiSkill 3 cards are built with
``gymnasium.make(env_id, num_envs=1, obs_mode=..., ...)`` on the CPU and unbatched with
ManiSkill's ``CPUGymWrapper`` (numpy observations, one env per process).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
from pydantic import ValidationError

from ..core.errors import ConfigError, MissingDependencyError, RoboRewardError, TaskCardError
from ..core.success import SuccessSignal
from .cards import RenderSpec, TaskCard, load_card
from .render import apply_render_options

#: The ``info`` key that carries the per-step success flag (Stable-Baselines3's name).
SUCCESS_INFO_KEY = "is_success"

#: What each family needs imported before ``gymnasium.make`` knows its ids, and the extra to install.
_FAMILY_IMPORTS: dict[str, tuple[str, str | None]] = {
    "mujoco": ("mujoco", "mujoco"),
    "metaworld": ("metaworld", "metaworld"),
    "maniskill": ("mani_skill.envs", "maniskill"),
    "pybullet": ("robo_reward.envs.pybullet_envs", "pybullet"),
}

_VECTORIZATIONS = ("sync", "async", "simulator")


class SuccessInfoWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Put ``info["is_success"]`` (a ``bool``) on every step, from a task's success signal.

    Stable-Baselines3 reads this key at the end of an episode (``Monitor``,
    ``EvalCallback``) to report success rates.

    Args:
        env: the env.
        signal: the :class:`~robo_reward.core.success.SuccessSignal` (usually ``card.success_signal()``).
        key: the info key to write.
    """

    def __init__(self, env: gym.Env, signal: SuccessSignal, key: str = SUCCESS_INFO_KEY):
        gym.utils.RecordConstructorArgs.__init__(self, signal=signal, key=key)
        gym.Wrapper.__init__(self, env)
        self.signal = signal
        self.key = key

    def step(self, action: Any):
        """Step the env and add ``info[key]``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info[self.key] = bool(self.signal.evaluate(_batch1(obs), (info,))[0])
        return obs, reward, terminated, truncated, info


def _batch1(obs: Any) -> Any:
    if isinstance(obs, Mapping):
        return {k: _batch1(v) for k, v in obs.items()}
    return np.asarray(obs)[None]


class MetaWorldCompatWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make a MetaWorld v3 env (``gym.make("Meta-World/MT1", ...)``) follow the Gymnasium API.

    Two fixes:

    * the observation space: MetaWorld computes it before a task is set, while the goal
      is still hidden, so its last three bounds are ``[0, 0]`` although observations carry
      the goal position; here they are the env's ``goal_space`` bounds, so every
      observation lies in the space (the env checkers of Gymnasium and SB3 test this);
    * seeding: ``SawyerXYZEnv.reset`` ignores ``seed``; here ``reset(seed=s)`` reseeds the
      env (``unwrapped.seed(s)``), so the task drawn from the benchmark's set and the
      initial state follow the seed.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        space = env.observation_space
        base = env.unwrapped
        goal = getattr(base, "goal_space", None)
        if isinstance(space, gym.spaces.Box) and space.shape == (39,) and goal is not None:
            low = np.array(space.low, copy=True)
            high = np.array(space.high, copy=True)
            low[36:39] = np.minimum(goal.low, goal.high)
            high[36:39] = np.maximum(goal.low, goal.high)
            self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset; a given ``seed`` reseeds the MetaWorld env first."""
        if seed is not None:
            self.env.unwrapped.seed(int(seed))
        return self.env.reset(seed=seed, options=options)


class ManiSkillCompatWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make ManiSkill's seeding visible the Gymnasium way: ``reset(seed=s)`` also seeds ``env.np_random``.

    ManiSkill draws its episodes from its own generators and leaves the Gymnasium
    ``np_random`` of the env untouched, which Gymnasium's env checker (and any tool that
    samples from ``env.np_random``) takes for a reset that ignores its seed.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset; a given ``seed`` also seeds ``env.unwrapped.np_random``."""
        if seed is not None:
            from gymnasium.utils import seeding

            base = self.env.unwrapped
            base._np_random, base._np_random_seed = seeding.np_random(int(seed))
        return self.env.reset(seed=seed, options=options)


# ----------------------------------------------------------------------------- helpers


def _resolve_render(card: TaskCard, overrides: Mapping[str, Any] | None) -> RenderSpec:
    if not overrides:
        return card.render
    merged = {**card.render.model_dump(), **dict(overrides)}
    if "camera" in overrides and overrides["camera"] is None and "camera_roll" not in overrides:
        merged["camera_roll"] = 0.0  # the default free camera cannot be rolled
    try:
        return RenderSpec.model_validate(merged)
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'render'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"bad render_overrides {dict(overrides)!r}: {msgs}") from None


def family_import_error(family: str) -> tuple[str, str | None, ImportError] | None:
    """``(missing package, extra, error)`` when a task-card family's simulator does not import, else ``None``."""
    mod, extra = _FAMILY_IMPORTS.get(family, (None, None))
    if mod is None:
        return None
    try:
        importlib.import_module(mod)
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or mod).split(".")[0]
        if missing == "robo_reward":  # our own adapter module failed on something it imports
            missing = mod.split(".")[0]
        return missing, extra, exc
    return None


def _import_family(card: TaskCard) -> None:
    failed = family_import_error(card.family)
    if failed is not None:
        missing, extra, exc = failed
        raise MissingDependencyError(missing, extra, feature=f"task card {card.name!r}") from exc


def _gym_make(card: TaskCard, **kwargs: Any) -> gym.Env:
    try:
        return gym.make(card.env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        extra = _FAMILY_IMPORTS.get(card.family, (None, None))[1]
        raise MissingDependencyError(card.family, extra, feature=f"task card {card.name!r} ({exc})") from exc
    except (gym.error.NameNotFound, gym.error.VersionNotFound, gym.error.NamespaceNotFound) as exc:
        raise TaskCardError(
            f"task card {card.name!r}: Gymnasium does not know env id {card.env_id!r} ({exc}); "
            "check the card's env_id and that the simulator package is installed"
        ) from exc
    except TypeError as exc:
        raise TaskCardError(f"task card {card.name!r}: gymnasium.make({card.env_id!r}) rejected its arguments: {exc}") from exc


def _make_maniskill(
    card: TaskCard, render_mode: str | None, render: RenderSpec, steps: int, kwargs: dict[str, Any]
) -> gym.Env:
    """A ManiSkill 3 env on the CPU, one env per process, as a plain Gymnasium env (numpy, unbatched).

    ``gymnasium.make(card.env_id, num_envs=1, obs_mode=..., ...)`` builds ManiSkill's
    batched env (torch tensors with a leading dimension of 1); ManiSkill's own
    ``CPUGymWrapper`` turns it into a standard Gymnasium env. Frames come from the
    env's human-render camera at the card's size. ``enhanced_determinism`` is on unless
    the card or the caller says otherwise, so that resets without a seed follow the
    last seed too.
    """
    num_envs = kwargs.pop("num_envs", 1)
    if num_envs != 1:
        raise ConfigError(
            f"task card {card.name!r}: ManiSkill cards run one env per process on the CPU (num_envs=1, got "
            f"{num_envs!r}); use make_vec_env for several, and see docs/gpu-backends.md for GPU-batched simulation"
        )
    if render.camera is not None:
        raise TaskCardError(
            f"task card {card.name!r}: ManiSkill renders from its own human-render camera; set render.camera to null"
        )
    kwargs.setdefault("obs_mode", "state")
    # Draw every episode from the seeded generators, also on resets without a seed (by
    # default ManiSkill then uses torch's global generator): the same seed, the same episodes.
    kwargs.setdefault("enhanced_determinism", True)
    if render_mode is not None:
        kwargs.setdefault("human_render_camera_configs", {"width": render.width, "height": render.height})
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    # ManiSkill applies its own (batched) time limit from max_episode_steps; Gymnasium's
    # passive checker does not understand batched tensors, so it is left out here and the
    # Gymnasium checkers are run on the unbatched env instead.
    try:
        env = _gym_make(card, num_envs=1, max_episode_steps=steps, render_mode=render_mode,
                        disable_env_checker=True, **kwargs)
    except RuntimeError as exc:
        problem = maniskill_render_problem()
        if problem is not None:
            raise RoboRewardError(f"task card {card.name!r}: {problem}") from exc
        raise
    env = ManiSkillCompatWrapper(CPUGymWrapper(env))
    return gym.wrappers.TimeLimit(env, steps)


#: What a ManiSkill user on a machine without a suitable Vulkan driver needs to know.
MANISKILL_VULKAN_HINT = (
    "ManiSkill 3 (SAPIEN) needs a Vulkan driver with the VK_KHR_external_semaphore_fd extension even for "
    "state observations: a GPU's driver, or on a CPU-only machine Mesa's lavapipe 23 or newer selected with "
    "VK_ICD_FILENAMES (Debian 12's own lavapipe, Mesa 22, is too old; the README's ManiSkill section has the recipe)"
)


@functools.lru_cache(maxsize=1)
def maniskill_render_problem() -> str | None:
    """Why ManiSkill cannot render (and so cannot build its scenes) in this process, or ``None`` when it can.

    Creates SAPIEN's render system on the device ManiSkill would pick (a CUDA GPU when
    there is one, else the CPU), which is what fails without a suitable Vulkan driver.
    The answer is cached for the process (``VK_ICD_FILENAMES`` is read once by Vulkan anyway).
    """
    try:
        import sapien
    except ImportError:
        return "the 'mani_skill' package is not installed: pip install 'robo-reward[maniskill]'"
    try:
        try:
            from mani_skill.envs.utils.system.backend import parse_sim_and_render_backend

            device = parse_sim_and_render_backend("physx_cpu", "gpu").render_device
        except (ImportError, TypeError, AttributeError):  # another ManiSkill layout: the CPU device
            device = sapien.Device("cpu")
        sapien.render.RenderSystem(device)
    except Exception as exc:  # SAPIEN raises RuntimeError with Vulkan's own words
        return f"{MANISKILL_VULKAN_HINT}. SAPIEN said: {type(exc).__name__}: {exc}"
    return None


def simulator_problem(task: str | TaskCard) -> str | None:
    """Why the simulator of a task card cannot run here, in words, or ``None`` when it can.

    Checks that the family's package imports (naming the extra to install) and, for
    ManiSkill cards, that a suitable Vulkan driver is present
    (:func:`maniskill_render_problem`). Nothing is built; tests use it to skip with a
    precise reason.
    """
    card = load_card(task)
    failed = family_import_error(card.family)
    if failed is not None:
        missing, extra, _ = failed
        hint = f"pip install 'robo-reward[{extra}]'" if extra else f"pip install {missing}"
        return f"task card {card.name!r} needs the '{missing}' package, which is not installed: {hint}"
    if card.family == "maniskill":
        problem = maniskill_render_problem()
        if problem is not None:
            return f"task card {card.name!r}: {problem}"
    return None


def _find_time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    e: Any = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, gym.wrappers.TimeLimit):
            return e
        e = e.env
    return None


def _build_base(
    card: TaskCard,
    render_mode: str | None,
    render: RenderSpec,
    seed: int | None,
    env_kwargs: Mapping[str, Any],
) -> gym.Env:
    """The card's env with its time limit and render options, without robo_reward's wrappers."""
    _import_family(card)
    kwargs = {**card.env_kwargs, **dict(env_kwargs)}
    steps = kwargs.pop("max_episode_steps", None) or card.max_episode_steps
    if not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ConfigError(f"max_episode_steps must be a positive integer, got {steps!r}")
    mujoco_based = card.family in ("mujoco", "metaworld")
    if mujoco_based:
        kwargs.setdefault("width", render.width)
        kwargs.setdefault("height", render.height)
        if render.camera is not None:
            kwargs.setdefault("camera_name", render.camera)
    elif card.family == "pybullet":
        # robo_reward's PyBullet envs take the render section as constructor arguments
        kwargs.setdefault("width", render.width)
        kwargs.setdefault("height", render.height)
        kwargs.setdefault("shadows", render.shadows)
        if render.camera is not None:
            kwargs.setdefault("camera_name", render.camera)
        if render.camera_roll:
            kwargs.setdefault("camera_roll", render.camera_roll)

    if card.family == "metaworld":
        if "env_name" not in kwargs:
            raise TaskCardError(f"task card {card.name!r}: MetaWorld cards need env_kwargs.env_name (e.g. 'reach-v3')")
        if seed is not None:
            kwargs.setdefault("seed", int(seed))
        # MetaWorld's own observation space is wrong until the compat wrapper fixes it,
        # so Gymnasium's passive checker would only warn about it.
        env = _gym_make(card, render_mode=render_mode, disable_env_checker=True, **kwargs)
        limit = getattr(env.unwrapped, "max_path_length", None)
        if limit is not None and steps > limit:
            env.close()
            raise TaskCardError(
                f"task card {card.name!r}: max_episode_steps={steps} exceeds MetaWorld's "
                f"max_path_length={limit} (the env refuses to step past it)"
            )
        tl = _find_time_limit(env)
        if tl is None or tl._max_episode_steps != steps:
            env = gym.wrappers.TimeLimit(env, int(steps))
        env = MetaWorldCompatWrapper(env)
    elif card.family == "maniskill":
        env = _make_maniskill(card, render_mode, render, int(steps), kwargs)
    else:
        env = _gym_make(card, max_episode_steps=int(steps), render_mode=render_mode, **kwargs)

    apply_render_options(
        env,
        shadows=render.shadows,
        reflections=render.reflections,
        width=render.width if mujoco_based else None,
        height=render.height if mujoco_based else None,
        camera=render.camera,
        camera_roll=render.camera_roll,
    )
    return env


def _task_ref(card: TaskCard) -> str | None:
    """How the entry point finds ``card`` again: its shipped name, its YAML path, or ``None``."""
    if card.source is None:
        return None
    try:
        shipped = load_card(card.name)
    except TaskCardError:
        shipped = None
    if shipped is not None and shipped.source == card.source:
        return card.name
    return str(card.source)


def _set_spec(env: gym.Env, card: TaskCard, make_kwargs: dict[str, Any]) -> None:
    """Give the env the spec of its ``robo_reward/<card>`` id, as ``gym.make`` would.

    Then ``env.spec.id`` names the card and ``env.spec.make()`` rebuilds the same env
    (reward wrapper included) through :func:`make_registered_env`. Wrappers cache their
    spec; the caches along the chain are dropped so that they see the new one.
    """
    ref = _task_ref(card)
    if ref is None:
        return  # a card built in code cannot be found again by name: keep the simulator's spec
    from gymnasium.envs.registration import EnvSpec

    kwargs = {"task": ref, **{k: v for k, v in make_kwargs.items() if v is not None}}
    env.unwrapped.spec = EnvSpec(
        id=card.gym_id,
        entry_point="robo_reward.envs.make:make_registered_env",
        max_episode_steps=None,
        order_enforce=False,
        disable_env_checker=True,
        kwargs=kwargs,
    )
    e: Any = env
    while isinstance(e, gym.Wrapper):
        if getattr(e, "_cached_spec", None) is not None:
            e._cached_spec = None
        e = e.env


def _needs_frames(plugin: Any) -> bool:
    return plugin is not None and "frames" in getattr(plugin, "requires", ())


# ----------------------------------------------------------------------------- public API


def _resolve_plugin(
    card: TaskCard, reward: Any, render_mode: str | None, alpha: float | None, weights: Sequence[float] | None
) -> tuple[Any, str | None]:
    """Build the reward plugin (or ``None``) and the render mode it needs (``"rgb_array"`` for frames)."""
    if reward is None:
        if alpha is not None or weights is not None:
            raise ConfigError("'alpha' and 'weights' apply only when a reward is given")
        return None, render_mode
    from ..core.registry import make_reward

    plugin = make_reward(reward, task=card)
    if render_mode is None and _needs_frames(plugin):
        render_mode = "rgb_array"
    return plugin, render_mode


def make_env(
    task: str | TaskCard,
    reward: Any = None,
    mode: str = "replace",
    *,
    seed: int | None = None,
    render_mode: str | None = None,
    render_overrides: Mapping[str, Any] | None = None,
    alpha: float | None = None,
    weights: Sequence[float] | None = None,
    **env_kwargs: Any,
) -> gym.Env:
    """Make the env of a task card, optionally with a reward plugin.

    The env has the card's time limit, its render options (camera, size, shadows and
    reflections off unless the card says otherwise) and ``info["is_success"]`` on every
    step from the card's success signal. With ``reward``, it is wrapped in
    :class:`~robo_reward.RewardWrapper` (``info["env_reward"]`` keeps the env's reward,
    ``info["reward_terms"]`` the plugin's terms).

    Args:
        task: a card name (``"metaworld-reach-v3"``), a YAML path or a :class:`TaskCard`.
        reward: a reward plugin, name, ``"name:k=v"`` spec or mapping (``None``: env reward).
        mode: how the plugin reward meets the env reward: ``"replace"``, ``"add"``,
            ``"blend"`` (with ``alpha``) or ``"weighted"`` (with ``weights``).
        seed: seeds the env (first reset and action space; for MetaWorld also the task set).
        render_mode: e.g. ``"rgb_array"``. Defaults to ``"rgb_array"`` when the reward
            scores frames, else ``None``.
        render_overrides: replace fields of the card's ``render`` section
            (``{"width": 64, "height": 64, "shadows": True}``).
        alpha, weights: passed to the reward wrapper for ``blend``/``weighted`` modes.
        **env_kwargs: extra keyword arguments for ``gymnasium.make`` (override the card's).

    Raises:
        TaskCardError: unknown or invalid card, or an env id Gymnasium does not know.
        MissingDependencyError: the simulator package is not installed.
        ConfigError: a bad reward spec, mode or render override.
    """
    card = load_card(task)
    render = _resolve_render(card, render_overrides)
    plugin, render_mode = _resolve_plugin(card, reward, render_mode, alpha, weights)
    env = _build_base(card, render_mode, render, seed, env_kwargs)
    env = SuccessInfoWrapper(env, card.success_signal())
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
    if plugin is not None:
        from ..wrappers import RewardWrapper

        env = RewardWrapper(env, plugin, mode=mode, alpha=alpha, weights=weights, task=card)
    _set_spec(
        env,
        card,
        {
            "reward": reward,
            "mode": mode if reward is not None else None,
            "seed": seed,
            "render_mode": render_mode,
            "render_overrides": dict(render_overrides) if render_overrides else None,
            "alpha": alpha,
            "weights": weights,
            **env_kwargs,
        },
    )
    return env


_AUTORESET = {
    "next_step": gym.vector.AutoresetMode.NEXT_STEP,
    "same_step": gym.vector.AutoresetMode.SAME_STEP,
}


def _autoreset_mode(value: Any) -> gym.vector.AutoresetMode:
    """``"next_step"``/``"same_step"`` (or the enum, or its value ``"NextStep"``) → ``AutoresetMode``."""
    if isinstance(value, gym.vector.AutoresetMode):
        mode = value
    elif isinstance(value, str) and value.lower() in _AUTORESET:
        mode = _AUTORESET[value.lower()]
    else:
        try:
            mode = gym.vector.AutoresetMode(value)
        except ValueError:
            mode = None  # type: ignore[assignment]
    if mode not in _AUTORESET.values():
        raise ConfigError(f"autoreset_mode must be 'next_step' or 'same_step', got {value!r}")
    return mode


def _make_sub_env(
    card: TaskCard,
    render_mode: str | None,
    render_overrides: Mapping[str, Any] | None,
    env_kwargs: Mapping[str, Any],
    seed: int | None,
    final_frame: bool,
) -> gym.Env:
    env = make_env(card, seed=seed, render_mode=render_mode, render_overrides=render_overrides, **dict(env_kwargs))
    if final_frame:
        from ..wrappers import FinalFrameWrapper

        env = FinalFrameWrapper(env)
    return env


def make_vec_env(
    task: str | TaskCard,
    n_envs: int,
    reward: Any = None,
    mode: str = "replace",
    seed: int | None = None,
    vectorization: str = "sync",
    autoreset_mode: str | None = None,
    render_mode: str | None = None,
    *,
    render_overrides: Mapping[str, Any] | None = None,
    alpha: float | None = None,
    weights: Sequence[float] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    sim_backend: str = "auto",
) -> gym.vector.VectorEnv:
    """Make a Gymnasium ``VectorEnv`` of ``n_envs`` copies of a task card's env.

    Each sub-env is :func:`make_env` without a reward; the reward plugin, when given,
    wraps the whole vector env (:class:`~robo_reward.VectorRewardWrapper`, one batched
    call per step). Sub-envs carry ``info["is_success"]``.

    Args:
        task: card name, YAML path or :class:`TaskCard`.
        n_envs: number of sub-envs (>= 1).
        reward, mode, alpha, weights: as for :func:`make_env`.
        seed: sub-env ``i`` is reset with ``seed + i`` (MetaWorld: all share the task set of ``seed``).
        vectorization: ``"sync"`` (one process), ``"async"`` (one process per sub-env)
            or ``"simulator"``: the simulator's own batch, all sub-envs in one
            simulation — ManiSkill's GPU simulation for ``maniskill`` cards
            (:class:`~robo_reward.envs.maniskill_backend.ManiSkillBatchEnv`) and MuJoCo
            MJX for the MuJoCo cards it supports
            (:class:`~robo_reward.envs.mjx_backend.MJXVectorEnv`).
        autoreset_mode: ``"next_step"`` (Gymnasium's default) or ``"same_step"``
            (SB3-like: the finished sub-env is reset in the same ``step`` call);
            ``None``: ``"next_step"``, or the simulator backend's own mode (ManiSkill:
            ``same_step``; MJX: ``next_step``), which is the only one it has.
        sim_backend: ManiSkill's simulation backend for ``vectorization="simulator"``
            (``"auto"``: CUDA when there is a GPU; see
            :func:`~robo_reward.envs.maniskill_backend.resolve_sim_backend`).
        render_mode: as for :func:`make_env` (``"rgb_array"`` when the reward scores frames).
        render_overrides: as for :func:`make_env`.
        env_kwargs: extra keyword arguments for every sub-env's ``gymnasium.make``.
    """
    if not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
        raise ConfigError(f"n_envs must be a positive integer, got {n_envs!r}")
    if vectorization not in _VECTORIZATIONS:
        raise ConfigError(f"vectorization must be one of {', '.join(_VECTORIZATIONS)}, got {vectorization!r}")
    card = load_card(task)
    if vectorization == "simulator":
        return _make_simulator_vec_env(
            card, int(n_envs), reward, mode, seed, autoreset_mode, render_mode, render_overrides,
            alpha, weights, env_kwargs, sim_backend,
        )
    ar_mode = _autoreset_mode("next_step" if autoreset_mode is None else autoreset_mode)
    _resolve_render(card, render_overrides)  # fail early on bad overrides
    plugin, render_mode = _resolve_plugin(card, reward, render_mode, alpha, weights)
    final_frame = _needs_frames(plugin) and ar_mode is gym.vector.AutoresetMode.SAME_STEP
    fns: list[Callable[[], gym.Env]] = [
        functools.partial(_make_sub_env, card, render_mode, render_overrides, dict(env_kwargs or {}), seed, final_frame)
        for _ in range(int(n_envs))
    ]
    cls = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
    venv = cls(fns, autoreset_mode=ar_mode)
    if seed is not None:
        venv.reset(seed=[int(seed) + i for i in range(int(n_envs))])
        venv.action_space.seed(int(seed))
    if plugin is not None:
        from ..wrappers import VectorRewardWrapper

        venv = VectorRewardWrapper(venv, plugin, mode=mode, alpha=alpha, weights=weights, task=card)
    return venv


def _make_simulator_vec_env(
    card: TaskCard,
    n_envs: int,
    reward: Any,
    mode: str,
    seed: int | None,
    autoreset_mode: str | None,
    render_mode: str | None,
    render_overrides: Mapping[str, Any] | None,
    alpha: float | None,
    weights: Sequence[float] | None,
    env_kwargs: Mapping[str, Any] | None,
    sim_backend: str,
) -> gym.vector.VectorEnv:
    """``make_vec_env(..., vectorization="simulator")``: one batched simulation of ``n_envs``."""
    if render_overrides:
        raise ConfigError("render_overrides are not supported with vectorization='simulator'")
    if card.family == "maniskill":
        from .maniskill_backend import ManiSkillBatchEnv

        native = gym.vector.AutoresetMode.SAME_STEP
        build = functools.partial(
            ManiSkillBatchEnv, card, n_envs, sim_backend=sim_backend, seed=seed, env_kwargs=env_kwargs
        )
    elif card.family == "mujoco":
        from .mjx_backend import SUPPORTED_ENV_IDS, MJXVectorEnv

        if card.env_id not in SUPPORTED_ENV_IDS:
            raise ConfigError(
                f"vectorization='simulator' runs MuJoCo cards on MJX, which supports "
                f"{', '.join(SUPPORTED_ENV_IDS)}; card {card.name!r} is {card.env_id!r}"
            )
        if env_kwargs:
            raise ConfigError("env_kwargs are not supported for MJX; put them in the task card")
        native = gym.vector.AutoresetMode.NEXT_STEP

        def build(render_mode: str | None = None) -> gym.vector.VectorEnv:
            if render_mode is not None:
                raise ConfigError("the MJX backend does not render; use the default vectorization for frames")
            return MJXVectorEnv(card, n_envs, seed=seed)
    else:
        raise ConfigError(
            f"vectorization='simulator' needs a simulator that batches envs itself (ManiSkill, or MuJoCo through "
            f"MJX); card {card.name!r} is a {card.family!r} card"
        )
    if autoreset_mode is not None and _autoreset_mode(autoreset_mode) is not native:
        raise ConfigError(
            f"the {card.family} simulator backend resets finished sub-envs in {native.name} mode only; "
            f"got autoreset_mode={autoreset_mode!r}"
        )
    plugin, render_mode = _resolve_plugin(card, reward, render_mode, alpha, weights)
    venv = build(render_mode=render_mode)
    if seed is not None:
        venv.action_space.seed(int(seed))
    if plugin is not None:
        from ..wrappers import VectorRewardWrapper

        venv = VectorRewardWrapper(venv, plugin, mode=mode, alpha=alpha, weights=weights, task=card)
    return venv


def make_registered_env(task: str, reward: Any = None, mode: str = "replace", **kwargs: Any) -> gym.Env:
    """Entry point of the ``robo_reward/<card>`` Gymnasium ids: :func:`make_env` with ``gym.make``'s keywords."""
    return make_env(task, reward, mode, **kwargs)

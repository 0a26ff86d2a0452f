"""MuJoCo MJX as a batched env backend: :class:`MJXVectorEnv`.

:class:`MJXVectorEnv` is a Gymnasium ``VectorEnv`` that simulates ``num_envs`` copies
of a Gymnasium MuJoCo v5 locomotion task with MuJoCo MJX (MuJoCo in JAX/XLA): one
``jax.jit(jax.vmap(step))`` call advances every sub-env by ``frame_skip`` physics
substeps on the jax default device (a GPU when jax finds one, else the CPU)::

    from robo_reward import VectorRewardWrapper
    from robo_reward.envs.mjx_backend import MJXVectorEnv

    venv = VectorRewardWrapper(MJXVectorEnv("mujoco-half-cheetah-v5", 1024, seed=0), "env")
    obs, info = venv.reset()
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())

What it reproduces of the Gymnasium env, read from the env that ``gymnasium.make``
builds for the card (so a card's ``env_kwargs`` apply): the MJCF model
(``unwrapped.fullpath``), ``frame_skip``, the reset noise, the observation
(``qpos[1:]`` and ``qvel``; Hopper and Walker2d clip ``qvel`` to ``[-10, 10]``), the
reward (``forward_reward_weight * x_velocity - ctrl_cost_weight * sum(action**2)``, plus
the healthy reward for Hopper and Walker2d), termination when unhealthy (Hopper,
Walker2d), the per-step ``info`` keys, the time limit as truncation, and autoreset in
Gymnasium's ``NEXT_STEP`` mode.

Supported: ``HalfCheetah-v5``, ``Hopper-v5``, ``Walker2d-v5`` (as Gymnasium ids or as
the task cards ``mujoco-half-cheetah-v5``, ``mujoco-hopper-v5``, ``mujoco-walker2d-v5``).

Not supported: rendering (MJX has no renderer; ``render()`` raises), the other MuJoCo
cards (their observations need contact forces or other derived quantities that are not
written here yet), ``exclude_current_positions_from_observation=False``, and the
``SAME_STEP``/``DISABLED`` autoreset modes. MJX itself simulates part of MuJoCo:
``mjx.put_model`` refuses models it cannot simulate (the PGS solver, geom pairs without
an MJX collision function, margins on meshes and height fields, some actuator, sensor
and equality types), meshes collide as convex hulls, and every candidate geom pair gets
a fixed-size slot in the contact arrays that is evaluated on every step, so models with
many collidable geoms (MetaWorld's arms and objects, ManiSkill's scenes) are slow or
unsupported; they are out of scope here.

Numbers: by default jax computes in ``float32`` (native MuJoCo in ``float64``), and the
observation space says so. Started from the same state and given the same actions, the
observations agree with the native env to within ``5e-4`` over 20 HalfCheetah steps,
and to within ``5e-5`` over 80 Hopper and Walker2d steps, falls included
(``tests/test_mjx.py``); over longer horizons they drift apart, as two chaotic
simulations do (HalfCheetah's joint velocities differ by ``~1e-2`` after about 25
steps). On a CPU MJX is slower than native MuJoCo (``benchmarks/mjx_vs_mujoco.py``): it
is a backend for GPUs.

Device path: :meth:`MJXVectorEnv.step` and :meth:`~MJXVectorEnv.reset` return host
(numpy) copies, for :class:`~robo_reward.VectorRewardWrapper` and every numpy consumer.
:meth:`MJXVectorEnv.step_device` steps without any host copy and returns the device
state (:class:`MJXState`: the batched ``mjx.Data``, observations, rewards, flags and
``info`` arrays as jax arrays), and :meth:`MJXVectorEnv.device_state` returns the
current one, for a device-resident reward path (``docs/gpu-backends.md``).

``jax`` and ``mujoco-mjx`` come with the ``mjx`` extra (``pip install
"robo-reward[mjx]"``); this module imports them only when an env is made. With
``mujoco-mjx`` 3.3.0, jax 0.10.0 and 0.10.2 hung on the CPU backend at 1024 sub-envs (a
step that never completes, with no CPU in use); jax 0.9.2 ran the same steps.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from ..core.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    import jax

    from .cards import TaskCard

#: Gymnasium ids this backend can simulate.
SUPPORTED_ENV_IDS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")

_HEALTHY_INFO_KEYS = (
    "x_position", "z_distance_from_origin", "x_velocity", "reward_forward", "reward_ctrl", "reward_survive",
)
_STEP_INFO_KEYS = {
    "HalfCheetah-v5": ("x_position", "x_velocity", "reward_forward", "reward_ctrl"),
    "Hopper-v5": _HEALTHY_INFO_KEYS,
    "Walker2d-v5": _HEALTHY_INFO_KEYS,
}
_RESET_INFO_KEYS = {
    "HalfCheetah-v5": ("x_position",),
    "Hopper-v5": ("x_position", "z_distance_from_origin"),
    "Walker2d-v5": ("x_position", "z_distance_from_origin"),
}


def mjx_problem() -> str | None:
    """Why MJX cannot run here (``mujoco``, ``jax`` or ``mujoco.mjx`` missing), in words; ``None`` when it can."""
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return "mujoco is not installed (pip install 'robo-reward[mujoco]')"
    try:
        import jax  # noqa: F401
        from mujoco import mjx  # noqa: F401
    except ImportError as exc:
        return f"jax / mujoco.mjx cannot be imported ({exc}); install the mjx extra: pip install 'robo-reward[mjx]'"
    return None


def _import_mjx() -> tuple[Any, Any, Any]:
    """Import ``jax``, ``jax.numpy`` and ``mujoco.mjx``, or raise :class:`MissingDependencyError`."""
    try:
        import jax
        import jax.numpy as jnp
        from mujoco import mjx
    except ImportError as exc:
        raise MissingDependencyError("mujoco-mjx", "mjx", "MJXVectorEnv (MuJoCo MJX env backend)") from exc
    return jax, jnp, mjx


class MJXState(NamedTuple):
    """The device state of an :class:`MJXVectorEnv` (a jax pytree; every leaf has a leading ``num_envs`` axis).

    Attributes:
        data: the batched ``mujoco.mjx.Data``. After a step it is complete; right after
            a reset it holds the state and its kinematics (``mjx.kinematics``: body,
            geom and site poses), and the rest of the forward pass (contacts, forces,
            accelerations) is filled in by the next step.
        obs: observations, ``float[n, obs_dim]``.
        reward: the env's rewards of the last step, ``float[n]`` (0 after a reset).
        terminated: ``bool[n]``.
        truncated: ``bool[n]`` (the time limit was reached).
        autoreset: ``bool[n]``: the sub-env was reset by this step (``NEXT_STEP``
            autoreset, or ``reset()``): its action was ignored and its reward is 0.
        steps: steps taken in the current episode, ``int32[n]``.
        key: per-sub-env PRNG keys used for the next reset, ``uint32[n, 2]``.
        info: the Gymnasium env's ``info`` values, ``{name: float[n]}``; rows reset by
            this step carry only the reset ``info`` keys (the others are 0).
    """

    data: Any
    obs: Any
    reward: Any
    terminated: Any
    truncated: Any
    autoreset: Any
    steps: Any
    key: Any
    info: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class MJXTaskSpec:
    """Everything that defines the simulated task, read from the Gymnasium env (hashable, so compiled code is shared).

    Attributes:
        env_id: the Gymnasium id (one of :data:`SUPPORTED_ENV_IDS`).
        xml_path: the MJCF file the Gymnasium env loads.
        frame_skip: physics substeps per env step.
        dt: seconds per env step (``timestep * frame_skip``).
        init_qpos, init_qvel: the state that reset noise is added to.
        reset_noise_scale: half-width of the uniform position noise (and of the
            velocity noise for Hopper/Walker2d; the std of the Gaussian velocity noise
            for HalfCheetah).
        forward_reward_weight, ctrl_cost_weight: reward weights.
        healthy_reward: reward per healthy step (0 for HalfCheetah).
        terminate_when_unhealthy: end the episode when the state is unhealthy.
        healthy_z_range, healthy_angle_range, healthy_state_range: the bounds of a
            healthy state (``None`` where the env has no such check).
        clip_qvel: bound of ``|qvel|`` in the observation (``None``: not clipped).
    """

    env_id: str
    xml_path: str
    frame_skip: int
    dt: float
    init_qpos: tuple[float, ...]
    init_qvel: tuple[float, ...]
    reset_noise_scale: float
    forward_reward_weight: float
    ctrl_cost_weight: float
    healthy_reward: float = 0.0
    terminate_when_unhealthy: bool = False
    healthy_z_range: tuple[float, float] | None = None
    healthy_angle_range: tuple[float, float] | None = None
    healthy_state_range: tuple[float, float] | None = None
    clip_qvel: float | None = None

    @property
    def has_health(self) -> bool:
        """Whether the task has a healthy-state check (Hopper, Walker2d)."""
        return self.healthy_z_range is not None

    @classmethod
    def from_gym_env(cls, env_id: str, env: gym.Env) -> "MJXTaskSpec":
        """Read the spec from a Gymnasium MuJoCo v5 env built with ``gymnasium.make(env_id, ...)``.

        Raises:
            ConfigError: the id is not supported, or the env's options are ones this
                backend does not reproduce.
        """
        if env_id not in SUPPORTED_ENV_IDS:
            raise ConfigError(
                f"MJXVectorEnv simulates {', '.join(SUPPORTED_ENV_IDS)}; {env_id!r} is not one of them "
                "(use the native MuJoCo env through robo_reward.envs.make_vec_env)"
            )
        u = env.unwrapped
        if not getattr(u, "_exclude_current_positions_from_observation", True):
            raise ConfigError(
                "MJXVectorEnv builds observations without the x position: "
                "exclude_current_positions_from_observation=False is not supported"
            )
        common = dict(
            env_id=env_id,
            xml_path=str(u.fullpath),
            frame_skip=int(u.frame_skip),
            dt=float(u.model.opt.timestep) * int(u.frame_skip),
            init_qpos=tuple(float(x) for x in u.init_qpos),
            init_qvel=tuple(float(x) for x in u.init_qvel),
            reset_noise_scale=float(u._reset_noise_scale),
            forward_reward_weight=float(u._forward_reward_weight),
            ctrl_cost_weight=float(u._ctrl_cost_weight),
        )
        if env_id == "HalfCheetah-v5":
            return cls(**common)
        return cls(
            **common,
            healthy_reward=float(u._healthy_reward),
            terminate_when_unhealthy=bool(u._terminate_when_unhealthy),
            healthy_z_range=tuple(float(x) for x in u._healthy_z_range),  # type: ignore[arg-type]
            healthy_angle_range=tuple(float(x) for x in u._healthy_angle_range),  # type: ignore[arg-type]
            healthy_state_range=(
                tuple(float(x) for x in u._healthy_state_range)  # type: ignore[arg-type]
                if env_id == "Hopper-v5"
                else None
            ),
            clip_qvel=10.0,
        )


class _Program(NamedTuple):
    """The jitted batched step for one task spec (shared by every env with that spec)."""

    mjx_model: Any
    template: Any  # an unbatched mjx.Data
    obs_dim: int
    dtype: np.dtype
    step: Any  # (MJXState, actions[n, nu], max_steps) -> MJXState


@functools.lru_cache(maxsize=None)
def _program(spec: MJXTaskSpec, device: Any) -> _Program:
    """Build (once per spec and device) the mjx model and the jitted batched step.

    The step resets the sub-envs whose episode ended on the previous step
    (``terminated | truncated``), so ``reset()`` is the same program run on a state
    where every sub-env is marked done: one function is compiled, not two.
    """
    jax, jnp, mjx = _import_mjx()
    import mujoco

    model = mujoco.MjModel.from_xml_path(spec.xml_path)
    mx = mjx.put_model(model, device=device)
    template = mjx.make_data(mx, device=device)
    fdtype = template.qpos.dtype
    init_qpos = jnp.asarray(spec.init_qpos, dtype=fdtype)
    init_qvel = jnp.asarray(spec.init_qvel, dtype=fdtype)
    nq, nv = model.nq, model.nv
    step_keys = _STEP_INFO_KEYS[spec.env_id]
    zero = jnp.zeros((), fdtype)

    def observe(d: Any) -> Any:
        qvel = d.qvel if spec.clip_qvel is None else jnp.clip(d.qvel, -spec.clip_qvel, spec.clip_qvel)
        return jnp.concatenate([d.qpos[1:], qvel])

    def is_healthy(d: Any) -> Any:
        z, angle = d.qpos[1], d.qpos[2]
        lo, hi = spec.healthy_z_range  # type: ignore[misc]
        ok = (lo < z) & (z < hi)
        lo, hi = spec.healthy_angle_range  # type: ignore[misc]
        ok &= (lo < angle) & (angle < hi)
        if spec.healthy_state_range is not None:
            lo, hi = spec.healthy_state_range
            state = jnp.concatenate([d.qpos, d.qvel])[2:]
            ok &= jnp.all((lo < state) & (state < hi))
        return ok

    def reset_one(key: Any) -> MJXState:
        key, k_pos, k_vel = jax.random.split(key, 3)
        s = spec.reset_noise_scale
        qpos = init_qpos + jax.random.uniform(k_pos, (nq,), fdtype, -s, s)
        if spec.env_id == "HalfCheetah-v5":
            qvel = init_qvel + s * jax.random.normal(k_vel, (nv,), fdtype)
        else:
            qvel = init_qvel + jax.random.uniform(k_vel, (nv,), fdtype, -s, s)
        # kinematics only (body, geom and site poses): the next mjx.step runs the full forward pass
        d = mjx.kinematics(mx, template.replace(qpos=qpos, qvel=qvel))
        info = {k: zero for k in step_keys}
        info["x_position"] = d.qpos[0]
        if "z_distance_from_origin" in info:
            info["z_distance_from_origin"] = d.qpos[1] - init_qpos[1]
        return MJXState(
            data=d,
            obs=observe(d),
            reward=zero,
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            autoreset=jnp.ones((), bool),
            steps=jnp.zeros((), jnp.int32),
            key=key,
            info=info,
        )

    def physics_one(state: MJXState, action: Any, max_steps: Any) -> MJXState:
        d0 = state.data

        def substep(d: Any, _: Any) -> tuple[Any, None]:
            return mjx.step(mx, d), None

        d, _ = jax.lax.scan(substep, d0.replace(ctrl=action), None, length=spec.frame_skip)
        x_velocity = (d.qpos[0] - d0.qpos[0]) / spec.dt
        forward = spec.forward_reward_weight * x_velocity
        ctrl_cost = spec.ctrl_cost_weight * jnp.sum(jnp.square(action))
        info = {"x_position": d.qpos[0], "x_velocity": x_velocity, "reward_forward": forward, "reward_ctrl": -ctrl_cost}
        reward = forward - ctrl_cost
        terminated = jnp.zeros((), bool)
        if spec.has_health:
            healthy = is_healthy(d)
            survive = healthy.astype(fdtype) * spec.healthy_reward
            reward = reward + survive
            info["reward_survive"] = survive
            info["z_distance_from_origin"] = d.qpos[1] - init_qpos[1]
            if spec.terminate_when_unhealthy:
                terminated = ~healthy
        steps = state.steps + 1
        return MJXState(
            data=d,
            obs=observe(d),
            reward=reward.astype(fdtype),
            terminated=terminated,
            truncated=steps >= max_steps,
            autoreset=jnp.zeros((), bool),
            steps=steps,
            key=state.key,
            info={k: info[k].astype(fdtype) for k in step_keys},
        )

    batched_reset = jax.vmap(reset_one)
    batched_physics = jax.vmap(physics_one, in_axes=(0, 0, None))

    def step(state: MJXState, actions: Any, max_steps: Any) -> MJXState:
        stepped = batched_physics(state, actions.astype(fdtype), max_steps)
        done = state.terminated | state.truncated

        def with_reset(stepped: MJXState) -> MJXState:
            fresh = batched_reset(state.key)

            def pick(a: Any, b: Any) -> Any:
                return jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)

            return jax.tree_util.tree_map(pick, fresh, stepped)

        # the reset branch runs only on steps where some sub-env is done
        return jax.lax.cond(jnp.any(done), with_reset, lambda s: s, stepped)

    return _Program(
        mjx_model=mx,
        template=template,
        obs_dim=(nq - 1) + nv,
        dtype=np.dtype(fdtype),
        step=jax.jit(step),
    )


def _resolve(card_or_env_id: "str | TaskCard") -> tuple[str, dict[str, Any], int | None]:
    """(Gymnasium id, env kwargs, card time limit or ``None``) of a card, card name, card path or Gymnasium id."""
    from .cards import TaskCard, load_card

    card = None
    if isinstance(card_or_env_id, TaskCard):
        card = card_or_env_id
    elif isinstance(card_or_env_id, str) and card_or_env_id not in SUPPORTED_ENV_IDS:
        card = load_card(card_or_env_id)  # raises TaskCardError naming what exists
    if card is None:
        env_id = str(card_or_env_id)
        spec = gym.spec(env_id)
        return env_id, {}, spec.max_episode_steps
    if card.family != "mujoco":
        raise ConfigError(f"MJXVectorEnv needs a 'mujoco' task card; {card.name!r} is a {card.family!r} card")
    return card.env_id, dict(card.env_kwargs), card.max_episode_steps


class MJXVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` Gymnasium MuJoCo v5 locomotion envs simulated in one batch by MuJoCo MJX.

    Observations, rewards, flags and ``info`` come back as numpy arrays (host copies),
    in Gymnasium's vector format (``info[key]`` with a boolean ``info["_" + key]``
    mask), so the env works under :class:`~robo_reward.VectorRewardWrapper` and any
    numpy consumer. Autoreset follows Gymnasium's ``NEXT_STEP`` mode: the step after a
    sub-env's episode ends resets that sub-env (its action is ignored, its reward is 0,
    ``terminated``/``truncated`` are false, and its ``info`` holds only the reset keys).

    Args:
        card_or_env_id: a ``mujoco`` task card (object, name or path) or a Gymnasium id
            from :data:`SUPPORTED_ENV_IDS`. The card's ``env_kwargs`` are passed to
            ``gymnasium.make`` to read the model and reward settings.
        num_envs: number of sub-envs.
        seed: seed used by the first ``reset()`` when it is given no seed (``None``: a
            random one).
        max_episode_steps: time limit (truncation); default: the card's, or the
            Gymnasium id's registered limit (1000 for these tasks).
        device: a ``jax.Device`` to simulate on; default: jax's default device (a GPU
            when present).

    Raises:
        MissingDependencyError: ``jax`` or ``mujoco-mjx`` is not installed.
        ConfigError: the task is not one this backend simulates.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        card_or_env_id: "str | TaskCard",
        num_envs: int,
        *,
        seed: int | None = None,
        max_episode_steps: int | None = None,
        device: "jax.Device | None" = None,
    ):
        jax, jnp, _ = _import_mjx()
        if int(num_envs) < 1:
            raise ConfigError(f"num_envs must be at least 1, got {num_envs}")
        env_id, env_kwargs, limit = _resolve(card_or_env_id)
        if env_id not in SUPPORTED_ENV_IDS:
            raise ConfigError(
                f"MJXVectorEnv simulates {', '.join(SUPPORTED_ENV_IDS)}; {env_id!r} is not one of them "
                "(use the native MuJoCo env through robo_reward.envs.make_vec_env)"
            )
        native = gym.make(env_id, **env_kwargs)
        try:
            self.task_spec = MJXTaskSpec.from_gym_env(env_id, native)
            act_space = native.action_space
        finally:
            native.close()
        steps = max_episode_steps if max_episode_steps is not None else limit
        if steps is None or int(steps) < 1:
            raise ConfigError(f"max_episode_steps must be a positive integer, got {steps!r}")

        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(steps)
        self.render_mode = None
        self._seed = seed
        self._prog = _program(self.task_spec, device)
        #: the device the sub-envs are simulated on
        self.device = device if device is not None else jax.devices()[0]
        self._fdtype = self._prog.dtype
        self._max_steps = jnp.asarray(self.max_episode_steps, jnp.int32)
        self._jnp = jnp
        self._jax = jax

        self.single_action_space = act_space
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self._prog.obs_dim,), self._fdtype)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._step_keys = _STEP_INFO_KEYS[env_id]
        self._reset_keys = _RESET_INFO_KEYS[env_id]
        self._state: MJXState | None = None
        n = self.num_envs
        self._batched_template = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (n, *x.shape)), self._prog.template
        )
        self._zero_actions = jnp.zeros((n, *self.single_action_space.shape), self._fdtype)

    # -- device side -------------------------------------------------------------------

    @property
    def mjx_model(self) -> Any:
        """The ``mujoco.mjx.Model`` on the simulation device."""
        return self._prog.mjx_model

    def device_state(self) -> MJXState:
        """The current device state (jax arrays, no host copy).

        Raises:
            gymnasium.error.ResetNeeded: before the first ``reset()``.
        """
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before device_state()")
        return self._state

    def reset_device(self, *, seed: int | Sequence[int | None] | None = None) -> MJXState:
        """Reset every sub-env on the device and return the new :class:`MJXState` (no host copy).

        Args:
            seed: an int (sub-env ``i`` gets the ``i``-th key split from it), one seed
                per sub-env (``None`` entries draw a random one), or ``None`` (the
                constructor's seed on the first reset, else a fresh random one).
        """
        jax = self._jax
        if seed is None and self._state is None and self._seed is not None:
            seed = self._seed
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if isinstance(seed, (int, np.integer)):
            keys = jax.random.split(jax.random.PRNGKey(int(seed)), self.num_envs)
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ConfigError(f"reset(seed=...) got {len(seeds)} seeds for {self.num_envs} sub-envs")
            fresh = np.random.SeedSequence().generate_state(self.num_envs)
            keys = self._jnp.stack(
                [jax.random.PRNGKey(int(s) if s is not None else int(fresh[i])) for i, s in enumerate(seeds)]
            )
        jnp = self._jnp
        n = self.num_envs
        blank = MJXState(
            data=self._batched_template,
            obs=jnp.zeros((n, self._prog.obs_dim), self._fdtype),
            reward=jnp.zeros((n,), self._fdtype),
            terminated=jnp.ones((n,), bool),  # every sub-env "done": the step program resets all of them
            truncated=jnp.zeros((n,), bool),
            autoreset=jnp.zeros((n,), bool),
            steps=jnp.zeros((n,), jnp.int32),
            key=keys,
            info={k: jnp.zeros((n,), self._fdtype) for k in self._step_keys},
        )
        self._state = self._prog.step(blank, self._zero_actions, self._max_steps)
        return self._state

    def step_device(self, actions: Any) -> MJXState:
        """Step every sub-env on the device and return the new :class:`MJXState` (no host copy).

        The step is queued (jax's asynchronous dispatch); wait for it with
        ``jax.block_until_ready`` where timing matters.

        Args:
            actions: ``[num_envs, action_dim]`` (jax or numpy).

        Raises:
            gymnasium.error.ResetNeeded: before the first ``reset()``.
            ValueError: the actions have the wrong shape.
        """
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = self._jnp.asarray(actions, dtype=self._fdtype)
        expected = (self.num_envs, *self.single_action_space.shape)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        self._state = self._prog.step(self._state, actions, self._max_steps)
        return self._state

    # -- Gymnasium VectorEnv -----------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env; return host copies ``(obs, info)``.

        ``options`` is accepted for compatibility and must not ask for a partial reset
        (``reset_mask`` belongs to the ``DISABLED`` autoreset mode).
        """
        if options and "reset_mask" in options:
            raise ConfigError(
                "MJXVectorEnv autoresets in NEXT_STEP mode; reset(options={'reset_mask': ...}) is not supported"
            )
        if seed is not None:
            super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)
        state = self.reset_device(seed=seed)
        obs, info_vals = self._jax.device_get((state.obs, {k: state.info[k] for k in self._reset_keys}))
        mask = np.ones(self.num_envs, dtype=bool)
        info: dict[str, Any] = {}
        for k in self._reset_keys:
            info[k] = np.array(info_vals[k])
            info[f"_{k}"] = mask.copy()
        return np.array(obs), info

    def step(self, actions: Any):
        """Step every sub-env; return host copies ``(obs, reward, terminated, truncated, info)``."""
        state = self.step_device(actions)
        obs, rew, term, trunc, auto, info_vals = self._jax.device_get(
            (state.obs, state.reward, state.terminated, state.truncated, state.autoreset, state.info)
        )
        auto = np.asarray(auto, dtype=bool)
        info: dict[str, Any] = {}
        for k in self._step_keys:
            info[k] = np.array(info_vals[k])
            info[f"_{k}"] = np.ones(self.num_envs, dtype=bool) if k in self._reset_keys else ~auto
        return np.array(obs), np.array(rew), np.array(term, dtype=bool), np.array(trunc, dtype=bool), info

    def render(self) -> None:
        """MJX has no renderer: raises ``NotImplementedError``."""
        raise NotImplementedError(
            "MJXVectorEnv does not render (MJX has no renderer); use the native MuJoCo env for frame-based rewards"
        )

    def close_extras(self, **kwargs: Any) -> None:
        """Drop the device state."""
        self._state = None

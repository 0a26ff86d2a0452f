"""ManiSkill 3's batched simulation as a Gymnasium ``VectorEnv`` (GPU-batched on a CUDA GPU).

ManiSkill simulates ``num_envs`` copies of a scene in one process: on a CUDA GPU with
``sim_backend="physx_cuda"`` (thousands of envs in one batch), on the CPU with
``"physx_cpu"`` for one env only. Its envs speak a batched dialect of Gymnasium's API
(torch tensors with a leading ``num_envs`` dimension, partial resets through
``reset(options={"env_idx": ...})``). :class:`ManiSkillBatchEnv` turns that into a
standard Gymnasium ``VectorEnv`` that :class:`~robo_reward.VectorRewardWrapper` (and any
numpy consumer) understands:

* observations, rewards, flags, ``info`` and frames come back as numpy arrays (one host
  copy per step), ``info[key]`` with a boolean ``info["_" + key]`` mask;
* autoreset follows Gymnasium's ``SAME_STEP`` mode: a finished sub-env is reset inside
  the same ``step`` call, its real last observation is in ``info["final_obs"]`` and its
  last ``info`` in ``info["final_info"]`` (masks ``_final_obs``/``_final_info``), and when
  the env renders, the frame of that last state is kept in the final info's
  ``"final_frame"``, so reward plugins that score frames see the real last state too;
* :attr:`ManiSkillBatchEnv.maniskill_env` is the ManiSkill env itself, for device-side
  consumers that want the torch tensors without a copy (see ``docs/gpu-backends.md``).

``make_vec_env(card, n, vectorization="simulator")`` builds it for ``maniskill`` cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ..core.errors import ConfigError, RoboRewardError
from ..wrappers.frames import FINAL_FRAME_KEY
from .cards import TaskCard, load_card
from .make import SUCCESS_INFO_KEY

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Simulation backends ManiSkill accepts, and ``"auto"``.
SIM_BACKENDS = ("auto", "physx_cuda", "physx_cpu", "gpu", "cpu")


def resolve_sim_backend(sim_backend: str, num_envs: int, cuda_available: bool | None = None) -> str:
    """Pick ManiSkill's simulation backend, or raise :class:`ConfigError` for a batch the CPU cannot run.

    ``"auto"`` is ``"physx_cuda"`` when torch sees a CUDA GPU, else ``"physx_cpu"``;
    ``"gpu"``/``"cpu"`` are ManiSkill's short names for the same two. ManiSkill's CPU
    simulation holds one env per process, so ``num_envs > 1`` needs the GPU backend.
    """
    if sim_backend not in SIM_BACKENDS:
        raise ConfigError(f"sim_backend must be one of {', '.join(SIM_BACKENDS)}, got {sim_backend!r}")
    if int(num_envs) < 1:
        raise ConfigError(f"num_envs must be at least 1, got {num_envs!r}")
    if sim_backend == "auto":
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        sim_backend = "physx_cuda" if cuda_available else "physx_cpu"
    sim_backend = {"gpu": "physx_cuda", "cpu": "physx_cpu"}.get(sim_backend, sim_backend)
    if sim_backend == "physx_cpu" and int(num_envs) > 1:
        raise ConfigError(
            f"ManiSkill simulates several envs in one batch only on a CUDA GPU (sim_backend='physx_cuda'); "
            f"its CPU simulation holds one env, and {num_envs} were asked for. On the CPU use "
            "make_vec_env(card, n) with the default vectorization, which runs one ManiSkill env per sub-env"
        )
    return sim_backend


def _to_numpy(x: Any) -> Any:
    """A torch tensor (any device) or nested dict of them as numpy; other values unchanged."""
    if isinstance(x, Mapping):
        return {k: _to_numpy(v) for k, v in x.items()}
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return x


def _clone(x: Any) -> Any:
    """A copy of a tensor or nested dict of tensors (ManiSkill reuses some buffers)."""
    if isinstance(x, Mapping):
        return {k: _clone(v) for k, v in x.items()}
    if hasattr(x, "clone"):
        return x.clone()
    return x


def vector_info(info: Mapping[str, Any], n: int) -> dict[str, Any]:
    """ManiSkill's batched ``info`` as a Gymnasium vector ``info``: numpy arrays with ``_key`` masks.

    Per-env values (leading dimension ``n``) keep their rows; anything else (ManiSkill's
    ``reconfigure`` flag, say) is repeated for every sub-env, so nothing is dropped.
    """
    out: dict[str, Any] = {}
    mask = np.ones(n, dtype=bool)
    for key, value in info.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping):
            out[key] = vector_info(value, n)
        else:
            arr = np.asarray(_to_numpy(value))
            if arr.ndim == 0:
                arr = np.full(n, arr.item())
            elif arr.shape[0] != n:
                rep = np.empty(n, dtype=object)
                for i in range(n):
                    rep[i] = arr
                arr = rep
            out[key] = arr
        out[f"_{key}"] = mask.copy()
    return out


def _rows(obs: Any, n: int) -> Any:
    """``final_obs`` in the form the reward wrappers index by row: the array itself, or per-row dicts."""
    if isinstance(obs, Mapping):
        rows = np.empty(n, dtype=object)
        for i in range(n):
            rows[i] = {k: _rows_item(v, i) for k, v in obs.items()}
        return rows
    return obs


def _rows_item(value: Any, i: int) -> Any:
    if isinstance(value, Mapping):
        return {k: _rows_item(v, i) for k, v in value.items()}
    return value[i]


class ManiSkillBatchEnv(gym.vector.VectorEnv):
    """``num_envs`` ManiSkill 3 envs simulated in one batch, as a numpy Gymnasium ``VectorEnv``.

    Args:
        card_or_env: a ``maniskill`` task card (object, name or path), or an already
            built ManiSkill env (``gymnasium.make(env_id, num_envs=n, ...)``; its
            ``unwrapped`` must have ``num_envs``, ``device``,
            ``single_observation_space`` and ``single_action_space``).
        num_envs: number of sub-envs (ignored when an env is given).
        sim_backend: ``"auto"`` (CUDA when torch sees a GPU), ``"physx_cuda"``/``"gpu"``
            or ``"physx_cpu"``/``"cpu"`` (one env only); see :func:`resolve_sim_backend`.
        seed: seed used by the first ``reset()`` when it is given none.
        max_episode_steps: time limit; default: the card's.
        render_mode: ``"rgb_array"`` to render frames (one ``uint8[n, H, W, 3]`` batch
            from ManiSkill's human-render camera at the card's size), or ``None``.
        env_kwargs: extra keyword arguments for ``gymnasium.make`` (over the card's).
        task: when an env is given, the task card whose success signal fills
            ``info["is_success"]`` (a card given as ``card_or_env`` always does).

    Raises:
        ConfigError: not a ``maniskill`` card, or a batch the chosen backend cannot run.
        MissingDependencyError: ``mani_skill`` is not installed.
        RoboRewardError: SAPIEN cannot create its render system (no suitable Vulkan driver).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self,
        card_or_env: "str | TaskCard | gym.Env",
        num_envs: int = 1,
        *,
        sim_backend: str = "auto",
        seed: int | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        task: "str | TaskCard | None" = None,
    ):
        if isinstance(card_or_env, gym.Env):
            env = card_or_env
            self.card = load_card(task) if task is not None else None
        else:
            card = load_card(card_or_env)
            if card.family != "maniskill":
                raise ConfigError(
                    f"ManiSkillBatchEnv runs 'maniskill' task cards; {card.name!r} is a {card.family!r} card"
                )
            if render_mode not in (None, "rgb_array"):
                raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
            backend = resolve_sim_backend(sim_backend, num_envs)
            env = _build(card, int(num_envs), backend, max_episode_steps, render_mode, dict(env_kwargs or {}))
            self.card = card
        base = env.unwrapped
        #: the ManiSkill env (batched torch tensors on :attr:`device`), for device-side use
        self.maniskill_env = env
        self.num_envs = int(base.num_envs)
        self.render_mode = getattr(env, "render_mode", None) or getattr(base, "render_mode", None)
        self.single_observation_space = base.single_observation_space
        self.single_action_space = base.single_action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._seed = seed
        self._has_reset = False
        self._signal = self.card.success_signal() if self.card is not None else None
        import torch

        self._torch = torch

    @property
    def device(self) -> "torch.device":
        """The torch device ManiSkill simulates on (``cuda:0`` or ``cpu``)."""
        return self.maniskill_env.unwrapped.device

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env (or those in ``options["env_idx"]``); numpy observation and vector ``info``."""
        if seed is None and not self._has_reset:
            seed = self._seed
        if isinstance(seed, (list, tuple)):
            seed = [int(s) for s in seed]
        obs, info = self.maniskill_env.reset(seed=seed, options=options)
        self._has_reset = True
        return _to_numpy(obs), vector_info(info, self.num_envs)

    def _add_success(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        """Add ``info["is_success"]`` from the card's success signal (as the CPU sub-envs do)."""
        if self._signal is not None:
            info[SUCCESS_INFO_KEY] = np.asarray(self._signal.evaluate_vector(obs, info, self.num_envs), dtype=bool)
            info[f"_{SUCCESS_INFO_KEY}"] = np.ones(self.num_envs, dtype=bool)
        return info

    def step(self, actions: Any):
        """Step all sub-envs; finished ones are reset in the same call (``SAME_STEP``)."""
        if not self._has_reset:
            raise gym.error.ResetNeeded("call reset() before the first step()")
        torch = self._torch
        n = self.num_envs
        acts = np.asarray(actions)
        if acts.dtype.kind == "f":
            acts = acts.astype(np.float32, copy=False)  # ManiSkill's controllers run in float32
        acts = torch.as_tensor(acts, device=self.device)
        if acts.shape[0] != n:
            raise ConfigError(f"expected actions for {n} sub-envs, got an array of shape {tuple(acts.shape)}")
        obs, reward, terminated, truncated, info = self.maniskill_env.step(acts)
        terminated = torch.as_tensor(terminated, device=self.device).reshape(n).bool()
        truncated = torch.as_tensor(truncated, device=self.device).reshape(n).bool()
        done = terminated | truncated
        final = None
        if bool(done.any()):
            final_obs = _clone(obs)
            final_info = self._add_success(_to_numpy(final_obs), vector_info(_clone(info), n))
            if self.render_mode == "rgb_array":
                final_info[FINAL_FRAME_KEY] = self._render_batch()
                final_info[f"_{FINAL_FRAME_KEY}"] = np.ones(n, dtype=bool)
            idx = torch.arange(n, device=self.device)[done]
            obs, info = self.maniskill_env.reset(options={"env_idx": idx})
            final = (final_obs, final_info)
        obs = _to_numpy(obs)
        out_info = self._add_success(obs, vector_info(info, n))
        if final is not None:
            mask = _to_numpy(done)
            out_info["final_obs"] = _rows(_to_numpy(final[0]), n)
            out_info["_final_obs"] = mask
            out_info["final_info"] = final[1]
            out_info["_final_info"] = mask.copy()
        reward_np = np.asarray(_to_numpy(reward), dtype=np.float32).reshape(n)
        return obs, reward_np, _to_numpy(terminated), _to_numpy(truncated), out_info

    def _render_batch(self) -> np.ndarray:
        frames = np.asarray(_to_numpy(self.maniskill_env.render()))
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[0] != self.num_envs or frames.ndim != 4:
            raise RoboRewardError(
                f"ManiSkill rendered an array of shape {frames.shape}; expected ({self.num_envs}, H, W, 3)"
            )
        return frames[..., :3].astype(np.uint8, copy=False)

    def render(self) -> np.ndarray | None:
        """One frame per sub-env, ``uint8[n, H, W, 3]`` (``None`` unless ``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return None
        return self._render_batch()

    def close_extras(self, **kwargs: Any) -> None:
        """Close the ManiSkill env."""
        self.maniskill_env.close()


def _build(
    card: TaskCard,
    num_envs: int,
    sim_backend: str,
    max_episode_steps: int | None,
    render_mode: str | None,
    kwargs: dict[str, Any],
) -> gym.Env:
    """``gymnasium.make`` the card's ManiSkill env as one batch of ``num_envs``."""
    from .make import _gym_make, _import_family, maniskill_render_problem

    _import_family(card)
    merged = {**dict(card.env_kwargs or {}), **kwargs}
    merged.setdefault("obs_mode", "state")
    if render_mode is not None:
        merged.setdefault("human_render_camera_configs", {"width": card.render.width, "height": card.render.height})
    steps = int(max_episode_steps if max_episode_steps is not None else card.max_episode_steps)
    try:
        return _gym_make(
            card, num_envs=num_envs, sim_backend=sim_backend, max_episode_steps=steps,
            render_mode=render_mode, disable_env_checker=True, **merged,
        )
    except RuntimeError as exc:
        problem = maniskill_render_problem()
        if problem is not None:
            raise RoboRewardError(f"task card {card.name!r}: {problem}") from exc
        raise

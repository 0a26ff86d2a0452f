"""Offline agents in ``robo-reward train``: ``iql`` and ``bc`` learn from a dataset instead of an env.

``robo-reward train --agent iql --dataset data/reach.npz [--reward SPEC] --steps 100000``
loads the dataset (a robo_reward ``.npz`` file, or a local Minari dataset written
``minari:<dataset id>``), optionally relabels its rewards with a reward plugin, trains
for ``steps`` *gradient steps* and writes the same run folder as the online agents:

* ``config.yaml`` with ``resolved.dataset``: path, fingerprint, size, the reward used
  and the dataset's own return and success statistics;
* ``metrics.jsonl``: every ``log_freq`` gradient steps the mean losses since the
  previous line (IQL: ``v_loss``, ``q_loss``, ``pi_loss``, ``adv_weight``; BC:
  ``bc_loss``, ``mse``) beside the usual fields (``steps_per_s`` counts gradient
  steps over the wall time, evaluations included; ``grad_steps_per_s`` leaves them out); ``env_return`` / ``success_rate`` /
  ``ep_length`` / ``window_episodes`` come from the latest periodic evaluation
  (deterministic episodes in the task card's env, ground-truth reward) and
  ``eval_timesteps`` says at which step it ran; ``learned_return`` is ``None`` (there
  are no training episodes);
* ``evals.jsonl``, TensorBoard scalars (``train/…``, ``eval/…``), resumable
  checkpoints ``checkpoints/step_<N>.pt`` (networks, optimiser, sampling generator)
  with their JSON marker, ``final_model.pt``, ``eval.json``, ``videos/eval.mp4`` and
  ``summary.json``, whose ``train`` block describes the dataset.

Rewards: without ``--reward`` the dataset's ``rewards`` column is used as stored (the
env reward, unless the file was relabelled before it was saved). With ``--reward
SPEC`` the plugin relabels every transition (:func:`~robo_reward.offline.dataset.relabel`)
and ``--mode`` combines it with the stored env reward as online (``replace``, ``add``,
``blend``, ``weighted``). The relabelled rewards are kept in the run folder
(``dataset_rewards.npz``) so a resumed run trains on exactly the same values.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError, RoboRewardError
from .config import OFFLINE_AGENTS as _CONFIG_OFFLINE_AGENTS
from .runlog import RunLog

#: ``robo-reward train --agent`` names of the offline agents.
OFFLINE_AGENTS: tuple[str, ...] = _CONFIG_OFFLINE_AGENTS

#: The preset file of each offline agent, under ``agents/``.
PRESET_FILES = {"iql": "iql.yaml", "bc": "bc.yaml"}

#: Model files of offline agents end with this.
OFFLINE_SUFFIX = ".pt"

#: Where relabelled rewards are kept in a run folder.
REWARDS_FILE = "dataset_rewards.npz"

MINARI_PREFIX = "minari:"


def is_offline(agent: str) -> bool:
    """True for the offline agents (:data:`OFFLINE_AGENTS`)."""
    return agent in OFFLINE_AGENTS


def agent_class(agent: str) -> type:
    """The class of an offline agent: :class:`~robo_reward.offline.iql.IQL` or :class:`~robo_reward.offline.bc.BC`."""
    if agent == "iql":
        from ..offline.iql import IQL

        return IQL
    if agent == "bc":
        from ..offline.bc import BC

        return BC
    raise ConfigError(f"{agent!r} is not an offline agent; they are {', '.join(OFFLINE_AGENTS)}")


def offline_preset(agent: str, family: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Hyperparameters of an offline agent: ``agents/<agent>.yaml``'s ``default`` ← ``family`` ← ``overrides``.

    Validated against the agent's config dataclass (``IQLConfig`` / ``BCConfig``); the
    result is plain YAML-friendly values (layer sizes as a list). ``seed`` is set by the
    run, not here.

    Raises:
        ConfigError: a bad key (the valid ones are listed) or value.
    """
    from dataclasses import asdict

    from ..agents.presets import layered_preset
    from ..offline.iql import config_from_mapping

    cls = agent_class(agent)
    params = layered_preset(PRESET_FILES[agent], family, overrides, what=agent.upper())
    if "seed" in params:
        raise ConfigError(f"set the seed of an {agent} run with the run's seed (--seed), not in its hyperparameters")
    cfg = config_from_mapping(cls.config_class, params, agent.upper())
    out = asdict(cfg)
    out.pop("seed", None)
    out["hidden"] = list(out["hidden"])
    return out


def make_offline_agent(agent: str, obs_dim: int, act_dim: int, hyperparameters: dict[str, Any], seed: int,
                       device: str) -> Any:
    """Build an offline agent from resolved hyperparameters (see :func:`offline_preset`)."""
    from ..offline.iql import config_from_mapping

    cls = agent_class(agent)
    cfg = config_from_mapping(cls.config_class, {**hyperparameters, "seed": int(seed)}, agent.upper())
    return cls(obs_dim, act_dim, cfg, device=device)


def load_offline_agent(agent: str, path: str | Path, device: str = "auto", env: Any = None) -> Any:
    """Load an offline agent's checkpoint (``env`` is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no saved model at {path}")
    return agent_class(agent).load(path, device=device)


# ----------------------------------------------------------------------------- datasets


def _minari_id(spec: str) -> str | None:
    if spec.startswith(MINARI_PREFIX):
        return spec[len(MINARI_PREFIX):].strip() or None
    return None


def resolve_dataset_path(spec: str, fallback: str | None = None) -> Path:
    """The ``.npz`` file a dataset spec names (``fallback``, e.g. the absolute path recorded at creation, if it is gone).

    Raises:
        ConfigError: neither exists.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if fallback and Path(fallback).is_file():
        return Path(fallback)
    hint = (" (a Minari dataset is written minari:<dataset id>)" if "/" in spec and not spec.endswith(".npz")
            else "")
    raise ConfigError(f"dataset {spec} does not exist{hint}; collect one with "
                      "'robo_reward.offline.collect_dataset(...).save(path)'")


def load_training_dataset(spec: str, fallback: str | None = None) -> Any:
    """Load the dataset of an offline run: a robo_reward ``.npz`` file, or ``minari:<dataset id>``.

    Raises:
        ConfigError: the file is missing or not a dataset, or Minari is not installed.
    """
    from ..offline.dataset import from_minari, load_dataset

    mid = _minari_id(spec)
    if mid is not None:
        return from_minari(mid)
    return load_dataset(resolve_dataset_path(spec, fallback))


def dataset_task(spec: str) -> str | None:
    """The task card recorded in a dataset's metadata, read without loading its arrays (``None`` if unknown)."""
    try:
        if _minari_id(spec) is not None:
            import minari

            from ..offline.dataset import minari_description

            desc = minari_description(minari.load_dataset(_minari_id(spec))) or "{}"
            return json.loads(desc).get("task")
        path = Path(spec).expanduser()
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["metadata"])).get("task")
    except Exception:  # a peek only: the real load reports problems properly
        return None


def dataset_fingerprint(dataset: Any) -> str:
    """A BLAKE2 digest of the dataset's transitions (observations, actions, env rewards, episode boundaries)."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("observations", "actions", "next_observations", "env_rewards", "rewards", "terminations",
                 "truncations", "episode_ids"):
        arr = np.ascontiguousarray(getattr(dataset, name))
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def training_rewards(dataset: Any, plugin: Any, config: Any, card: Any, cache: Path | None = None,
                     progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """The rewards an offline run trains on, and a description of them.

    ``config.reward`` ``None``: the dataset's stored ``rewards``. Otherwise the plugin's
    reward for every transition (:func:`~robo_reward.offline.dataset.relabel`), mixed
    with the stored env reward by ``config.mode``. When ``cache`` exists and was written
    for the same dataset and reward, its rewards are used instead of relabelling again;
    otherwise the new rewards are written there.
    """
    from ..offline.dataset import relabel
    from ..wrappers.mixing import resolve_mode

    fingerprint = dataset_fingerprint(dataset)
    if config.reward is None:
        stored = dataset.metadata.get("reward")
        return np.asarray(dataset.rewards, np.float32), {
            "source": "dataset", "dataset_reward": stored if stored is not None else "env", "fingerprint": fingerprint,
        }
    key = json.dumps({"reward": config.reward, "mode": config.mode, "alpha": config.alpha, "weights": config.weights,
                      "dataset": fingerprint}, sort_keys=True, default=str)
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key and z["rewards"].shape == (len(dataset),):
                return np.asarray(z["rewards"], np.float32), {"source": "relabelled", "cached": True,
                                                              "fingerprint": fingerprint}
    mix = resolve_mode(config.mode, config.alpha, config.weights)
    relabelled = relabel(dataset, plugin, task=card, progress=progress)
    rewards = mix.combine(np.asarray(relabelled.rewards, np.float32), np.asarray(dataset.env_rewards, np.float32))
    if not np.isfinite(rewards).all():
        bad = np.flatnonzero(~np.isfinite(rewards))[:5].tolist()
        raise RoboRewardError(f"the reward {plugin.name!r} is not finite on dataset rows {bad}; fix the reward")
    if cache is not None:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, rewards=rewards, key=np.array(key))
        tmp.replace(cache)
    return rewards, {"source": "relabelled", "cached": False, "fingerprint": fingerprint}


def dataset_stats(dataset: Any, rewards: np.ndarray) -> dict[str, Any]:
    """Per-episode means of the dataset: training-reward return, env (ground-truth) return, success rate, length."""
    slices = dataset.episode_slices()
    learned = [float(rewards[s].sum()) for s in slices]
    env = [float(dataset.env_rewards[s].sum()) for s in slices]
    success = None
    if "is_success" in dataset.infos:
        success = float(np.mean(dataset.episode_success("is_success")))
    elif "success" in dataset.infos:
        success = float(np.mean(dataset.episode_success("success")))
    return {
        "learned_return": float(np.mean(learned)) if learned else None,
        "env_return": float(np.mean(env)) if env else None,
        "success_rate": success,
        "ep_length": float(np.mean([s.stop - s.start for s in slices])) if slices else None,
        "window_episodes": len(slices),
        "transitions": len(dataset),
    }


def check_dataset_fits(dataset: Any, card: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check that the dataset's observation and action sizes match the card's env; return its action bounds.

    Raises:
        ConfigError: the sizes differ (the dataset was collected on another task).
    """
    from ..envs import make_env

    env = make_env(card)
    try:
        obs_shape = tuple(env.observation_space.shape or ())
        low = np.asarray(env.action_space.low, np.float64).reshape(-1)
        high = np.asarray(env.action_space.high, np.float64).reshape(-1)
    finally:
        env.close()
    d_obs, d_act = tuple(dataset.observations.shape[1:]), tuple(dataset.actions.shape[1:])
    if d_obs != obs_shape or d_act != (low.size,):
        recorded = dataset.metadata.get("task")
        raise ConfigError(
            f"the dataset has observations {d_obs} and actions {d_act}, but {card.name}'s env has {obs_shape} and "
            f"({low.size},)" + (f"; the dataset was collected on {recorded!r}" if recorded else "")
        )
    return low, high


# ----------------------------------------------------------------------------- the run log


def _fmt(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


class OfflineRunLog(RunLog):
    """Records of an offline run: ``metrics.jsonl``, TensorBoard, checkpoints, evaluations, progress bar.

    :meth:`train` drives the agent in chunks of gradient steps that end exactly on the
    log, checkpoint and evaluation boundaries. The clock counts gradient steps and
    evaluations; a due evaluation runs before the line of the same step, so the line
    reports it.

    Args:
        run_dir: the run folder.
        agent: an :class:`~robo_reward.offline.iql.OfflineAgent`.
        agent_name: ``iql`` or ``bc``.
        total_steps: the run's gradient-step target.
        log_freq: steps between ``metrics.jsonl`` lines.
        checkpoint_freq: steps between checkpoints (0: none, except :meth:`save_checkpoint` calls).
        segment: the training segment (0, then +1 per resume).
        start_timesteps: the step counter when this segment started.
        wall_time_offset: training seconds spent in earlier segments.
        tensorboard_dir: where to write TensorBoard events (``None``: none).
        evaluate_fn: ``evaluate_fn(agent)`` → an evaluation dict, run every ``eval_freq`` steps.
        eval_freq: steps between evaluations (0: never).
        progress: show a progress bar.
        hooks: user functions called with each chunk's metrics dict (``timesteps`` and the
            losses); one returning ``False`` stops training.
        dataset_summary: the dataset statistics reported as the summary's ``train`` block.
        last_eval: the latest evaluation of earlier segments (resumed runs), if any.

    The keyword arguments other than ``dataset_summary`` and ``last_eval`` are
    :class:`~robo_reward.train.runlog.RunLog`'s.
    """

    checkpoint_suffix = OFFLINE_SUFFIX
    eval_before_line = True
    eval_length = True

    def __init__(self, run_dir: Path, agent: Any, agent_name: str, total_steps: int, *,
                 dataset_summary: dict[str, Any] | None = None, last_eval: dict[str, Any] | None = None,
                 **kwargs: Any):
        super().__init__(run_dir, agent, agent_name, total_steps, bar_desc=f"train {agent_name}", **kwargs)
        self.dataset_summary = dict(dataset_summary or {})
        self.last_eval = last_eval
        self.last_losses: dict[str, float] = {}
        self._loss_sums: dict[str, float] = {}
        self._loss_steps = 0

    # ------------------------------------------------------------------ the loop
    def _next_chunk(self, steps: int, chunk: int) -> int:
        n = min(self.total_steps - steps, chunk, self.log_freq - (steps - self._last_log))
        if self.checkpoint_freq > 0:
            n = min(n, self.checkpoint_freq - (steps - self._last_ckpt))
        if self.evaluate_fn is not None and self.eval_freq > 0:
            n = min(n, self.eval_freq - (steps - self._last_eval))
        return max(1, n)

    def train(self, chunk: int = 100) -> None:
        """Train the agent to ``total_steps`` gradient steps, writing the records on the way."""
        while self.agent.steps < self.total_steps:
            n = self._next_chunk(int(self.agent.steps), chunk)
            losses = self.agent.train_steps(n)
            if not self(losses, n):
                break

    def __call__(self, losses: dict[str, float], n: int) -> bool:
        """Record a chunk of ``n`` gradient steps with mean ``losses``; ``False`` when a hook asks to stop."""
        steps = int(self.agent.steps)
        self.timesteps = steps
        self.last_losses = dict(losses)
        for k, v in losses.items():
            self._loss_sums[k] = self._loss_sums.get(k, 0.0) + float(v) * n
        self._loss_steps += n
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"train/{k}", float(v), steps)
        self._write_due_records(steps)
        postfix = None
        if self.bar is not None:
            postfix = {k: _fmt(v) for k, v in losses.items() if k in ("q_loss", "pi_loss", "bc_loss")}
            if self.last_eval is not None:
                postfix["gt_return"] = f"{self.last_eval['return_mean']:.1f}"
                postfix["succ"] = f"{self.last_eval['success_rate']:.2f}"
        self._advance_bar(steps, postfix)
        return self._call_hooks({"timesteps": steps, **losses})

    # ------------------------------------------------------------------ records
    def stats(self) -> dict[str, Any]:
        """The summary's ``train`` block: the dataset's statistics (there are no training episodes)."""
        return dict(self.dataset_summary)

    @property
    def summary_extra(self) -> dict[str, Any] | None:
        """Agent facts for ``summary.json``: the last losses and the last periodic evaluation."""
        out: dict[str, Any] = {"last_losses": self.last_losses} if self.last_losses else {}
        if self.last_eval is not None:
            out["last_eval"] = self.last_eval
        return out or None

    def write_line(self) -> dict[str, Any]:
        """Write one ``metrics.jsonl`` line now and return it."""
        elapsed = self.elapsed
        done_here = self.timesteps - self.start_timesteps
        ev = self.last_eval or {}
        record: dict[str, Any] = {
            **self._line_head(elapsed),
            "grad_steps_per_s": (round(done_here / (elapsed - self._eval_time), 1)
                                 if elapsed - self._eval_time > 0 else None),
            "episodes": 0,
            "learned_return": None,
            "env_return": ev.get("return_mean"),
            "success_rate": ev.get("success_rate"),
            "ep_length": ev.get("length_mean"),
            "window_episodes": int(ev.get("episodes") or 0),
            "eval_timesteps": ev.get("timesteps"),
        }
        if self._loss_steps:
            record.update({k: v / self._loss_steps for k, v in self._loss_sums.items()})
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._loss_sums, self._loss_steps = {}, 0
        return self._append_line(record)

    def _checkpoint_fields(self) -> dict[str, Any]:
        """The marker also keeps the latest evaluation, so a resumed run's lines can report it."""
        return {"last_eval": self.last_eval}


def last_checkpoint_eval(json_path: Path | None) -> dict[str, Any] | None:
    """The ``last_eval`` a checkpoint's JSON marker recorded (``None`` if none)."""
    if json_path is None or not Path(json_path).is_file():
        return None
    try:
        return json.loads(Path(json_path).read_text()).get("last_eval")
    except (OSError, json.JSONDecodeError):
        return None


__all__ = [
    "MINARI_PREFIX",
    "OFFLINE_AGENTS",
    "OFFLINE_SUFFIX",
    "OfflineRunLog",
    "REWARDS_FILE",
    "agent_class",
    "check_dataset_fits",
    "dataset_fingerprint",
    "dataset_stats",
    "dataset_task",
    "is_offline",
    "last_checkpoint_eval",
    "load_offline_agent",
    "load_training_dataset",
    "make_offline_agent",
    "offline_preset",
    "resolve_dataset_path",
    "training_rewards",
]

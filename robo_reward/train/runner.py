"""Train an agent on a task card with a reward plugin, and keep everything in a run folder.

The agent is a Stable-Baselines3 one (``ppo``, ``sac``, ``td3``), a built-in one
(``ppo-native``, ``ppo-multicritic``, ``barfi``; see :mod:`robo_reward.train.native`) or
an offline one that learns from a dataset (``iql``, ``bc``; see
:mod:`robo_reward.train.offline`). All write the same run folder; built-in and offline
agents' model files end in ``.pt`` instead of ``.zip`` and they have no replay buffer.
A run folder holds::

    config.yaml          the resolved run config (seed, library version, hyperparameters, ...)
    segments.json        one entry per start of the process (the first run, then each resume)
    tb/                  TensorBoard event files (SB3's own scalars plus rollout/ and eval/)
    metrics.jsonl        one line per log interval: learned-reward return, env-reward
                         (ground-truth) return and success rate, side by side
    evals.jsonl          periodic evaluations (when eval_freq > 0)
    checkpoints/         step_<N>.zip (.pt), step_<N>.json, step_<N>_replay_buffer.pkl (off-policy)
    final_model.zip      the trained model (.pt for built-in agents; + final_model.json with its step count)
    eval.json            the final evaluation (success rate, GT return, 95 % intervals)
    videos/eval.mp4      one deterministic evaluation episode
    summary.json         steps, wall time, steps/s, final evaluation, video status

A run that was killed continues with :func:`resume` (``robo-reward train --resume RUN_DIR``)
from its latest checkpoint, with the same step target; ``metrics.jsonl`` is appended to.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..core.errors import ConfigError
from .config import RunConfig, load_run_config, write_run_config
from .evaluate import EVAL_SEED_OFFSET, evaluate, record_video, write_eval_json
from .native import NATIVE_SUFFIX, is_native, model_suffix
from .offline import REWARDS_FILE, is_offline
from .records import package_versions, write_json_atomic

METRICS_WINDOW = 20
"""Episodes averaged in each ``metrics.jsonl`` line and in the summary's training stats."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint in a run folder (its JSON marker exists, so its files do too)."""

    json_path: Path
    model: Path
    replay_buffer: Path | None
    timesteps: int
    train_time_s: float
    segment: int
    episodes: int = 0


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """All complete checkpoints of a run folder, oldest first."""
    directory = Path(run_dir) / "checkpoints"
    out = []
    for jp in sorted(directory.glob("step_*.json")):
        try:
            meta = json.loads(jp.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a torn write: not a checkpoint
        model = directory / meta.get("model", "")
        if not model.is_file():
            continue
        buf = meta.get("replay_buffer")
        out.append(
            Checkpoint(
                json_path=jp,
                model=model,
                replay_buffer=directory / buf if buf else None,
                timesteps=int(meta["timesteps"]),
                train_time_s=float(meta.get("train_time_s") or 0.0),
                segment=int(meta.get("segment") or 0),
                episodes=int(meta.get("episodes") or 0),
            )
        )
    return sorted(out, key=lambda c: c.timesteps)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The checkpoint with the most steps, or ``None``."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def _final_checkpoint(run_dir: Path) -> Checkpoint | None:
    meta_path = run_dir / "final_model.json"
    models = [run_dir / f"final_model{suffix}" for suffix in (".zip", NATIVE_SUFFIX)]
    model = next((m for m in models if m.is_file()), None)
    if model is None or not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    return Checkpoint(meta_path, model, None, int(meta["timesteps"]), float(meta.get("train_time_s") or 0.0),
                      int(meta.get("segment") or 0), int(meta.get("episodes") or 0))


def default_run_dir(config: RunConfig) -> Path:
    """``runs/<task>-<agent>-s<seed>-<YYYYmmdd-HHMMSS>`` under the current directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.agent}-s{config.seed}-{stamp}"


def _versions() -> dict[str, str]:
    from .. import __version__

    return {**package_versions(("robo-reward", "stable-baselines3", "torch", "gymnasium", "numpy", "mujoco")),
            "robo_reward": __version__}


def build_vec_env(card: Any, plugin: Any, config: RunConfig, seed: int) -> Any:
    """The training env: a ``DummyVecEnv`` of ``config.n_envs`` card envs with the reward plugin on top.

    Sub-env ``i`` is made with ``seed + i``. When the plugin scores frames, sub-envs
    render (``rgb_array``) and keep their terminal frame (``FinalFrameWrapper``). The
    stack is ``VecMonitor(SB3RewardWrapper(DummyVecEnv([...])))``.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    from ..envs import make_env
    from ..wrappers import FinalFrameWrapper, SB3RewardWrapper

    frames = "frames" in plugin.requires
    if frames:
        os.environ.setdefault("MUJOCO_GL", "egl")

    def factory(i: int) -> Callable[[], Any]:
        def make() -> Any:
            env = make_env(card, seed=seed + i, render_mode="rgb_array" if frames else None)
            return FinalFrameWrapper(env) if frames else env

        return make

    venv = DummyVecEnv([factory(i) for i in range(config.n_envs)])
    venv = SB3RewardWrapper(venv, plugin, config.mode, alpha=config.alpha, weights=config.weights, task=card)
    venv = VecMonitor(venv)
    venv.seed(seed)
    return venv


class Runner:
    """One training run, from config to run folder. Use :func:`train` / :func:`resume` for the common case.

    ``setup()`` builds the env and the model (or loads the latest checkpoint when
    resuming); ``run()`` trains, evaluates, records the video and writes the summary.

    Args:
        config: the run config (for a new run).
        resume: a run folder to continue instead (its ``config.yaml`` is used).
        device: override the device of a resumed run.
        progress: show a progress bar.
        callbacks: extra SB3 callbacks, run after the built-in ones.
        log: where notices go (a function taking a string; default: stderr).
    """

    def __init__(
        self,
        config: RunConfig | None = None,
        *,
        resume: str | Path | None = None,
        device: str | None = None,
        progress: bool = True,
        callbacks: Sequence[Any] = (),
        log: Callable[[str], None] | None = None,
    ):
        if (config is None) == (resume is None):
            raise ConfigError("give either a run config or a run folder to resume, not both")
        self.resuming = resume is not None
        self.progress = progress
        self.extra_callbacks = list(callbacks)
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        if resume is not None:
            self.run_dir = Path(resume)
            if not (self.run_dir / "config.yaml").is_file():
                raise ConfigError(f"cannot resume {self.run_dir}: it has no config.yaml (is it a run folder?)")
            self.config = load_run_config(self.run_dir / "config.yaml", device=device)
        else:
            assert config is not None
            self.config = config.model_copy(deep=True)
            self.run_dir = Path(config.out) if config.out else default_run_dir(config)
            if (self.run_dir / "config.yaml").exists():
                raise ConfigError(
                    f"run folder {self.run_dir} already holds a run; continue it with "
                    f"'robo-reward train --resume {self.run_dir}' or choose another --out"
                )
        self.card: Any = None
        self.plugin: Any = None
        self.venv: Any = None
        self.model: Any = None
        self.hyperparameters: dict[str, Any] = {}
        self.start_checkpoint: Checkpoint | None = None
        self.dataset: Any = None
        self.dataset_info: dict[str, Any] = {}
        self._offline_rewards: Any = None
        self.segment = 0
        self.already_finished = False
        self._t_start = time.perf_counter()

    # ------------------------------------------------------------------ setup
    def setup(self) -> "Runner":
        """Build the card, reward plugin, training env and model; write ``config.yaml`` for a new run."""
        from ..core.registry import make_reward
        from ..envs import load_card

        cfg = self.config
        native = is_native(cfg.agent)
        offline = is_offline(cfg.agent)
        import torch

        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
        on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
        threads = cfg.torch_threads or (1 if on_cpu else None)
        if threads:
            torch.set_num_threads(threads)
        self.card = load_card(cfg.task)
        self.plugin = make_reward(cfg.reward_spec, task=self.card)
        if native:
            from .native import native_preset

            self.hyperparameters = native_preset(cfg.agent, self.card.family, cfg.agent_overrides, cfg.torch_threads)
        elif offline:
            from .offline import offline_preset

            self.hyperparameters = offline_preset(cfg.agent, self.card.family, cfg.agent_overrides)
        else:
            from ..agents.sb3 import load_preset

            self.hyperparameters = load_preset(cfg.agent, self.card.family, cfg.agent_overrides)
        if not native and not offline and cfg.agent in ("sac", "td3") and "buffer_size" in self.hyperparameters:
            # a buffer larger than the run never fills; capping it saves memory and checkpoint size
            self.hyperparameters["buffer_size"] = int(min(self.hyperparameters["buffer_size"], max(cfg.steps, 1)))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        segments = self._read_segments()
        self.segment = len(segments)

        start = None
        if self.resuming:
            start = _final_checkpoint(self.run_dir)
            if start is None or start.timesteps < cfg.steps:
                start = latest_checkpoint(self.run_dir) or start
            if start is None:
                self.log(f"{self.run_dir} has no checkpoint yet: training again from step 0 in the same folder")
            elif (self.run_dir / "summary.json").is_file() and start.timesteps >= cfg.steps:
                self.already_finished = True
        self.start_checkpoint = start
        start_steps = start.timesteps if start else 0
        seed = cfg.seed + start_steps  # a resumed segment must not replay the first episodes
        tb = self._tensorboard_dir()
        if offline and not self.already_finished:
            self._load_offline_data()

        if not self.resuming:
            cfg.out = str(self.run_dir)
            cfg.library_version = _versions()["robo_reward"]
            cfg.resolved = {
                "env_id": self.card.env_id,
                "task_family": self.card.family,
                "max_episode_steps": self.card.max_episode_steps,
                "reward_requires": sorted(self.plugin.requires),
                "hyperparameters": self.hyperparameters,
                "eval_seed": cfg.seed + EVAL_SEED_OFFSET,
                "versions": _versions(),
                "command": " ".join(sys.argv),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            if offline:
                cfg.resolved["dataset"] = self.dataset_info
                cfg.resolved["step_unit"] = "gradient steps"
            write_run_config(cfg, self.run_dir / "config.yaml")

        if self.already_finished:
            return self
        if native:
            self._setup_native(start, seed)
        elif offline:
            self._setup_offline(start)
        else:
            self._setup_sb3(start, seed, tb)
        segments.append(
            {
                "segment": self.segment,
                "start_timesteps": start_steps,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "resumed_from": start.json_path.name if start else None,
                "device": str(self.model.device),
                "env_seed": seed,
            }
        )
        write_json_atomic(self.run_dir / "segments.json", segments)
        return self

    def _setup_native(self, start: Checkpoint | None, seed: int) -> None:
        from .native import build_gym_vec_env, load_native_agent, make_native_agent

        cfg = self.config
        self.venv = build_gym_vec_env(self.card, self.plugin, cfg, seed)
        if start is None:
            self.model = make_native_agent(cfg.agent, self.venv, family=self.card.family,
                                           hyperparameters=self.hyperparameters, seed=cfg.seed, device=cfg.device)
        else:
            self.log(f"resuming {self.run_dir} from step {start.timesteps} ({start.model.name})")
            # the env is reset at the next learn(), seeded with seed + the checkpoint's step count
            self.model = load_native_agent(cfg.agent, start.model, env=self.venv, device=cfg.device)

    def _load_offline_data(self) -> None:
        """Load (and relabel) the dataset of an offline run; fill :attr:`dataset_info`."""
        from .offline import check_dataset_fits, dataset_stats, load_training_dataset, training_rewards

        cfg = self.config
        assert cfg.dataset is not None
        recorded = (cfg.resolved or {}).get("dataset") or {} if self.resuming else {}
        ds = load_training_dataset(cfg.dataset, fallback=recorded.get("path"))
        if recorded.get("fingerprint"):
            from .offline import dataset_fingerprint

            if dataset_fingerprint(ds) != recorded["fingerprint"]:
                raise ConfigError(f"the dataset {cfg.dataset} changed since {self.run_dir} started; a resumed run "
                                  "must train on the same data (start a new run instead)")
        low, high = check_dataset_fits(ds, self.card)
        if cfg.reward is not None:
            self.log(f"relabelling {len(ds)} transitions with {self.plugin.name!r}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rewards, reward_info = training_rewards(ds, self.plugin, cfg, self.card, cache=self.run_dir / REWARDS_FILE,
                                                progress=self.progress)
        recorded_task = ds.metadata.get("task")
        if recorded_task and recorded_task != self.card.name:
            self.log(f"note: the dataset was collected on {recorded_task!r}; evaluating on {self.card.name!r}")
        path = None if cfg.dataset.startswith("minari:") else str(Path(cfg.dataset).expanduser().resolve())
        self.dataset = ds
        self.dataset_info = {
            "spec": cfg.dataset,
            "path": path or recorded.get("path"),
            "fingerprint": reward_info.pop("fingerprint"),
            "transitions": len(ds),
            "episodes": ds.n_episodes,
            "recorded_task": recorded_task,
            "policy": ds.metadata.get("policy"),
            "rewards": reward_info,
            "stats": dataset_stats(ds, rewards),
            "action_low": low.tolist(),
            "action_high": high.tolist(),
        }
        self._offline_rewards = rewards

    def _setup_offline(self, start: Checkpoint | None) -> None:
        from .offline import load_offline_agent, make_offline_agent

        cfg = self.config
        ds = self.dataset
        if start is None:
            self.model = make_offline_agent(cfg.agent, ds.observations.shape[1], ds.actions.shape[1],
                                            self.hyperparameters, seed=cfg.seed, device=cfg.device)
        else:
            self.log(f"resuming {self.run_dir} from step {start.timesteps} ({start.model.name})")
            self.model = load_offline_agent(cfg.agent, start.model, device=cfg.device)
        self.model.set_action_bounds(self.dataset_info["action_low"], self.dataset_info["action_high"])
        self.model.load_data(ds, rewards=self._offline_rewards)

    def _setup_sb3(self, start: Checkpoint | None, seed: int, tb: Path | None) -> None:
        from ..agents.sb3 import algorithm_class, make_model

        cfg = self.config
        self.venv = build_vec_env(self.card, self.plugin, cfg, seed)
        if start is None:
            self.model = make_model(
                cfg.agent,
                self.venv,
                seed=cfg.seed,
                device=cfg.device,
                tensorboard_log=tb,
                hyperparameters=self.hyperparameters,
            )
        else:
            self.log(f"resuming {self.run_dir} from step {start.timesteps} ({start.model.name})")
            cls = algorithm_class(cfg.agent)
            self.model = cls.load(
                str(start.model), env=self.venv, device=cfg.device,
                tensorboard_log=str(tb) if tb else None,
            )
            if start.replay_buffer is not None and start.replay_buffer.is_file():
                self.model.load_replay_buffer(str(start.replay_buffer))
            self.model.set_random_seed(seed)

    def _read_segments(self) -> list[dict[str, Any]]:
        path = self.run_dir / "segments.json"
        if not path.is_file():
            return []
        return list(json.loads(path.read_text()))

    def _tensorboard_dir(self) -> Path | None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            warnings.warn("tensorboard is not installed: the run gets no TensorBoard events", stacklevel=2)
            return None
        return self.run_dir / "tb"

    def _periodic_eval_fn(self) -> Callable[[Any], dict[str, Any]] | None:
        """``evaluate`` on the run's task, episodes and evaluation seed, or ``None`` without periodic evaluations."""
        cfg = self.config
        if not (cfg.eval_freq > 0 and cfg.eval_episodes > 0):
            return None
        eval_seed = cfg.seed + EVAL_SEED_OFFSET
        return lambda m: evaluate(m, self.card, cfg.eval_episodes, eval_seed)

    def _check_plain_callbacks(self, kind: str, report: str) -> None:
        """Raise :class:`ConfigError` unless every extra callback is a plain function (not an SB3 callback).

        ``kind`` names the agent kind (``"a built-in agent"``), ``report`` what the functions
        are called with (``"per-update"``).
        """
        for cb in self.extra_callbacks:
            if not callable(cb) or hasattr(cb, "init_callback"):
                raise ConfigError(
                    f"{kind} ({self.config.agent}) takes plain functions of the {report} metrics dict as "
                    f"callbacks, not {type(cb).__name__} (SB3 callbacks only work with ppo, sac and td3)"
                )

    def _write_final_meta(self, steps_done: int, total_train: float, episodes: int) -> None:
        """Write ``final_model.json`` beside the final model."""
        write_json_atomic(
            self.run_dir / "final_model.json",
            {"timesteps": steps_done, "train_time_s": round(total_train, 3), "segment": self.segment,
             "episodes": episodes},
        )

    # ------------------------------------------------------------------ training
    def _callbacks(self) -> tuple[Any, Any, list[Any]]:
        from stable_baselines3.common.callbacks import CallbackList

        from ..agents.sb3 import is_off_policy
        from .callbacks import CheckpointCallback, EpisodeMetricsCallback, PeriodicEvalCallback, ProgressBarCallback

        cfg = self.config
        start = self.start_checkpoint
        metrics = EpisodeMetricsCallback(
            self.run_dir / "metrics.jsonl",
            cfg.log_freq,
            window=METRICS_WINDOW,
            segment=self.segment,
            start_timesteps=start.timesteps if start else 0,
            wall_time_offset=start.train_time_s if start else 0.0,
            start_episodes=start.episodes if start else 0,
        )
        ckpt = CheckpointCallback(
            self.run_dir / "checkpoints",
            cfg.checkpoint_freq,
            save_replay_buffer=is_off_policy(cfg.agent),
            metrics=metrics,
            segment=self.segment,
        )
        cbs: list[Any] = [metrics, ckpt]
        eval_fn = self._periodic_eval_fn()
        if eval_fn is not None:
            cbs.append(PeriodicEvalCallback(eval_fn, cfg.eval_freq, self.run_dir / "evals.jsonl"))
        cbs.append(ProgressBarCallback(cfg.steps, metrics, disable=not self.progress))
        cbs.extend(self.extra_callbacks)
        return CallbackList(cbs), metrics, cbs

    def run(self) -> dict[str, Any]:
        """Train to the step target, save the final model, evaluate, record the video, write ``summary.json``.

        Returns the summary. On Ctrl-C a checkpoint is saved before the interrupt is
        re-raised, so ``--resume`` loses nothing.
        """
        if self.model is None and not self.already_finished:
            self.setup()
        if self.already_finished:
            self.log(f"{self.run_dir} already reached its {self.config.steps} steps; nothing to do")
            return json.loads((self.run_dir / "summary.json").read_text())
        if is_native(self.config.agent):
            return self._run_native()
        if is_offline(self.config.agent):
            return self._run_offline()
        from ..agents.sb3 import ALGORITHMS

        cfg = self.config
        start_steps = self.start_checkpoint.timesteps if self.start_checkpoint else 0
        remaining = cfg.steps - start_steps
        callback, metrics, cbs = self._callbacks()
        ckpt = cbs[1]
        t0 = time.perf_counter()
        try:
            if remaining > 0:
                self.model.learn(
                    total_timesteps=remaining,
                    callback=callback,
                    reset_num_timesteps=self.start_checkpoint is None,
                    tb_log_name=ALGORITHMS[cfg.agent],
                    progress_bar=False,
                )
        except KeyboardInterrupt:
            if getattr(ckpt, "model", None) is not None and self.model.num_timesteps > start_steps:
                path = ckpt.save()
                self.log(f"interrupted: saved {path.name}; continue with 'robo-reward train --resume {self.run_dir}'")
            raise
        finally:
            self.venv.close()
        train_time = time.perf_counter() - t0
        steps_done = int(self.model.num_timesteps)
        total_train = (self.start_checkpoint.train_time_s if self.start_checkpoint else 0.0) + train_time

        self.model.save(str(self.run_dir / "final_model.zip"))
        self._write_final_meta(steps_done, total_train, metrics.episodes)
        summary = self._finish(metrics, steps_done, steps_done - start_steps, train_time, total_train)
        return summary

    def _run_native(self) -> dict[str, Any]:
        """``run()`` for a built-in agent: ``learn`` with :class:`~robo_reward.train.native.NativeRunLog` as its hook."""
        from .native import NativeRunLog

        cfg = self.config
        start = self.start_checkpoint
        start_steps = start.timesteps if start else 0
        remaining = cfg.steps - start_steps
        self._check_plain_callbacks("a built-in agent", "per-update")
        eval_fn = self._periodic_eval_fn()
        runlog = NativeRunLog(
            self.run_dir, self.model, cfg.agent, cfg.steps,
            log_freq=cfg.log_freq, checkpoint_freq=cfg.checkpoint_freq, window=METRICS_WINDOW,
            segment=self.segment, start_timesteps=start_steps,
            wall_time_offset=start.train_time_s if start else 0.0,
            start_episodes=start.episodes if start else 0,
            tensorboard_dir=self._tensorboard_dir(), evaluate_fn=eval_fn, eval_freq=cfg.eval_freq,
            progress=self.progress, hooks=self.extra_callbacks,
        )

        def learn() -> None:
            if remaining > 0:
                runlog.start()
                self.model.learn(remaining, progress_bar=False, reset_num_timesteps=start is None,
                                 metrics_hook=runlog)

        return self._train_with_runlog(runlog, learn, start_steps, cleanup=self.venv.close)

    def _run_offline(self) -> dict[str, Any]:
        """``run()`` for an offline agent: gradient steps on the dataset, recorded by :class:`~robo_reward.train.offline.OfflineRunLog`."""
        from .offline import OfflineRunLog, last_checkpoint_eval

        cfg = self.config
        start = self.start_checkpoint
        start_steps = start.timesteps if start else 0
        self._check_plain_callbacks("an offline agent", "per-chunk")
        eval_fn = self._periodic_eval_fn()
        runlog = OfflineRunLog(
            self.run_dir, self.model, cfg.agent, cfg.steps,
            log_freq=cfg.log_freq, checkpoint_freq=cfg.checkpoint_freq, segment=self.segment,
            start_timesteps=start_steps, wall_time_offset=start.train_time_s if start else 0.0,
            tensorboard_dir=self._tensorboard_dir(), evaluate_fn=eval_fn, eval_freq=cfg.eval_freq,
            progress=self.progress, hooks=self.extra_callbacks,
            dataset_summary=self.dataset_info.get("stats"),
            last_eval=last_checkpoint_eval(start.json_path) if start else None,
        )

        def learn() -> None:
            runlog.start()
            runlog.train()

        return self._train_with_runlog(runlog, learn, start_steps)

    def _train_with_runlog(self, runlog: Any, learn: Callable[[], None], start_steps: int,
                           cleanup: Callable[[], None] | None = None) -> dict[str, Any]:
        """Run ``learn()`` recorded by ``runlog`` (a :class:`~robo_reward.train.runlog.RunLog`), then finish the run.

        On Ctrl-C a checkpoint is saved if steps were taken since the last one. ``cleanup``
        (closing the training env) runs however training ends. Then the final model,
        ``final_model.json`` and the summary are written; the summary is returned.
        """
        cfg = self.config
        start = self.start_checkpoint
        t0 = time.perf_counter()
        completed = False
        try:
            learn()
            completed = True
        except KeyboardInterrupt:
            if self.model.num_timesteps > max(start_steps, runlog.last_checkpoint_steps):
                path = runlog.save_checkpoint()
                self.log(f"interrupted: saved {path.name}; continue with 'robo-reward train --resume {self.run_dir}'")
            raise
        finally:
            if not completed:
                runlog.close()
            if cleanup is not None:
                cleanup()
        runlog.finish()
        train_time = time.perf_counter() - t0
        steps_done = int(self.model.num_timesteps)
        total_train = (start.train_time_s if start else 0.0) + train_time
        self.model.save(self.run_dir / f"final_model{model_suffix(cfg.agent)}")
        self._write_final_meta(steps_done, total_train, runlog.episodes)
        return self._finish(runlog, steps_done, steps_done - start_steps, train_time, total_train)

    # ------------------------------------------------------------------ finishing
    def _finish(
        self, metrics: Any, steps_done: int, steps_this_segment: int, train_time: float, total_train: float
    ) -> dict[str, Any]:
        cfg = self.config
        eval_seed = cfg.seed + EVAL_SEED_OFFSET
        final_eval = None
        if cfg.eval_episodes > 0:
            self.log(f"evaluating {cfg.eval_episodes} deterministic episodes on {self.card.env_id} (env reward)")
            final_eval = evaluate(self.model, self.card, cfg.eval_episodes, eval_seed, progress=self.progress)
            model_path = self.run_dir / f"final_model{model_suffix(cfg.agent)}"
            final_eval.update({"run_dir": str(self.run_dir), "model_path": str(model_path),
                               "model_timesteps": steps_done})
            write_eval_json(final_eval, self.run_dir / "eval.json")
        video: dict[str, Any] = {"video": None, "video_frames": None, "video_error": None}
        if cfg.video:
            try:
                rec = record_video(
                    self.model, self.card, self.run_dir / "videos" / "eval.mp4",
                    seed=eval_seed, max_steps=cfg.video_max_steps,
                )
                video.update(video="videos/eval.mp4", video_frames=rec["frames"])
            except Exception as exc:  # a failed render must not lose the run
                video["video_error"] = f"{type(exc).__name__}: {exc}"
                self.log(f"warning: could not record the evaluation video: {video['video_error']}")
        eval_keys = ("episodes", "seed", "success_rate", "success_count", "success_ci", "return_mean", "return_std",
                     "return_ci", "length_mean", "confidence", "final_success_rate", "final_success_ci")
        summary = {
            "task": cfg.task,
            "env_id": self.card.env_id,
            "agent": cfg.agent,
            "reward": cfg.reward_spec,
            "mode": cfg.mode,
            "seed": cfg.seed,
            "steps_target": cfg.steps,
            "timesteps": steps_done,
            "segments": self.segment + 1,
            "train_time_s": round(total_train, 3),
            "segment_train_time_s": round(train_time, 3),
            "steps_per_s": round(steps_this_segment / train_time, 1) if train_time > 0 else None,
            "wall_time_s": round(time.perf_counter() - self._t_start, 3),
            "device": str(self.model.device),
            "train": {k: v for k, v in metrics.stats().items()},
            "final_eval": {k: final_eval[k] for k in eval_keys} if final_eval else None,
            **video,
            **({"agent_stats": metrics.summary_extra} if getattr(metrics, "summary_extra", None) else {}),
            **({"offline": True, "step_unit": "gradient steps", "dataset": {
                k: v for k, v in self.dataset_info.items() if k not in ("stats", "action_low", "action_high")}}
               if is_offline(cfg.agent) else {}),
            "library_version": cfg.library_version,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        return summary


def train(
    config: RunConfig, *, progress: bool = True, callbacks: Sequence[Any] = (), log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Train a new run from ``config``; return its summary (also in ``<run_dir>/summary.json``)."""
    return Runner(config, progress=progress, callbacks=callbacks, log=log).setup().run()


def resume(
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Continue a killed run from its latest checkpoint to the same step target; return its summary."""
    return Runner(resume=run_dir, device=device, progress=progress, callbacks=callbacks, log=log).setup().run()


__all__ = [
    "Checkpoint",
    "METRICS_WINDOW",
    "Runner",
    "build_vec_env",
    "default_run_dir",
    "latest_checkpoint",
    "list_checkpoints",
    "resume",
    "train",
]

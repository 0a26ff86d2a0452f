"""Train briefly on a candidate reward, then say what happened: the trajectory analyser.

Two halves:

* :func:`train_candidate` — the default *trainer* of the loops: a short Stable-Baselines3
  run through :mod:`robo_reward.train` (a normal run folder), with a callback
  (:class:`TermTraceCallback`) that records every reward term's per-episode sum over
  training, and a few deterministic episodes of the final policy whose observations are
  kept (:class:`EpisodeRecord`). The loops accept any callable with the same signature
  (see :class:`Trainer`), which is how tests and other agents plug in.
* :func:`analyse` — turns a :class:`TrainResult` into metrics and a text report for the
  designer:

  - success rate of the final policy (and at the last step) and its ground-truth return;
  - Eureka's reward reflection (Ma et al. 2023, §3.3): each term's mean per-episode value
    at evenly spaced points of training, with its max, mean and min, next to the task's
    success rate and episode length at the same points;
  - Pearson correlation of the reward with the env's own (ground-truth) reward, per step
    and per episode;
  - failure modes in words (Auto MC-Reward's Trajectory Analyzer, Li et al. 2023, §3.3):
    no or rare success, episodes ending early, a learned return that rises while the
    ground truth does not, terms that never change or drown the others, and what the
    final policy's trajectories did — which positions it brought together, which
    objects it never moved.

  With an LLM, its own summary of the failure causes is added (the analyser prompt of
  :mod:`~robo_reward.rewards.code.prompts`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from ...core.errors import ConfigError
from .critic import pearson

#: Points of training at which the term traces are summarised (Eureka reports ~10).
TRACE_POINTS = 10


# ---------------------------------------------------------------------------------- data


@dataclass
class EpisodeRecord:
    """One episode of the trained policy (deterministic), with its observations.

    Attributes:
        obs: ``[T + 1, obs_dim]`` observations, the reset one first.
        success: ``is_success`` held at some step.
        final_success: ``is_success`` held at the last step.
        length: steps taken.
        terminated: it ended in a terminal state (not the time limit).
        env_return: return of the env's own reward.
        learned_return: return of the candidate reward.
        term_returns: per-episode sum of each reward term.
    """

    obs: np.ndarray
    success: bool
    final_success: bool
    length: int
    terminated: bool
    env_return: float
    learned_return: float
    term_returns: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a trainer reports about one short training run on a candidate reward.

    Attributes:
        timesteps: environment steps trained.
        trace: training curves at evenly spaced points: ``timesteps``, ``success_rate``,
            ``env_return``, ``learned_return``, ``ep_length`` (lists) and ``terms``
            (``{term: list}``), each a mean over the episodes finished in that stretch
            (``None`` where none finished).
        episodes: deterministic episodes of the final policy.
        step_rewards: ``[m, 2]`` sampled per-step (candidate reward, env reward) pairs
            from training, for the per-step correlation (may be empty).
        run_dir: the run folder, when there is one.
        video: a video of the final policy, when one was recorded.
        summary: the runner's ``summary.json`` contents (or whatever the trainer reports).
        max_episode_steps: the task's episode length.
    """

    timesteps: int
    trace: dict[str, Any] = field(default_factory=dict)
    episodes: list[EpisodeRecord] = field(default_factory=list)
    step_rewards: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    run_dir: Path | None = None
    video: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None


class Trainer(Protocol):
    """A callable that trains on a reward spec and reports a :class:`TrainResult`.

    ``trainer(spec, task, run_dir=..., steps=..., seed=...)``; :func:`train_candidate` is
    the default, and tests pass a stand-in that returns made-up results instantly.
    """

    def __call__(self, spec: Any, task: Any, *, run_dir: Path, steps: int, seed: int) -> TrainResult:
        """Train a policy on reward ``spec`` for ``task``; keep files under ``run_dir``."""
        ...


# ---------------------------------------------------------------------------------- training


def _make_trace_callback(total_steps: int, points: int, max_pairs: int) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class TermTraceCallback(BaseCallback):
        """Record each reward term's per-episode sum over training, summarised at ``points`` even stretches.

        Reads the ``info["reward_terms"]``, ``info["env_reward"]`` and ``info["is_success"]``
        that the reward wrapper and the card env put in every step's info. Also keeps up to
        ``max_pairs`` evenly thinned per-step (candidate reward, env reward) pairs.
        """

        def __init__(self) -> None:
            super().__init__()
            self.interval = max(1, int(math.ceil(total_steps / max(points, 1))))
            self.next_point = self.interval
            self.points: list[dict[str, Any]] = []
            self.finished: list[dict[str, Any]] = []
            self.pairs: list[tuple[float, float]] = []
            self.stride = 1
            self.run: list[dict[str, Any]] = []

        def _init_callback(self) -> None:
            n = self.training_env.num_envs
            self.run = [self._fresh() for _ in range(n)]

        @staticmethod
        def _fresh() -> dict[str, Any]:
            return {"terms": {}, "env": 0.0, "learned": 0.0, "success": False, "length": 0}

        def _on_step(self) -> bool:
            rewards = np.asarray(self.locals["rewards"], dtype=np.float64).reshape(-1)
            dones = np.asarray(self.locals["dones"], dtype=bool).reshape(-1)
            for i, info in enumerate(self.locals["infos"]):
                ep = self.run[i]
                env_r = float(info.get("env_reward", 0.0))
                ep["env"] += env_r
                ep["learned"] += float(rewards[i])
                ep["length"] += 1
                ep["success"] = ep["success"] or bool(info.get("is_success", False))
                for k, v in (info.get("reward_terms") or {}).items():
                    ep["terms"][k] = ep["terms"].get(k, 0.0) + float(v)
                if self.num_timesteps % self.stride == 0:
                    self.pairs.append((float(rewards[i]), env_r))
                    if len(self.pairs) >= max_pairs:
                        self.pairs = self.pairs[::2]
                        self.stride *= 2
                if dones[i]:
                    self.finished.append(ep)
                    self.run[i] = self._fresh()
            if self.num_timesteps >= self.next_point:
                self._point()
                self.next_point += self.interval
            return True

        def _on_training_end(self) -> None:
            if self.finished or not self.points or self.points[-1]["timesteps"] < self.num_timesteps:
                self._point()

        def _point(self) -> None:
            eps, self.finished = self.finished, []

            def mean(values: Sequence[float]) -> float | None:
                return float(np.mean(values)) if len(values) else None

            names = sorted({k for e in eps for k in e["terms"]})
            self.points.append({
                "timesteps": int(self.num_timesteps),
                "episodes": len(eps),
                "success_rate": mean([float(e["success"]) for e in eps]),
                "env_return": mean([e["env"] for e in eps]),
                "learned_return": mean([e["learned"] for e in eps]),
                "ep_length": mean([e["length"] for e in eps]),
                "terms": {k: mean([e["terms"].get(k, 0.0) for e in eps]) for k in names},
            })

        def trace(self) -> dict[str, Any]:
            """The points as column lists (see :attr:`TrainResult.trace`)."""
            names = sorted({k for p in self.points for k in p["terms"]})
            cols: dict[str, Any] = {
                key: [p[key] for p in self.points]
                for key in ("timesteps", "episodes", "success_rate", "env_return", "learned_return", "ep_length")
            }
            cols["terms"] = {k: [p["terms"].get(k) for p in self.points] for k in names}
            return cols

    return TermTraceCallback()


def policy_episodes(model: Any, task: Any, reward: Any, episodes: int, seed: int) -> list[EpisodeRecord]:
    """Run ``episodes`` deterministic episodes of ``model`` on the card env with ``reward``, keeping observations.

    Episode ``i`` resets with ``seed + i``. The reward plugin gives the per-term sums;
    the env's own reward is the ground truth.
    """
    from ...envs import make_env

    env = make_env(task, reward=reward, seed=seed)
    out = []
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            traj = [np.asarray(obs, dtype=np.float64)]
            terms: dict[str, float] = {}
            env_ret = learned = 0.0
            ok = bool(info.get("is_success", False))
            done = terminated = False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, r, terminated, truncated, info = env.step(action)
                traj.append(np.asarray(obs, dtype=np.float64))
                learned += float(r)
                env_ret += float(info.get("env_reward", 0.0))
                for k, v in (info.get("reward_terms") or {}).items():
                    terms[k] = terms.get(k, 0.0) + float(v)
                ok = ok or bool(info.get("is_success", False))
                done = bool(terminated or truncated)
            out.append(EpisodeRecord(np.stack(traj), ok, bool(info.get("is_success", False)), len(traj) - 1,
                                     bool(terminated), env_ret, learned, terms))
    finally:
        env.close()
    return out


def train_candidate(
    spec: Any,
    task: Any,
    *,
    run_dir: str | Path,
    steps: int = 20_000,
    seed: int = 0,
    agent: str = "ppo",
    n_envs: int = 4,
    agent_overrides: Mapping[str, Any] | None = None,
    eval_episodes: int = 5,
    video: bool = False,
    trace_points: int = TRACE_POINTS,
    progress: bool = False,
    device: str = "auto",
) -> TrainResult:
    """Train a short Stable-Baselines3 run on reward ``spec`` and collect what :func:`analyse` needs.

    The run is an ordinary run folder (``run_dir``; ``config.yaml``, ``metrics.jsonl``,
    ``summary.json``, ``videos/eval.mp4`` with ``video=True``). The final policy plays
    ``eval_episodes`` deterministic episodes (seeds from ``seed + 10000``, as the runner's
    evaluation), recorded with their observations.

    Args:
        spec: the reward spec (e.g. ``"code:path=<library>/v0003"``).
        task: task card name or card.
        run_dir: where the run folder goes (must not hold a run yet).
        steps: environment steps to train.
        seed: run seed.
        agent: ``ppo``, ``sac`` or ``td3`` (the term traces need a Stable-Baselines3 agent).
        n_envs: sub-environments.
        agent_overrides: hyperparameters over the agent's preset.
        eval_episodes: deterministic episodes of the final policy.
        video: record one of them to ``videos/eval.mp4`` (for people to judge).
        trace_points: points of training at which terms are summarised.
        progress: show a progress bar.
        device: torch device.

    Raises:
        ConfigError: a built-in (non-SB3) agent, or a bad run config.
    """
    from ...train.config import make_run_config
    from ...train.evaluate import EVAL_SEED_OFFSET
    from ...train.runner import Runner
    from . import plugin  # noqa: F401  (registers the ``code`` reward)

    if agent not in ("ppo", "sac", "td3"):
        raise ConfigError(f"the reward loops train with a Stable-Baselines3 agent (ppo, sac, td3), not {agent!r}")
    cfg = make_run_config({
        "task": task if isinstance(task, str) else task.name,
        "reward": spec,
        "agent": agent,
        "steps": int(steps),
        "seed": int(seed),
        "n_envs": int(n_envs),
        "agent_overrides": dict(agent_overrides or {}),
        "eval_episodes": 0,
        "checkpoint_freq": 0,
        "log_freq": max(1, int(steps) // max(trace_points, 1)),
        "video": bool(video),
        "device": device,
        "out": str(run_dir),
    })
    trace_cb = _make_trace_callback(int(steps), trace_points, max_pairs=4096)
    runner = Runner(cfg, progress=progress, callbacks=[trace_cb], log=lambda msg: None)
    summary = runner.setup().run()
    episodes = (
        policy_episodes(runner.model, runner.card, runner.plugin, eval_episodes, int(seed) + EVAL_SEED_OFFSET)
        if eval_episodes > 0 else []
    )
    video_path = Path(runner.run_dir) / summary["video"] if summary.get("video") else None
    return TrainResult(
        timesteps=int(summary.get("timesteps", steps)),
        trace=trace_cb.trace(),
        episodes=episodes,
        step_rewards=np.asarray(trace_cb.pairs, dtype=np.float64).reshape(-1, 2),
        run_dir=Path(runner.run_dir),
        video=video_path,
        summary=summary,
        max_episode_steps=int(runner.card.max_episode_steps),
    )


# ---------------------------------------------------------------------------------- analysis


@dataclass
class Analysis:
    """The analyser's result: metrics for the library and a text report for the designer.

    Attributes:
        metrics: JSON-ready numbers (see :func:`analyse`).
        failure_modes: one sentence per problem found.
        text: the whole report (reward reflection, correlations, failure modes).
        llm_summary: the LLM's explanation of the failures, when one was asked for.
    """

    metrics: dict[str, Any]
    failure_modes: list[str]
    text: str
    llm_summary: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored as ``metrics.json`` in the reward library)."""
        return {**self.metrics, "failure_modes": self.failure_modes, "report": self.text, "llm_summary": self.llm_summary}


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _series_stats(values: Sequence[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    return {
        "values": list(values),
        "max": max(vals) if vals else None,
        "mean": float(np.mean(vals)) if vals else None,
        "min": min(vals) if vals else None,
    }


def _position_pairs(abstraction: Any) -> list[tuple[Any, Any]]:
    """Pairs of same-sized position fields (in metres) of different entities, e.g. hand and object."""

    def usable(a: Any) -> bool:
        meaning = a.meaning.lower()
        return (
            a.units.strip() == "m" and a.name.endswith("position") and not a.name.startswith("previous_")
            and a.size in (2, 3) and "unused" not in meaning
        )

    fields = [a for a in abstraction.attributes if usable(a)]
    return [(a, b) for i, a in enumerate(fields) for b in fields[i + 1:] if a.entity != b.entity and a.size == b.size]


def trajectory_notes(episodes: Sequence[EpisodeRecord], abstraction: Any) -> list[str]:
    """What the final policy's episodes did, in words: distances between positions at start and end, fields that never moved.

    Looks at the failed episodes (all of them when none failed).
    """
    if not episodes or abstraction is None:
        return []
    failed = [e for e in episodes if not e.success] or list(episodes)
    which = "failed" if any(not e.success for e in episodes) else "all"
    notes = []
    for a, b in _position_pairs(abstraction):
        start = np.mean([np.linalg.norm(e.obs[0, a.start:a.stop] - e.obs[0, b.start:b.stop]) for e in failed])
        end = np.mean([np.linalg.norm(e.obs[-1, a.start:a.stop] - e.obs[-1, b.start:b.stop]) for e in failed])
        notes.append(f"distance {a.name} to {b.name}: {start:.3f} m at the start, {end:.3f} m at the end ({which} episodes)")
    for a in abstraction.attributes:
        if a.entity == "relations" and a.units.strip() == "m":
            start = np.mean([np.linalg.norm(e.obs[0, a.start:a.stop]) for e in failed])
            end = np.mean([np.linalg.norm(e.obs[-1, a.start:a.stop]) for e in failed])
            notes.append(f"|{a.name}|: {start:.3f} m at the start, {end:.3f} m at the end ({which} episodes)")
    for a in abstraction.attributes:
        if a.entity not in ("object", "second_object") or a.name.startswith("previous_") or "unused" in a.meaning.lower():
            continue
        if not a.name.endswith("position"):
            continue
        moved = np.mean([np.linalg.norm(e.obs[-1, a.start:a.stop] - e.obs[0, a.start:a.stop]) for e in failed])
        if moved < 0.005:
            notes.append(f"{a.name} moved only {moved * 1000:.1f} mm in {which} episodes: the policy never moves the object")
        else:
            notes.append(f"{a.name} moved {moved:.3f} m on average in {which} episodes")
    return notes


def analyse(
    result: TrainResult,
    abstraction: Any = None,
    *,
    code: str = "",
    llm: Any = None,
    dominance_share: float = 0.9,
) -> Analysis:
    """Summarise a short training run on a candidate reward (see the module docstring).

    Args:
        result: what the trainer reported.
        abstraction: the task's environment abstraction (for trajectory notes).
        code: the reward code (shown to the LLM, if any).
        llm: an LLM client for a free-text failure analysis (optional).
        dominance_share: a term with more than this share of the summed |term returns|
            is reported as dominating.

    Returns:
        an :class:`Analysis`; its ``metrics`` hold ``success_rate``, ``final_success_rate``,
        ``env_return``, ``learned_return``, ``episode_length`` (final policy),
        ``timesteps``, ``terms`` (``{term: {values, max, mean, min}}`` over training),
        ``training`` (the same for success rate, returns and episode length),
        ``pearson_step`` / ``pearson_episode`` (candidate vs ground-truth reward) and
        ``trajectory`` (notes on the final policy's episodes).
    """
    from ...train.evaluate import summarize_episodes

    eps = result.episodes
    metrics: dict[str, Any] = {"timesteps": int(result.timesteps)}
    if eps:
        ev = summarize_episodes(
            [e.env_return for e in eps], [e.success for e in eps], [e.length for e in eps],
            final_successes=[e.final_success for e in eps],
        )
        metrics.update({
            "episodes": ev["episodes"],
            "success_rate": ev["success_rate"],
            "success_ci": ev["success_ci"],
            "final_success_rate": ev["final_success_rate"],
            "env_return": ev["return_mean"],
            "learned_return": float(np.mean([e.learned_return for e in eps])),
            "episode_length": ev["length_mean"],
        })
    else:
        train = result.summary.get("train") or {}
        for key in ("success_rate", "env_return", "learned_return"):
            metrics[key] = train.get(key)
    trace = result.trace or {}
    term_series = {k: _series_stats(v) for k, v in (trace.get("terms") or {}).items()}
    training = {k: _series_stats(trace.get(k) or []) for k in ("success_rate", "env_return", "learned_return", "ep_length")}
    metrics["terms"] = term_series
    metrics["training"] = training
    metrics["trace_timesteps"] = list(trace.get("timesteps") or [])
    pairs = np.asarray(result.step_rewards, dtype=np.float64).reshape(-1, 2)
    metrics["pearson_step"] = pearson(pairs[:, 0], pairs[:, 1]) if len(pairs) else None
    both = [(a, b) for a, b in zip(trace.get("learned_return") or [], trace.get("env_return") or [])
            if a is not None and b is not None]
    metrics["pearson_episode"] = pearson([a for a, _ in both], [b for _, b in both])
    if eps and len(eps) >= 3:
        metrics["pearson_episode_final"] = pearson([e.learned_return for e in eps], [e.env_return for e in eps])

    # ---------------------------------------------------------------- failure modes
    modes: list[str] = []
    sr = metrics.get("success_rate")
    n_eps = len(eps)
    if sr is not None:
        if sr == 0:
            modes.append(f"The trained policy never succeeded ({n_eps or 'all'} evaluation episodes failed).")
        elif sr < 0.5:
            modes.append(f"The trained policy succeeded in only {sr:.0%} of the evaluation episodes.")
        fsr = metrics.get("final_success_rate")
        if fsr is not None and sr > 0 and fsr < 0.5 * sr:
            modes.append(
                f"It reaches success but does not stay there: successful at the last step in {fsr:.0%} of episodes, "
                f"at some step in {sr:.0%}."
            )
    if eps and result.max_episode_steps:
        early = [e for e in eps if e.terminated]
        if early:
            mean_len = float(np.mean([e.length for e in early]))
            modes.append(
                f"{len(early)} of {n_eps} episodes ended early, after {mean_len:.0f} of {result.max_episode_steps} "
                "steps on average (a termination condition, e.g. falling)."
            )
    lr = [v for v in training["learned_return"]["values"] if v is not None]
    gr = [v for v in training["env_return"]["values"] if v is not None]
    if len(lr) >= 3 and len(gr) >= 3:
        l_gain = lr[-1] - lr[0]
        g_gain = gr[-1] - gr[0]
        l_scale = max(abs(lr[0]), abs(lr[-1]), 1e-9)
        if l_gain > 0.1 * l_scale and g_gain <= 0:
            modes.append(
                f"The reward's return rose from {lr[0]:.3g} to {lr[-1]:.3g} during training while the task's own return "
                f"went from {gr[0]:.3g} to {gr[-1]:.3g}: the agent found a way to earn reward without doing the task."
            )
    ps = metrics.get("pearson_step")
    if ps is not None and ps < 0.3:
        modes.append(f"Per step, the reward is weakly correlated with the task's ground-truth reward (Pearson {ps:.2f}).")
    for k, st in term_series.items():
        vals = [v for v in st["values"] if v is not None]
        if len(vals) >= 2 and max(vals) - min(vals) <= 1e-6 * max(1.0, abs(st["mean"] or 0.0)):
            modes.append(f"Term {k!r} stayed at {vals[0]:.3g} per episode all through training: it gave no learning signal.")
    if eps:
        sums = {}
        for k in {k for e in eps for k in e.term_returns}:
            sums[k] = float(np.mean([abs(e.term_returns.get(k, 0.0)) for e in eps]))
        total = sum(sums.values())
        if len(sums) >= 2 and total > 0:
            for k, v in sums.items():
                if v / total > dominance_share:
                    modes.append(f"Term {k!r} makes up {v / total:.0%} of the reward's magnitude: the other terms barely matter.")
    notes = trajectory_notes(eps, abstraction)
    metrics["trajectory"] = notes

    # ---------------------------------------------------------------- report text
    lines = [f"Trained for {metrics['timesteps']} steps."]
    if eps:
        lines.append(
            f"Final policy, {n_eps} deterministic episodes: success rate {_fmt(metrics.get('success_rate'))} "
            f"(at the last step {_fmt(metrics.get('final_success_rate'))}), task return {_fmt(metrics.get('env_return'))}, "
            f"reward return {_fmt(metrics.get('learned_return'))}, episode length {_fmt(metrics.get('episode_length'))}."
        )
    if term_series or any(training[k]["values"] for k in training):
        pts = len(metrics["trace_timesteps"])
        lines.append(
            f"Values during training (mean per episode at {pts} evenly spaced points; then max, mean, min):"
        )

        def row(name: str, st: dict[str, Any]) -> str:
            vals = ", ".join(_fmt(v) for v in st["values"])
            return f"  {name}: [{vals}]  max {_fmt(st['max'])}, mean {_fmt(st['mean'])}, min {_fmt(st['min'])}"

        for k, st in term_series.items():
            lines.append(row(f"term {k}", st))
        for label, key in (("task success rate", "success_rate"), ("task return", "env_return"),
                           ("reward return", "learned_return"), ("episode length", "ep_length")):
            if training[key]["values"]:
                lines.append(row(label, training[key]))
    if metrics.get("pearson_step") is not None or metrics.get("pearson_episode") is not None:
        lines.append(
            f"Correlation with the task's ground-truth reward: per step {_fmt(metrics.get('pearson_step'))}, "
            f"per training stretch {_fmt(metrics.get('pearson_episode'))}."
        )
    if notes:
        lines.append("Trajectories of the final policy:")
        lines.extend(f"  - {n}" for n in notes)
    lines.append("Failure modes:" if modes else "No failure modes detected.")
    lines.extend(f"  - {m}" for m in modes)
    text = "\n".join(lines)
    analysis = Analysis(metrics, modes, text)
    if llm is not None and abstraction is not None:
        from .prompts import analyser_messages, ask

        analysis.llm_summary = ask(llm, analyser_messages(abstraction, code, text))[0].strip()
        analysis.text = f"{text}\nAnalyst's summary: {analysis.llm_summary}"
    return analysis


def result_to_dict(result: TrainResult) -> dict[str, Any]:
    """A JSON-ready summary of a :class:`TrainResult` (observations left out)."""
    d = asdict(result)
    d["episodes"] = [{k: v for k, v in asdict(e).items() if k != "obs"} for e in result.episodes]
    d["step_rewards"] = int(np.asarray(result.step_rewards).shape[0])
    d["run_dir"] = str(result.run_dir) if result.run_dir else None
    d["video"] = str(result.video) if result.video else None
    return d


__all__ = [
    "Analysis",
    "EpisodeRecord",
    "TRACE_POINTS",
    "TrainResult",
    "Trainer",
    "analyse",
    "policy_episodes",
    "result_to_dict",
    "train_candidate",
    "trajectory_notes",
]

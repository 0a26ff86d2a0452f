"""Evaluate a trained policy on its task card: success rate and ground-truth return, with confidence intervals.

The evaluation env is the card's env *without* a reward plugin, so the return reported
is the environment's own (ground-truth) reward, whatever reward the agent was trained
on. An episode counts as a success if ``info["is_success"]`` was true at any step.

Intervals (95 % by default):

* return: Student-t interval around the mean (``scipy.stats.t``);
* success rate: Wilson score interval (:func:`wilson_interval`), which stays inside
  [0, 1] and is sensible at 0 or n successes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.errors import ConfigError, RoboRewardError

EVAL_SEED_OFFSET = 10_000
"""Evaluation seeds start at ``run seed + EVAL_SEED_OFFSET``, away from the training envs' seeds."""


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    ``center = (p + z²/2n) / (1 + z²/n)``, ``half = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²)``.
    Uses ``statsmodels`` when it is installed (same formula), otherwise the formula above.

    Raises:
        ConfigError: ``n <= 0`` or ``successes`` outside ``[0, n]``.
    """
    if n <= 0:
        raise ConfigError(f"wilson_interval needs n > 0, got {n}")
    if not 0 <= successes <= n:
        raise ConfigError(f"successes must be in [0, {n}], got {successes}")
    try:
        from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-not-found]
    except ImportError:
        proportion_confint = None
    if proportion_confint is not None:
        lo, hi = proportion_confint(successes, n, alpha=1.0 - confidence, method="wilson")
        return float(lo), float(hi)
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean of ``values``; ``None`` with fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    mean = float(x.mean())
    sem = float(x.std(ddof=1) / math.sqrt(x.size))
    if sem == 0.0:
        return mean, mean
    from scipy import stats

    lo, hi = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def summarize_episodes(
    returns: Sequence[float],
    successes: Sequence[bool],
    lengths: Sequence[int] | None = None,
    confidence: float = 0.95,
    final_successes: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Statistics of finished episodes: success rate and return with mean, std and CIs.

    ``successes`` says whether each episode succeeded at any step (the success rate);
    ``final_successes``, when given, whether it was successful at its last step
    (reported as ``final_success_rate``: reaching the goal *and staying* there).
    """
    r = np.asarray(returns, dtype=np.float64)
    s = np.asarray(successes, dtype=bool)
    n = int(r.size)
    if n == 0:
        raise ConfigError("cannot summarize zero episodes")
    k = int(s.sum())
    ci_r = t_interval(r, confidence)
    out: dict[str, Any] = {
        "episodes": n,
        "confidence": confidence,
        "success_rate": k / n,
        "success_count": k,
        "success_ci": list(wilson_interval(k, n, confidence)),
        "return_mean": float(r.mean()),
        "return_std": float(r.std(ddof=1)) if n > 1 else 0.0,
        "return_ci": list(ci_r) if ci_r is not None else None,
        "length_mean": float(np.mean(lengths)) if lengths is not None and len(lengths) else None,
        "returns": [float(v) for v in r],
        "successes": [bool(v) for v in s],
        "lengths": [int(v) for v in lengths] if lengths is not None else None,
    }
    if final_successes is not None:
        f = np.asarray(final_successes, dtype=bool)
        if f.shape != s.shape:
            raise ConfigError(f"final_successes has {f.size} entries for {n} episodes")
        out["final_success_rate"] = float(f.mean())
        out["final_success_ci"] = list(wilson_interval(int(f.sum()), n, confidence))
        out["final_successes"] = [bool(v) for v in f]
    return out


def _load_card(task: Any) -> Any:
    from ..envs import load_card

    return task if hasattr(task, "env_id") else load_card(task)


def _final_model_path(run_dir: Path, agent: str = "ppo") -> tuple[Path, int | None]:
    from .native import model_suffix

    final = run_dir / f"final_model{model_suffix(agent)}"
    if final.is_file():
        meta = run_dir / "final_model.json"
        steps = json.loads(meta.read_text()).get("timesteps") if meta.is_file() else None
        return final, steps
    from .runner import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"{run_dir} has no {final.name} and no checkpoint to evaluate")
    return ckpt.model, ckpt.timesteps


def load_run_model(run_dir: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Load the final model (or, failing that, the latest checkpoint) of a run folder.

    Returns ``(model, config, info)``: ``config`` is the run's ``config.yaml`` as a dict
    (read as is, so a run whose reward plugin is no longer installed can still be
    evaluated), ``info`` names the model file and its step count. SB3 agents load as
    SB3 models, built-in ones (``ppo-native``, ``ppo-multicritic``, ``barfi``) as
    :class:`~robo_reward.agents.ppo.PPO` / :class:`~robo_reward.agents.barfi.BARFI`,
    offline ones (``iql``, ``bc``) as :class:`~robo_reward.offline.iql.IQL` /
    :class:`~robo_reward.offline.bc.BC` (all have SB3's ``predict``).
    """
    from .config import OFFLINE_AGENTS, read_yaml_mapping
    from .native import is_native, load_native_agent

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    cfg = read_yaml_mapping(run_dir / "config.yaml")
    for key in ("task", "agent"):
        if not cfg.get(key):
            raise ConfigError(f"{run_dir / 'config.yaml'} has no {key!r}")
    path, steps = _final_model_path(run_dir, cfg["agent"])
    if is_native(cfg["agent"]):
        model = load_native_agent(cfg["agent"], path, device=device)
    elif cfg["agent"] in OFFLINE_AGENTS:
        from .offline import load_offline_agent

        model = load_offline_agent(cfg["agent"], path, device=device)
    else:
        from ..agents.sb3 import load_model

        model = load_model(cfg["agent"], path, device=device)
    return model, cfg, {"model_path": str(path), "model_timesteps": steps}


def run_episodes(
    model: Any, card: Any, episodes: int, seed: int, *, deterministic: bool = True, progress: bool = False
) -> dict[str, list]:
    """Roll out ``episodes`` episodes of ``model`` on the card env (env reward); seeds ``seed, seed+1, ...``.

    Returns per-episode lists: ``returns`` (env reward), ``successes`` (``is_success`` at
    any step), ``lengths`` and ``final_successes`` (``is_success`` at the last step).
    """
    from ..envs import make_env

    env = make_env(card, seed=seed)
    returns, successes, lengths, finals = [], [], [], []
    it = range(episodes)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="eval", unit="ep")
    try:
        for ep in it:
            obs, info = env.reset(seed=seed + ep)
            total, ok, length, done = 0.0, bool(info.get("is_success", False)), 0, False
            while not done:
                action, _ = model.predict(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                ok = ok or bool(info.get("is_success", False))
                length += 1
                done = bool(terminated or truncated)
            returns.append(total)
            successes.append(ok)
            lengths.append(length)
            finals.append(bool(info.get("is_success", False)))
    finally:
        env.close()
    return {"returns": returns, "successes": successes, "lengths": lengths, "final_successes": finals}


def evaluate(
    source: Any,
    task: Any = None,
    episodes: int = 10,
    seed: int | None = None,
    *,
    deterministic: bool = True,
    device: str = "cpu",
    confidence: float = 0.95,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a run folder or a model on a task card with deterministic episodes.

    Args:
        source: a run folder (its final model, or latest checkpoint, is loaded and its
            ``config.yaml`` gives the task) or a model with SB3's ``predict`` (SB3, built-in PPO
            or BARFI, offline IQL or BC).
        task: task-card name or card; required when ``source`` is a model, optional
            (defaults to the run's task) for a run folder.
        episodes: number of episodes.
        seed: episode ``i`` resets with ``seed + i``; default: the run's seed +
            :data:`EVAL_SEED_OFFSET` (0 + offset for a bare model).
        deterministic: use the policy's deterministic action.
        device: torch device for loading a run's model.
        confidence: level of the intervals.
        progress: show a progress bar.

    Returns:
        A JSON-ready dict: ``task``, ``episodes``, ``seed``, ``success_rate``,
        ``success_ci`` (Wilson), ``return_mean``, ``return_std``, ``return_ci``
        (t-interval; ``None`` for one episode), ``confidence`` (the intervals' level),
        ``final_success_rate``/``final_success_ci`` (successful at the last step), ``length_mean``, and per-episode lists.
    """
    if episodes <= 0:
        raise ConfigError(f"episodes must be > 0, got {episodes}")
    info: dict[str, Any] = {}
    if isinstance(source, (str, os.PathLike)):
        model, cfg, info = load_run_model(source, device=device)
        info["run_dir"] = str(source)
        card = _load_card(task if task is not None else cfg["task"])
        if seed is None:
            seed = int(cfg.get("seed") or 0) + EVAL_SEED_OFFSET
    else:
        model = source
        if task is None:
            raise ConfigError("evaluate(model, ...) needs task= (a task-card name or card)")
        card = _load_card(task)
        if seed is None:
            seed = EVAL_SEED_OFFSET
    eps = run_episodes(model, card, episodes, seed, deterministic=deterministic, progress=progress)
    out = {
        "task": card.name,
        "env_id": card.env_id,
        "seed": int(seed),
        "deterministic": deterministic,
        **info,
        **summarize_episodes(eps["returns"], eps["successes"], eps["lengths"], confidence, eps["final_successes"]),
    }
    return out


def record_video(
    model: Any,
    task: Any,
    path: str | Path,
    *,
    seed: int = EVAL_SEED_OFFSET,
    max_steps: int | None = None,
    deterministic: bool = True,
    fps: int | None = None,
) -> dict[str, Any]:
    """Render one deterministic episode of ``model`` on the card env to an MP4 at ``path``.

    Raises whatever rendering raises (no display, no GL): callers that must not lose a
    run catch it. Returns ``{"path", "frames", "fps", "return", "success"}``.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; a no-op where already set
    try:
        import imageio.v2 as imageio
    except ImportError as exc:
        from ..core.errors import MissingDependencyError

        raise MissingDependencyError("imageio", "video", "evaluation videos") from exc
    from ..envs import make_env

    card = _load_card(task)
    env = make_env(card, seed=seed, render_mode="rgb_array")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = int(fps or env.metadata.get("render_fps") or 30)
    frames = 0
    total, ok = 0.0, False
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    try:
        obs, info = env.reset(seed=seed)
        first = env.render()
        if first is None:
            raise RoboRewardError(f"{card.env_id} returned no frame from render(); it cannot record video")
        with imageio.get_writer(tmp, fps=fps, macro_block_size=1) as writer:
            writer.append_data(np.asarray(first, dtype=np.uint8))
            frames = 1
            done = False
            steps = 0
            while not done and (max_steps is None or steps < max_steps):
                action, _ = model.predict(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                ok = ok or bool(info.get("is_success", False))
                writer.append_data(np.asarray(env.render(), dtype=np.uint8))
                frames += 1
                steps += 1
                done = bool(terminated or truncated)
        tmp.replace(path)
    finally:
        env.close()
        if tmp.exists():
            tmp.unlink()
    return {"path": str(path), "frames": frames, "fps": fps, "return": total, "success": ok}


def write_eval_json(result: dict[str, Any], path: str | Path) -> None:
    """Write an evaluation result as JSON (strict: no NaN)."""
    Path(path).write_text(json.dumps(result, indent=2, allow_nan=False))

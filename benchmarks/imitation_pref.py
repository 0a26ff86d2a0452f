"""Preference learning on a MuJoCo task: robo_reward against the imitation library's PreferenceComparisons.

Both libraries learn a Reacher reward from comparisons of trajectory segments given by
the same kind of synthetic teacher, with the same query budgets, side by side; each
learned reward is scored against the task's true reward on held-out transitions.

* **Task**: ``Reacher-v4`` — it exists in gymnasium 1.x (this project) and in gymnasium
  0.29 (which ``imitation`` 1.0.1 pins). Its reward is exactly
  ``r(s, a) = −‖s[8:11]‖ − ‖a‖²`` (fingertip-to-target distance in the observation and
  the control cost), which :func:`true_reward` computes.
* **Data**: a pool of episodes from a mixture of behaviours (uniformly random actions at
  two scales and a Jacobian-transpose PD reacher at three noise/gain settings), cut
  into 25-step segments; a held-out set of episodes of the same mixture for evaluation.
* **Teacher**: Bradley–Terry-rational over the segments' true returns,
  ``P(σ₁ ≻ σ₂) = logistic(β (R₁ − R₂))`` with ``β = 1``, labels sampled — B-Pref's
  ``stoc`` teacher (:class:`~robo_reward.rewards.preference.BPrefTeacher`) and imitation's
  ``SyntheticGatherer(temperature=1, sample=True)`` default; the worker checks that both
  give the same probabilities on the same pairs.
* **Arm "same pairs"** (isolates the reward learner): for each seed, one list of uniformly
  random pairs of pool segments labelled once by the teacher; with budget ``B`` both
  libraries train on the first ``B`` pairs with the same optimisation settings (Adam(W),
  lr 1e-3, batch 32 pairs, ``--fixed-epochs`` epochs), each with its library's default
  reward model: robo_reward's ensemble of 3 MLPs (64, 64), standardised inputs;
  imitation's ``BasicRewardNet`` (32, 32) with a ``RunningNorm`` input layer. A third row
  trains robo_reward with imitation's net shape (one ReLU MLP of 32-32), to tell the
  ensemble and width apart from the rest of the learner.
* **Arm "own loop"** (each library's query loop on the same pool, same teacher model,
  same budget ``B``): imitation's ``PreferenceComparisons`` over a ``TrajectoryDataset`` of
  the pool episodes (``total_comparisons=B``, no agent), with the defaults of its
  ``train_preference_comparisons`` script (5 iterations, hyperbolic query schedule,
  10 % initial comparisons, 3 epochs per iteration, ×200 on the first, random
  fragmenter); robo_reward's :class:`~robo_reward.rewards.preference.PreferenceTrainer`
  asking the same number of queries per round as imitation's schedule, with
  ``disagreement`` (active) and ``uniform`` query selection, 50 epochs per round.
* **Metrics**: the EPIC distance (Gleave et al. 2021; :func:`robo_reward.metrics.epic_distance_sampled`,
  γ = 0.99) and the Pearson distance ``sqrt((1 − ρ)/2)`` between the learned and the true
  reward on held-out transitions; *queries needed* = the smallest budget whose seed-mean
  EPIC distance is at most a target; wall time of reward learning.

imitation runs in its own virtual environment (``benchmarks/_venvs/imitation``, created on
first use: ``torch==2.14.1`` first, then ``imitation==1.0.1``, ``gymnasium[mujoco]==0.29.1``,
``mujoco==3.3.0``) through ``benchmarks/_imitation_worker.py``; its learned nets come back as
arrays (normalisation and layers, checked against the nets' own output on a probe batch)
and are scored here by the same code as robo_reward's.

Usage::

    python benchmarks/imitation_pref.py [--quick] [--seeds 0 1 2] [--budgets 50 100 200 400 800]
                                        [--loop-budgets 50 100 200 400]
                                        [--out benchmarks/results/imitation_pref]

Writes ``<out>.json`` (every run) and ``<out>.md`` (tables, command, versions, machine);
``--render <out>.json`` writes the report again from recorded results without running.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from robo_reward.bench.files import write_result_files
from robo_reward.train.records import package_versions

ENV_ID = "Reacher-v4"
SEGMENT_LENGTH = 25
GAMMA = 0.99
TEACHER_BETA = 1.0
HERE = Path(__file__).resolve().parent
WORKER = HERE / "_imitation_worker.py"
DEFAULT_VENV = HERE / "_venvs" / "imitation"
#: Candidate pairs per query for active selection (robo_reward's loop uses the same factor).
ACTIVE_SAMPLE_FACTOR = 10
ACTIVE_METHOD = "own loop · imitation (active selection, ensemble of 3)"
#: What the imitation environment gets, in this order (torch first: it is on local disk here).
IMITATION_REQUIREMENTS = (("torch==2.14.1",), ("imitation==1.0.1", "gymnasium[mujoco]==0.29.1", "mujoco==3.3.0"))
IMITATION_PINS = {"imitation": "1.0.1", "gymnasium": "0.29.1", "torch": "2.14.1"}

#: robo_reward's model shaped like imitation's default net (one ReLU MLP of 32-32), for the same-pairs arm.
IMITATION_SHAPED = {"hidden": (32, 32), "ensemble_size": 1, "activation": "relu"}
SHAPED_METHOD = "same pairs · robo_reward, 1 × MLP 32-32 ReLU (imitation's net shape)"

#: Behaviours mixed in the segment pool and the evaluation episodes (one per episode, uniformly).
POLICIES = ("random", "random-small", "reach", "reach-noisy", "reach-slow")
# Reacher's two links (reacher.xml: the fingertip sits 0.11 along the second link, which starts 0.1 from the base)
_LINK1, _LINK2 = 0.1, 0.11


# =========================================================================== data


def reach_action(obs: np.ndarray, kp: float = 20.0, kd: float = 0.05) -> np.ndarray:
    """A Jacobian-transpose PD reacher: torque ``−kp Jᵀ (fingertip − target) − kd q̇``, clipped to [-1, 1].

    Reacher-v4 observations: ``cos q (2), sin q (2), target xy (2), q̇ (2), fingertip − target (3)``.
    """
    c1, c2, s1, s2 = obs[0], obs[1], obs[2], obs[3]
    c12, s12 = c1 * c2 - s1 * s2, s1 * c2 + c1 * s2
    jac = np.array([[-_LINK1 * s1 - _LINK2 * s12, -_LINK2 * s12], [_LINK1 * c1 + _LINK2 * c12, _LINK2 * c12]])
    torque = -kp * jac.T @ obs[8:10] - kd * obs[6:8]
    return np.clip(torque, -1.0, 1.0).astype(np.float32)


def policy_action(name: str, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The action of behaviour ``name`` (one of :data:`POLICIES`) in ``obs``."""
    if name == "random":
        return rng.uniform(-1, 1, 2).astype(np.float32)
    if name == "random-small":
        return (0.2 * rng.uniform(-1, 1, 2)).astype(np.float32)
    if name == "reach":
        a = reach_action(obs) + 0.1 * rng.standard_normal(2)
    elif name == "reach-noisy":
        a = reach_action(obs) + 0.5 * rng.standard_normal(2)
    elif name == "reach-slow":
        a = reach_action(obs, kp=5.0) + 0.1 * rng.standard_normal(2)
    else:
        raise ValueError(f"unknown behaviour {name!r}; choose one of {', '.join(POLICIES)}")
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def rollout_episodes(n_episodes: int, seed: int, env_id: str = ENV_ID) -> dict[str, np.ndarray]:
    """Roll ``n_episodes`` full episodes, each of one behaviour of :data:`POLICIES`.

    Episode ``e`` is reset with seed ``seed + e`` (so any episode can be replayed).

    Returns:
        ``ep_obs`` float32[E, T+1, d], ``ep_act`` float32[E, T, k], ``ep_rew`` float64[E, T]
        (the env's reward), ``ep_policy`` int[E] (index into :data:`POLICIES`), ``ep_seed`` int[E].
    """
    import warnings

    import gymnasium as gym

    # gymnasium 1.x flags the v4 MuJoCo envs as out of date; v4 is the version both gymnasium releases have
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env = gym.make(env_id)
    rng = np.random.default_rng([seed, 7])
    obs_l, act_l, rew_l, pol_l = [], [], [], []
    for e in range(n_episodes):
        pol = int(rng.integers(len(POLICIES)))
        obs, _ = env.reset(seed=seed + e)
        o, a, r = [np.asarray(obs, np.float32)], [], []
        done = False
        while not done:
            action = policy_action(POLICIES[pol], obs, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            o.append(np.asarray(obs, np.float32))
            a.append(action)
            r.append(float(reward))
            done = terminated or truncated
        obs_l.append(np.stack(o))
        act_l.append(np.stack(a))
        rew_l.append(np.asarray(r))
        pol_l.append(pol)
    env.close()
    if len({len(r) for r in rew_l}) != 1:
        raise RuntimeError(f"{env_id} episodes have different lengths; this benchmark needs a fixed horizon")
    return {
        "ep_obs": np.stack(obs_l), "ep_act": np.stack(act_l), "ep_rew": np.stack(rew_l),
        "ep_policy": np.asarray(pol_l), "ep_seed": seed + np.arange(n_episodes),
    }


def episode_segments(ep: dict[str, np.ndarray], length: int = SEGMENT_LENGTH) -> Any:
    """Cut every episode into consecutive, non-overlapping segments of ``length`` steps (a :class:`SegmentBatch`).

    Segment ``e · m + k`` is steps ``[k·length, (k+1)·length)`` of episode ``e``
    (``m = T // length``; leftover steps are dropped).
    """
    from robo_reward.rewards.preference import SegmentBatch

    n_ep, horizon = ep["ep_act"].shape[:2]
    m = horizon // length
    if m < 1:
        raise ValueError(f"episodes of {horizon} steps are shorter than the segment length {length}")
    cut = m * length

    def split(x: np.ndarray) -> np.ndarray:
        return x[:, :cut].reshape(n_ep * m, length, *x.shape[2:])

    return SegmentBatch(
        obs=split(ep["ep_obs"][:, :-1]), action=split(ep["ep_act"]), next_obs=split(ep["ep_obs"][:, 1:]),
        rewards=split(ep["ep_rew"]),
    )


def true_reward(obs: Any, act: Any, next_obs: Any = None) -> np.ndarray:
    """Reacher-v4's reward ``−‖fingertip − target‖ − ‖a‖²`` for batches of transitions (``float64[n]``)."""
    obs = np.asarray(obs, dtype=np.float64)
    act = np.asarray(act, dtype=np.float64)
    return -np.linalg.norm(obs[:, 8:11], axis=1) - np.square(act).sum(axis=1)


def eval_transitions(ep: dict[str, np.ndarray], n: int, seed: int = 0) -> Any:
    """``n`` transitions drawn without replacement from the episodes (a :class:`robo_reward.metrics.Transitions`)."""
    from robo_reward.metrics import Transitions

    obs = ep["ep_obs"][:, :-1].reshape(-1, ep["ep_obs"].shape[-1])
    nxt = ep["ep_obs"][:, 1:].reshape(-1, ep["ep_obs"].shape[-1])
    act = ep["ep_act"].reshape(-1, ep["ep_act"].shape[-1])
    idx = np.sort(np.random.default_rng(seed).choice(len(obs), size=min(n, len(obs)), replace=False))
    return Transitions(obs[idx], act[idx], nxt[idx])


def draw_pairs(n_segments: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniformly random pairs ``(i, j)`` of different segments."""
    i = rng.integers(n_segments, size=n)
    j = (i + rng.integers(1, n_segments, size=n)) % n_segments
    return i, j


def reward_distances(
    reward: Callable[..., Any], transitions: Any, *, n_mean: int = 128, seed: int = 0
) -> dict[str, float]:
    """EPIC (γ = :data:`GAMMA`) and Pearson distances of ``reward`` to :func:`true_reward` on ``transitions``."""
    from robo_reward.metrics import epic_distance_sampled, pearson_distance

    epic = epic_distance_sampled(true_reward, reward, gamma=GAMMA, transitions=transitions, n_mean=n_mean, seed=seed)
    r_true = true_reward(transitions.obs, transitions.action)
    r_hat = np.asarray(reward(transitions.obs, transitions.action, transitions.next_obs), dtype=np.float64)
    return {"epic": float(epic), "pearson": float(pearson_distance(r_true, r_hat))}


def query_schedule(total: int, iterations: int = 5, initial_frac: float = 0.1) -> list[int]:
    """Comparisons per round of imitation's ``PreferenceComparisons`` with the ``hyperbolic`` schedule.

    ``int(initial_frac · total)`` first, then the rest split in proportion to
    ``1 / (1 + t)`` for ``t`` in ``linspace(0, 1, iterations)``, rounded so that the
    shares keep their sum (largest remainders first), as imitation's ``util.oric`` does.
    The worker recomputes it with imitation's own helpers and the two are compared.
    """
    initial = int(total * initial_frac)
    weights = 1.0 / (1.0 + np.linspace(0.0, 1.0, iterations))
    share = weights / weights.sum() * (total - initial)
    rounded = np.floor(share)
    extra = int(round(float((share - rounded).sum())))
    rounded[np.argsort(-(share - rounded), kind="stable")[:extra]] += 1
    return [initial] + rounded.astype(int).tolist()


# =========================================================================== robo_reward's side


def ours_model(obs_dim: int, act_dim: int, seed: int, **config: Any) -> Any:
    """robo_reward's reward model for this task: by default 3 × MLP(64, 64) on (s, a), standardised inputs.

    ``config`` overrides :class:`RewardModelConfig` fields (``hidden``, ``ensemble_size``, ``activation``).
    """
    from robo_reward.rewards.preference import RewardEnsemble, RewardModelConfig

    return RewardEnsemble(RewardModelConfig(obs_shape=(obs_dim,), action_shape=(act_dim,), normalize=True, seed=seed,
                                            **config))


def ours_reward_fn(model: Any) -> Callable[..., np.ndarray]:
    """The ensemble-mean reward as ``r(obs, act, next_obs) -> float64[n]``.

    The same numbers as ``model.predict`` (to float32 rounding), through the torch forward
    pass, which is the faster of the two for the millions of rows that EPIC evaluates.
    """
    import torch

    def fn(obs: Any, act: Any, next_obs: Any = None) -> np.ndarray:
        x = model.features(obs, act)
        with torch.no_grad():
            out = [model(x[lo : lo + 65536]).mean(0).numpy() for lo in range(0, len(x), 65536)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    return fn


def run_ours_fixed(segments: Any, i: np.ndarray, j: np.ndarray, labels: np.ndarray, seed: int,
                   epochs: int, batch_size: int, lr: float, **config: Any) -> tuple[Any, float, float]:
    """Train a fresh robo_reward model on the given labelled pairs; returns ``(model, wall s, CPU s)``.

    ``config``: overrides of the model (see :func:`ours_model`).
    """
    from robo_reward.rewards.preference import PreferencePairs, train_bradley_terry

    model = ours_model(segments.obs.shape[-1], segments.action.shape[-1], seed, **config)
    pairs = PreferencePairs(segments[i], segments[j], labels)
    t0, c0 = time.perf_counter(), time.process_time()
    train_bradley_terry(model, pairs, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, num_threads=1)
    return model, time.perf_counter() - t0, time.process_time() - c0


def run_ours_loop(
    segments: Any, schedule: Sequence[int], sampler: str, seed: int, epochs: int
) -> tuple[Any, float, float, int]:
    """robo_reward's query → label → train loop on the pool; returns ``(model, wall s, CPU s, labels)``.

    One :meth:`PreferenceTrainer.round` per entry of ``schedule`` (queries per round), the
    B-Pref ``stoc`` teacher (β = :data:`TEACHER_BETA`), ``epochs`` per round.
    """
    from robo_reward.rewards.preference import BPrefTeacher, PreferenceTrainer

    model = ours_model(segments.obs.shape[-1], segments.action.shape[-1], seed)
    teacher = BPrefTeacher(beta=TEACHER_BETA, seed=[seed, 11])
    trainer = PreferenceTrainer(model, teacher, sampler=sampler, train_kwargs={"epochs": epochs, "num_threads": 1},
                                seed=seed)
    trainer.add_segments(segments)
    t0, c0 = time.perf_counter(), time.process_time()
    for n in schedule:
        if n > 0:
            trainer.round(n)
    return model, time.perf_counter() - t0, time.process_time() - c0, trainer.labels


# =========================================================================== imitation's side


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def imitation_versions(python: Path) -> dict[str, str] | None:
    """Installed versions of the pinned packages in the environment of ``python`` (``None`` if it cannot run)."""
    code = ("import json; from importlib.metadata import version; "
            f"print(json.dumps({{p: version(p) for p in {sorted(IMITATION_PINS)!r}}}))")
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_imitation_venv(venv: Path = DEFAULT_VENV, *, log: Callable[[str], Any] = print) -> Path:
    """The Python of a virtual environment with imitation 1.0.1, created (or completed) if needed.

    Installs ``torch==2.14.1`` first (so pip does not pull another build), then
    ``imitation==1.0.1``, ``gymnasium[mujoco]==0.29.1`` and ``mujoco==3.3.0`` (the MuJoCo
    this project uses, so both sides simulate with the same engine).
    """
    python = _venv_python(venv)
    if python.exists() and imitation_versions(python) == IMITATION_PINS:
        return python
    if not python.exists():
        log(f"creating {venv} (one-off, several minutes)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for group in IMITATION_REQUIREMENTS:
        log(f"pip install {' '.join(group)}")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *group], check=True)
    found = imitation_versions(python)
    if found != IMITATION_PINS:
        raise RuntimeError(f"{venv} has {found}, expected {IMITATION_PINS}; delete the folder and run again")
    return python


def run_imitation_worker(python: Path, config: dict[str, Any], work: Path, *, quiet: bool = False) -> dict[str, Any]:
    """Run ``_imitation_worker.py`` with ``config`` (written to ``work/config.json``); returns its ``results.json``."""
    cfg_path = work / "config.json"
    cfg_path.write_text(json.dumps(config))
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(python), str(WORKER), str(cfg_path)], env=env, text=True,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"the imitation worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads((work / "results.json").read_text())


def ensemble_reward_fn(paths: Sequence[str | Path]) -> Callable[..., np.ndarray]:
    """The mean of several exported nets (an imitation ``RewardEnsemble``'s members), as ``r(obs, act, next_obs)``."""
    fns = [mlp_reward_fn(p) for p in paths]

    def fn(obs: Any, act: Any, next_obs: Any = None) -> np.ndarray:
        return np.mean([f(obs, act, next_obs) for f in fns], axis=0)

    fn.probe_error = max(f.probe_error for f in fns)  # type: ignore[attr-defined]
    return fn


def mlp_reward_fn(path: str | Path, *, tol: float = 1e-4) -> Callable[..., np.ndarray]:
    """Load a reward net written by the worker's ``export_mlp`` as ``r(obs, act, next_obs) -> float64[n]``.

    The ops (``norm``, ``linear``, ``relu``, ``squeeze``) are applied in order to
    ``[obs, act]``. On loading, the net's own output on the stored probe batch
    (computed by imitation) is compared with this evaluation; a difference above ``tol``
    raises ``RuntimeError``.
    """
    with np.load(path) as z:
        ops = json.loads(str(z["ops"]))
        params = {k: z[k] for k in z.files}

    def fn(obs: Any, act: Any, next_obs: Any = None) -> np.ndarray:
        x = np.concatenate([np.asarray(obs, np.float32), np.asarray(act, np.float32)], axis=1)
        for k, op in enumerate(ops):
            if op == "norm":
                x = (x - params[f"p{k}_mean"]) / params[f"p{k}_scale"]
            elif op == "linear":
                x = x @ params[f"p{k}_W"].T + params[f"p{k}_b"]
            elif op == "relu":
                x = np.maximum(x, np.float32(0.0))
            elif op == "squeeze":
                x = x[:, 0]
            else:
                raise RuntimeError(f"{path}: unknown op {op!r}")
        return np.asarray(x, dtype=np.float64).reshape(-1)

    want = params["probe_out"].astype(np.float64)
    got = fn(params["probe_obs"], params["probe_act"])
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if not err <= tol * max(1.0, float(np.max(np.abs(want)))):
        raise RuntimeError(f"{path}: evaluating the exported net differs from imitation's own output by {err:.2e}")
    fn.probe_error = err  # type: ignore[attr-defined]
    return fn


# =========================================================================== summaries


def queries_needed(budgets: Sequence[int], distances: Sequence[float], target: float) -> int | None:
    """The smallest budget whose distance is at most ``target`` (``None`` if none is).

    ``budgets`` and ``distances`` go together; order does not matter.
    """
    if len(budgets) != len(distances):
        raise ValueError("one distance per budget")
    hits = [b for b, d in zip(budgets, distances) if d is not None and math.isfinite(d) and d <= target]
    return min(hits) if hits else None


def summarize(records: list[dict[str, Any]], budgets: Sequence[int], targets: Sequence[float]) -> list[dict[str, Any]]:
    """Per method: mean and standard deviation over seeds of each metric per budget, and queries needed per target.

    ``records`` hold ``method``, ``seed``, ``budget``, ``epic``, ``pearson``, ``seconds`` (and
    optionally ``cpu_seconds``).
    "Queries needed" is computed on the seed-mean EPIC curve, and per seed.
    """
    out = []
    for method in dict.fromkeys(r["method"] for r in records):
        rows = [r for r in records if r["method"] == method]
        seeds = sorted({r["seed"] for r in rows})
        per_budget = {}
        for b in budgets:
            sel = [r for r in rows if r["budget"] == b]
            if not sel:
                continue
            stats = {}
            for key in ("epic", "pearson", "seconds", "cpu_seconds"):
                if any(key not in r for r in sel):
                    continue
                v = np.array([r[key] for r in sel], dtype=np.float64)
                stats[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
            stats["n"] = len(sel)
            per_budget[b] = stats
        bs = sorted(per_budget)
        needed = {}
        for t in targets:
            per_seed = []
            for s in seeds:
                sel = {r["budget"]: r["epic"] for r in rows if r["seed"] == s}
                per_seed.append(queries_needed(list(sel), list(sel.values()), t))
            needed[str(t)] = {"mean_curve": queries_needed(bs, [per_budget[b]["epic"]["mean"] for b in bs], t),
                              "per_seed": per_seed}
        out.append({"method": method, "arm": rows[0]["arm"], "library": rows[0]["library"],
                    "per_budget": {str(b): v for b, v in per_budget.items()}, "queries_needed": needed})
    return out


def _fmt(stats: dict[str, float] | None, digits: int = 3) -> str:
    if stats is None:
        return "—"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown(res: dict[str, Any]) -> str:
    """The results as a markdown report."""
    s = res["settings"]
    budgets = s["budgets"]
    lines = [
        "# Preference learning on Reacher-v4: robo_reward vs imitation's PreferenceComparisons",
        "",
        f"Command: `{res['command']}` — {res['wall_seconds'] / 60:.1f} min wall"
        + (f", {res['cpu_seconds'] / 60:.1f} min CPU" if "cpu_seconds" in res else "")
        + f" in all (imitation environment creation excluded). **CPU figures**: {res['machine']['cpu']}, "
        f"{res['machine']['cores']} cores shared with other work, torch limited to 1 thread on both sides; "
        "wall times are noisy and only comparable within this run.",
        "",
        f"Versions — robo_reward side: {', '.join(f'{k} {v}' for k, v in res['versions']['robo_reward'].items())}; "
        f"imitation side (own virtual environment): "
        f"{', '.join(f'{k} {v}' for k, v in res['versions'].get('imitation', {}).items()) or 'not run'}.",
        "",
        "## Setup",
        "",
        f"* Task `{s['env_id']}` (in both gymnasium versions), true reward "
        "`−‖fingertip − target‖ − ‖a‖²`. "
        f"Pool: {s['pool_episodes']} episodes ({s['pool_segments']} segments of {s['segment_length']} steps) "
        f"from a mix of behaviours ({', '.join(POLICIES)}); evaluation: {s['eval_transitions']} transitions "
        f"from {s['eval_episodes']} held-out episodes of the same mix.",
        f"* Teacher: Bradley–Terry over true segment returns, β = {s['teacher_beta']}, sampled labels "
        "(B-Pref `stoc` = imitation's `SyntheticGatherer` default). Seeds: "
        f"{', '.join(map(str, s['seeds']))} (pairs, labels and initial weights).",
        f"* **Same pairs** (B = {', '.join(map(str, s['same_pairs_budgets']))}): both learners get the first B of one "
        "list of uniformly random labelled pairs; "
        f"{s['fixed']['epochs']} epochs, batch {s['fixed']['batch_size']} pairs, lr {s['fixed']['lr']}; "
        "robo_reward: ensemble of 3 MLPs (64, 64), standardised inputs, Adam; imitation: BasicRewardNet (32, 32) "
        "with a RunningNorm input layer, AdamW (its trainer's optimiser); plus robo_reward with imitation's net "
        "shape (one ReLU MLP 32-32).",
        f"* **Own loop** (B = {', '.join(map(str, s['loop_budgets'])) or 'not run'}): imitation "
        "`PreferenceComparisons` on a `TrajectoryDataset` of the pool episodes "
        f"({s['loop']['num_iterations']} iterations, hyperbolic schedule, {s['loop']['initial_comparison_frac']:.0%} "
        f"initial comparisons, {s['loop']['epochs']} epochs per iteration, ×{s['loop']['initial_epoch_multiplier']:g} "
        "on the first, random fragments of any 25-step window: its training script's defaults); robo_reward "
        f"`PreferenceTrainer` with the same queries per round, {s['ours_loop_epochs']} epochs per round, candidates "
        "×10 for active selection, over the pool's fixed segments; imitation's active selection: the same loop with "
        "a RewardEnsemble of 3 nets (EnsembleTrainer, bagging) and ActiveSelectionFragmenter (variance of the "
        "members' logits over ×10 random candidates).",
        f"* Distance: EPIC (γ = {GAMMA}, {s['epic_n_mean']} samples per expectation) and Pearson "
        "`sqrt((1 − ρ)/2)` to the true reward on the held-out transitions; 0 = same reward up to shaping and "
        "scale, 0.5 = uncorrelated.",
        "",
        "## EPIC distance to the true reward (mean ± sd over seeds)",
        "",
        "| method | " + " | ".join(f"B = {b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for row in res["summary"]:
        cells = [_fmt(row["per_budget"].get(str(b), {}).get("epic")) for b in budgets]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    lines += ["", "References (not learned): " + "; ".join(
        f"{k}: EPIC {v['epic']:.3f}, Pearson {v['pearson']:.3f}" for k, v in res["references"].items()) + ".", ""]
    lines += ["## Pearson distance on held-out transitions", "",
              "| method | " + " | ".join(f"B = {b}" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for row in res["summary"]:
        cells = [_fmt(row["per_budget"].get(str(b), {}).get("pearson")) for b in budgets]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    targets = s["targets"]
    lines += ["", "## Queries needed (smallest budget with seed-mean EPIC ≤ target; per seed in brackets)", "",
              "| method | " + " | ".join(f"EPIC ≤ {t}" for t in targets) + " |", "|---|" + "---:|" * len(targets)]
    for row in res["summary"]:
        cells = []
        for t in targets:
            q = row["queries_needed"][str(t)]
            seeds = ", ".join("—" if v is None else str(v) for v in q["per_seed"])
            cells.append(f"{'—' if q['mean_curve'] is None else q['mean_curve']} [{seeds}]")
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    lines += ["", "— : not reached within the largest budget run for that method; in the other tables, not run.", "",
              "## Wall time of reward learning, seconds (mean ± sd over seeds)", "",
              "| method | " + " | ".join(f"B = {b}" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for row in res["summary"]:
        cells = [_fmt(row["per_budget"].get(str(b), {}).get("seconds"), 1) for b in budgets]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    if any("cpu_seconds" in v for row in res["summary"] for v in row["per_budget"].values()):
        lines += ["", "## CPU time of reward learning, seconds (process time, mean ± sd over seeds)", "",
                  "| method | " + " | ".join(f"B = {b}" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
        for row in res["summary"]:
            cells = [_fmt(row["per_budget"].get(str(b), {}).get("cpu_seconds"), 1) for b in budgets]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    lines += ["", "Same pairs: training only. Own loop: the whole loop (candidate drawing and active scoring, "
              "labelling, training). Both sides run single-threaded; CPU time is the steadier figure on a shared "
              "machine.", ""]
    if res.get("verdict"):
        lines += ["## Goal: no more queries than imitation for the same distance", ""] + res["verdict"] + [""]
    chk = res.get("checks")
    if chk:
        lines += [
            "## Checks",
            "",
            f"* Same teacher: imitation's `SyntheticGatherer(sample=False)` probabilities on the shared pairs differ "
            f"from robo_reward's teacher model by at most {chk['teacher_max_abs_prob_diff']:.1e}.",
            f"* Same environment: replaying a held-out episode's reset seed and actions in `{s['env_id']}` under "
            f"gymnasium {res['versions'].get('imitation', {}).get('gymnasium', '?')} reproduces its observations to "
            f"{chk['env_max_abs_obs_diff']:.1e} and rewards to {chk['env_max_abs_reward_diff']:.1e}.",
            f"* Same query schedule: robo_reward's rounds equal imitation's own schedule for every budget: "
            f"{chk['schedule_match']}.",
            "* imitation's learned nets are scored here from their exported weights; on a probe batch this "
            "evaluation matches the nets' own forward pass to "
            f"{chk.get('exported_net_max_abs_diff', float('nan')):.1e}.",
            "",
        ]
    lines += ["## Notes", ""] + [f"* {n}" for n in res["notes"]] + [""]
    if res.get("rerendered"):
        lines += ["(This report's text was written again from the recorded results with `--render`; the "
                  "measurements are those of the command above.)", ""]
    return "\n".join(line for line in lines if line is not None)


# =========================================================================== the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the data, run both libraries' arms, score every learned reward, and return the results."""
    import torch

    torch.set_num_threads(1)
    from robo_reward.rewards.preference import BPrefTeacher, bradley_terry_probability

    t_start = time.perf_counter()
    say = (lambda *_: None) if args.quiet else (lambda msg: print(msg, flush=True))
    budgets = sorted(set(args.budgets))
    loop_budgets = sorted(set(args.loop_budgets))
    all_budgets = sorted(set(budgets) | set(loop_budgets))
    schedules = {b: query_schedule(b, args.loop_iterations) for b in loop_budgets}

    say(f"rolling {args.pool_episodes} pool + {args.eval_episodes} evaluation episodes of {ENV_ID}")
    pool = rollout_episodes(args.pool_episodes, seed=10_000)
    held = rollout_episodes(args.eval_episodes, seed=90_000)
    segments = episode_segments(pool)
    transitions = eval_transitions(held, args.eval_transitions, seed=0)
    obs_dim, act_dim = segments.obs.shape[-1], segments.action.shape[-1]

    def score(fn: Callable[..., Any]) -> dict[str, float]:
        return reward_distances(fn, transitions, n_mean=args.epic_n_mean, seed=0)

    references = {
        "untrained robo_reward ensemble": score(ours_reward_fn(ours_model(obs_dim, act_dim, 0))),
        "control cost only (−‖a‖²)": score(lambda o, a, n=None: -np.square(np.asarray(a, np.float64)).sum(1)),
        "distance term only (−‖fingertip − target‖)": score(
            lambda o, a, n=None: -np.linalg.norm(np.asarray(o, np.float64)[:, 8:11], axis=1)),
    }

    # the shared labelled pairs of the "same pairs" arm
    data: dict[str, np.ndarray] = {
        **pool, "seg_obs": segments.obs, "seg_act": segments.action, "seg_next_obs": segments.next_obs,
        "seg_rew": segments.rewards,
        "check_seed": np.asarray(held["ep_seed"][0]), "check_obs": held["ep_obs"][0], "check_act": held["ep_act"][0],
        "check_rew": held["ep_rew"][0],
        "probe_obs": transitions.obs[:256].astype(np.float32), "probe_act": transitions.action[:256].astype(np.float32),
    }
    for seed in args.seeds:
        i, j = draw_pairs(len(segments), max(budgets), np.random.default_rng([seed, 3]))
        labels = BPrefTeacher(beta=TEACHER_BETA, seed=[seed, 5]).label(segments[i], segments[j])
        data.update({f"pairs_i_{seed}": i, f"pairs_j_{seed}": j, f"labels_{seed}": labels,
                     f"teacher_p_{seed}": bradley_terry_probability(TEACHER_BETA * segments.rewards[i].sum(1),
                                                                    TEACHER_BETA * segments.rewards[j].sum(1))})

    records: list[dict[str, Any]] = []

    def record(arm: str, library: str, method: str, seed: int, budget: int, fn: Callable[..., Any],
               seconds: float, cpu_seconds: float, labels: int) -> None:
        d = score(fn)
        records.append({"arm": arm, "library": library, "method": method, "seed": seed, "budget": budget,
                        "seconds": seconds, "cpu_seconds": cpu_seconds, "labels": labels, **d})
        say(f"  {method:<42s} seed={seed} B={budget:<5d} EPIC={d['epic']:.3f} Pearson={d['pearson']:.3f} "
            f"({seconds:.1f} s wall, {cpu_seconds:.1f} s CPU)")

    fixed = {"epochs": args.fixed_epochs, "batch_size": 32, "lr": 1e-3}
    say("robo_reward: same pairs")
    for seed in args.seeds:
        for b in budgets:
            i, j, lab = data[f"pairs_i_{seed}"][:b], data[f"pairs_j_{seed}"][:b], data[f"labels_{seed}"][:b]
            model, sec, cpu = run_ours_fixed(segments, i, j, lab, seed, **fixed)
            record("same pairs", "robo_reward", "same pairs · robo_reward", seed, b, ours_reward_fn(model), sec, cpu,
                   b)
            model, sec, cpu = run_ours_fixed(segments, i, j, lab, seed, **fixed, **IMITATION_SHAPED)
            record("same pairs", "robo_reward", SHAPED_METHOD, seed, b, ours_reward_fn(model), sec, cpu, b)
    if not args.no_loop:
        for sampler in ("disagreement", "uniform"):
            say(f"robo_reward: own loop ({sampler})")
            for seed in args.seeds:
                for b in loop_budgets:
                    model, sec, cpu, n_lab = run_ours_loop(segments, schedules[b], sampler, seed,
                                                           args.ours_loop_epochs)
                    record("own loop", "robo_reward", f"own loop · robo_reward ({sampler} queries)", seed, b,
                           ours_reward_fn(model), sec, cpu, n_lab)

    worker_cpu = 0.0
    versions = {"robo_reward": package_versions(("gymnasium", "mujoco", "torch", "numpy", "stable-baselines3"), python=False)}
    checks: dict[str, Any] = {}
    if not args.no_imitation:
        python = ensure_imitation_venv(Path(args.venv), log=say)
        with tempfile.TemporaryDirectory(prefix="imitation_pref_") as tmp:
            work = Path(tmp)
            np.savez(work / "data.npz", **data)
            arms = ["fixed"] + ([] if args.no_loop else ["loop"] + ([] if args.no_active else ["active"]))
            cfg = {
                "data": str(work / "data.npz"), "out_dir": str(work), "env_id": ENV_ID, "seeds": list(args.seeds),
                "budgets": budgets, "loop_budgets": loop_budgets, "arms": arms, "teacher_beta": TEACHER_BETA,
                "threads": 1, "fixed": fixed,
                "loop": {"num_iterations": args.loop_iterations, "epochs": 3, "initial_epoch_multiplier": 200.0,
                         "initial_comparison_frac": 0.1, "fragment_length": SEGMENT_LENGTH, "batch_size": 32,
                         "lr": 1e-3},
                "active": {"members": 3, "fragment_sample_factor": ACTIVE_SAMPLE_FACTOR},
            }
            say("imitation (its own virtual environment)")
            before = _cpu_seconds(resource.RUSAGE_CHILDREN)
            out = run_imitation_worker(python, cfg, work, quiet=args.quiet)
            worker_cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - before
            names = {"fixed": ("same pairs", "same pairs · imitation"),
                     "loop": ("own loop", "own loop · imitation (PreferenceComparisons)"),
                     "active": ("own loop", ACTIVE_METHOD)}
            probe_err = 0.0
            for rec in out["records"]:
                arm, method = names[rec["arm"]]
                fn = ensemble_reward_fn(rec["model"]) if isinstance(rec["model"], list) else mlp_reward_fn(rec["model"])
                probe_err = max(probe_err, fn.probe_error)
                record(arm, "imitation", method, rec["seed"], rec["budget"], fn,
                       rec["seconds"], rec["cpu_seconds"], rec["comparisons"])
            checks = dict(out["checks"])
            checks["exported_net_max_abs_diff"] = probe_err
            checks["schedule_match"] = all(checks["query_schedules"][str(b)] == schedules[b] for b in loop_budgets)
            versions["imitation"] = out["versions"]

    order = ["same pairs · robo_reward", SHAPED_METHOD, "same pairs · imitation", "own loop · robo_reward (disagreement queries)",
             "own loop · robo_reward (uniform queries)", "own loop · imitation (PreferenceComparisons)", ACTIVE_METHOD]
    records.sort(key=lambda r: (order.index(r["method"]) if r["method"] in order else 99, r["seed"], r["budget"]))
    summary = summarize(records, all_budgets, args.targets)
    res = {
        "command": "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "wall_seconds": time.perf_counter() - t_start,
        "cpu_seconds": _cpu_seconds(resource.RUSAGE_SELF) + worker_cpu,
        "machine": _machine(),
        "versions": versions,
        "settings": {
            "env_id": ENV_ID, "segment_length": SEGMENT_LENGTH, "budgets": all_budgets, "same_pairs_budgets": budgets,
            "loop_budgets": [] if args.no_loop else loop_budgets, "seeds": list(args.seeds),
            "targets": list(args.targets), "teacher_beta": TEACHER_BETA, "pool_episodes": args.pool_episodes,
            "pool_segments": len(segments), "eval_episodes": args.eval_episodes,
            "eval_transitions": len(transitions), "epic_n_mean": args.epic_n_mean, "fixed": fixed,
            "loop": {"num_iterations": args.loop_iterations, "epochs": 3, "initial_epoch_multiplier": 200.0,
                     "initial_comparison_frac": 0.1, "schedules": {str(b): schedules[b] for b in loop_budgets}},
            "active": None if args.no_loop or args.no_active else {
                "members": 3, "fragment_sample_factor": ACTIVE_SAMPLE_FACTOR, "uncertainty_on": "logit"},
            "ours_loop_epochs": args.ours_loop_epochs,
        },
        "references": references,
        "summary": summary,
        "verdict": verdict(summary, args.targets),
        "checks": checks,
        "records": records,
        "notes": NOTES,
    }
    return res


NOTES = [
    "The same-pairs arm isolates the reward learner (same data, same labels, same optimisation settings); the "
    "libraries still differ in their default reward model (robo_reward: an ensemble of three 64-64 MLPs whose mean "
    "is the reward; imitation: one 32-32 MLP) and optimiser (Adam vs AdamW with weight decay 0.01). The row with "
    "imitation's net shape removes the first difference; what remains is input standardisation (fitted once on the "
    "training pairs vs imitation's running statistics updated while training) and the optimiser.",
    "In the own-loop arm the query budgets and the teacher model are the same, the pairs are not: each library draws "
    "its own (robo_reward from the pool's fixed 25-step segments, imitation random 25-step windows of the same "
    "episodes) and labels them with its own random numbers. No agent is trained on either side: the "
    "data are the fixed pool, so the comparison is about reward learning, not RL.",
    "imitation's active selection row uses its own pieces (RewardEnsemble of three of its default nets, "
    "EnsembleTrainer with bagging, ActiveSelectionFragmenter on the variance of the members' logits) with "
    f"{ACTIVE_SAMPLE_FACTOR}× candidates, as robo_reward's disagreement row has; it is the like-for-like comparison "
    "with that row, and robo_reward's uniform-query row is the one for imitation's default random fragmenter.",
    "Reacher's true reward depends on (s, a) only; both libraries' nets read (s, a).",
    "On this evaluation mix most of the true reward's variance is the control cost: the reference reward "
    "−‖a‖² alone is closer to the truth than any learned reward here. The distances rank learners; they do not "
    "say that a learned reward has captured the reaching term.",
    "imitation's own loop is run with its training script's schedule, which trains 3 × 200 epochs on the first 10 % "
    "of the comparisons and 3 epochs per later iteration (made for interleaving with agent training); it was not "
    "tuned for a fixed pool.",
]


def verdict(summary: list[dict[str, Any]], targets: Sequence[float]) -> list[str]:
    """Sentences comparing queries needed by robo_reward and imitation in each arm (on the seed-mean curves)."""
    by = {row["method"]: row for row in summary}
    pairs = [("same pairs · robo_reward", "same pairs · imitation"), (SHAPED_METHOD, "same pairs · imitation"),
             ("own loop · robo_reward (disagreement queries)", "own loop · imitation (PreferenceComparisons)"),
             ("own loop · robo_reward (uniform queries)", "own loop · imitation (PreferenceComparisons)"),
             ("own loop · robo_reward (disagreement queries)", ACTIVE_METHOD)]
    out = []
    for ours, theirs in pairs:
        if ours not in by or theirs not in by:
            continue
        parts = []
        for t in targets:
            a = by[ours]["queries_needed"][str(t)]["mean_curve"]
            b = by[theirs]["queries_needed"][str(t)]["mean_curve"]
            if a is None and b is None:
                parts.append(f"EPIC ≤ {t}: neither reached it")
            elif b is None:
                parts.append(f"EPIC ≤ {t}: robo_reward {a}, imitation did not reach it (met)")
            elif a is None:
                parts.append(f"EPIC ≤ {t}: imitation {b}, robo_reward did not reach it (not met)")
            else:
                parts.append(f"EPIC ≤ {t}: robo_reward {a} vs imitation {b} ({'met' if a <= b else 'not met'})")
        out.append(f"* {ours} vs {theirs}: " + "; ".join(parts) + ".")
    return out


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return float(usage.ru_utime + usage.ru_stime)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cores": os.cpu_count()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` shrinks everything for a smoke run)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, budgets 50 and 200, small pool: a smoke run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400, 800],
                    help="query budgets of the same-pairs arm")
    ap.add_argument("--loop-budgets", type=int, nargs="+", default=[50, 100, 200, 400],
                    help="query budgets of the own-loop arm (imitation's loop costs ~70 pair passes per query)")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.25, 0.2])
    ap.add_argument("--pool-episodes", type=int, default=800)
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--eval-transitions", type=int, default=2000)
    ap.add_argument("--epic-n-mean", type=int, default=64)
    ap.add_argument("--fixed-epochs", type=int, default=30)
    ap.add_argument("--ours-loop-epochs", type=int, default=50)
    ap.add_argument("--loop-iterations", type=int, default=5)
    ap.add_argument("--no-loop", action="store_true", help="only the same-pairs arm")
    ap.add_argument("--no-active", action="store_true", help="skip imitation's active-selection loop")
    ap.add_argument("--no-imitation", action="store_true", help="robo_reward's side only (no imitation environment)")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="the imitation virtual environment (created if missing)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--render", metavar="JSON", help="write the report again from a results file, without running")
    ap.add_argument("--out", default="benchmarks/results/imitation_pref")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.loop_budgets = args.seeds[:1], [50, 200], [50, 200]
        args.pool_episodes, args.eval_episodes, args.eval_transitions = 200, 40, 1000
        args.ours_loop_epochs = min(args.ours_loop_epochs, 30)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run (or re-read ``--render``), write ``<out>.json`` and ``<out>.md``, print the report."""
    args = parse_args(argv)
    if args.render:
        # the report's text (verdict, notes) from the current code, the measurements as recorded
        res = json.loads(Path(args.render).read_text())
        res["verdict"] = verdict(res["summary"], res["settings"]["targets"])
        res["notes"] = NOTES
        res["rerendered"] = True
    else:
        res = run(args)
    write_result_files(args.out, res, markdown(res))


if __name__ == "__main__":
    main()

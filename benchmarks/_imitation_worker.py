"""The imitation side of ``benchmarks/imitation_pref.py``, run by the imitation virtual environment's Python.

``imitation`` 1.0.1 pins gymnasium 0.29 and Stable-Baselines3 2.2.1, so it cannot be
imported next to robo_reward; ``imitation_pref.py`` writes the shared data (segment pool,
episodes, labelled pairs) to an ``.npz`` file plus a JSON config, runs this script with
that environment's interpreter and reads back:

* ``results.json`` — one record per (arm, seed, budget): wall and CPU time of reward learning,
  comparisons used, and a few checks (teacher model, environment, query schedule);
* ``models/<arm>_s<seed>_b<budget>.npz`` — each learned reward net as plain arrays (its
  input normalisation and linear layers, :func:`export_mlp`) with its own output on a probe
  batch, so the main script scores both libraries' rewards with the same metric code and
  checks that it evaluates imitation's net exactly.

Arms (the pieces are imitation's own: ``BasicRewardNet`` with a ``RunningNorm`` input
layer, ``PreferenceModel``, ``CrossEntropyRewardLoss``, ``BasicRewardTrainer``,
``RandomFragmenter``, ``SyntheticGatherer``, ``PreferenceDataset``,
``PreferenceComparisons`` with a ``TrajectoryDataset`` generator):

* ``fixed`` — the reward trainer on exactly the labelled pairs the main script drew (and
  labelled with its teacher), the first ``budget`` of them;
* ``loop`` — ``PreferenceComparisons.train(total_timesteps=0, total_comparisons=budget)``
  on the pool episodes: imitation's own query schedule, fragmenter and synthetic teacher;
* ``active`` — the same loop with imitation's active selection: a ``RewardEnsemble`` of
  three such nets trained by ``EnsembleTrainer`` (bagging), and ``ActiveSelectionFragmenter``
  choosing the pairs with the largest variance of the members' logits among
  ``fragment_sample_factor`` times as many random candidates. Each member is exported
  (``models/active_s<seed>_b<budget>_m<k>.npz``); the ensemble's reward is their mean.

Usage (normally only through ``imitation_pref.py``)::

    benchmarks/_venvs/imitation/bin/python benchmarks/_imitation_worker.py CONFIG.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def build_net(spaces: tuple[Any, Any], seed: int) -> Any:
    """The reward net of imitation's preference-comparisons script: ``BasicRewardNet`` on (s, a), ``RunningNorm`` inputs."""
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm

    torch.manual_seed(seed)
    return BasicRewardNet(spaces[0], spaces[1], use_state=True, use_action=True, use_next_state=False,
                          use_done=False, normalize_input_layer=RunningNorm)


def export_mlp(net: Any, path: Path, probe_obs: np.ndarray, probe_act: np.ndarray) -> None:
    """Write the reward net as plain arrays: the ops of its MLP in order, and its output on a probe batch.

    ``ops`` (JSON) lists ``norm`` (``(x − mean) / scale``, from ``RunningNorm``), ``linear``
    (``x Wᵀ + b``), ``relu`` and ``squeeze``; ``p<k>_*`` hold the arrays of op ``k``;
    ``probe_out`` is the net's own output (its ``forward`` in eval mode) on
    ``probe_obs``/``probe_act``, which the reader compares against. Any other layer type
    raises, so nothing is silently dropped.
    """
    from imitation.util.networks import BaseNorm, SqueezeLayer

    if getattr(net, "use_next_state", False) or getattr(net, "use_done", False):
        raise ValueError("export_mlp handles reward nets on (state, action) only")
    net.eval()
    ops: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    for k, layer in enumerate(net.mlp):
        if isinstance(layer, BaseNorm):
            ops.append("norm")
            arrays[f"p{k}_mean"] = layer.running_mean.detach().numpy().astype(np.float32)
            arrays[f"p{k}_scale"] = torch.sqrt(layer.running_var + layer.eps).detach().numpy().astype(np.float32)
        elif isinstance(layer, torch.nn.Linear):
            ops.append("linear")
            arrays[f"p{k}_W"] = layer.weight.detach().numpy().astype(np.float32)
            arrays[f"p{k}_b"] = layer.bias.detach().numpy().astype(np.float32)
        elif isinstance(layer, torch.nn.ReLU):
            ops.append("relu")
        elif isinstance(layer, SqueezeLayer):
            ops.append("squeeze")
        else:
            raise TypeError(f"export_mlp cannot write a {type(layer).__name__} layer")
    obs = torch.as_tensor(probe_obs, dtype=torch.float32)
    act = torch.as_tensor(probe_act, dtype=torch.float32)
    with torch.no_grad():
        out = net(obs, act, obs, torch.zeros(len(obs))).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, ops=np.asarray(json.dumps(ops)), probe_obs=probe_obs, probe_act=probe_act, probe_out=out, **arrays)


def fragments(data: Any, idx: np.ndarray) -> list[Any]:
    """Segments ``idx`` of the pool as imitation ``TrajectoryWithRew`` fragments (L steps, L + 1 observations)."""
    from imitation.data.types import TrajectoryWithRew

    out = []
    for i in idx:
        obs = np.concatenate([data["seg_obs"][i], data["seg_next_obs"][i][-1:]]).astype(np.float32)
        out.append(TrajectoryWithRew(obs=obs, acts=data["seg_act"][i].astype(np.float32), infos=None,
                                     rews=data["seg_rew"][i].astype(np.float64), terminal=False))
    return out


def episodes(data: Any) -> list[Any]:
    """The pool episodes as imitation trajectories (Reacher episodes end by time limit: not terminal)."""
    from imitation.data.types import TrajectoryWithRew

    return [
        TrajectoryWithRew(obs=data["ep_obs"][e].astype(np.float32), acts=data["ep_act"][e].astype(np.float32),
                          infos=None, rews=data["ep_rew"][e].astype(np.float64), terminal=False)
        for e in range(data["ep_obs"].shape[0])
    ]


def quiet_logger(folder: Path) -> Any:
    """An imitation logger that writes nothing to the terminal."""
    from imitation.util import logger as imit_logger

    return imit_logger.configure(folder=folder, format_strs=[])


def run_fixed(
    data: Any, cfg: dict[str, Any], spaces: tuple[Any, Any], seed: int, budget: int, log: Any
) -> dict[str, Any]:
    """Train imitation's reward trainer on the first ``budget`` shared labelled pairs."""
    from imitation.algorithms import preference_comparisons as pc

    i, j = data[f"pairs_i_{seed}"][:budget], data[f"pairs_j_{seed}"][:budget]
    labels = data[f"labels_{seed}"][:budget].astype(np.float32)
    net = build_net(spaces, seed)
    model = pc.PreferenceModel(net)
    trainer = pc.BasicRewardTrainer(model, pc.CrossEntropyRewardLoss(), rng=np.random.default_rng(seed),
                                    batch_size=cfg["fixed"]["batch_size"], epochs=cfg["fixed"]["epochs"],
                                    lr=cfg["fixed"]["lr"], custom_logger=log)
    dataset = pc.PreferenceDataset()
    dataset.push(list(zip(fragments(data, i), fragments(data, j))), labels)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train(dataset)
    return {"net": net, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "comparisons": int(len(dataset))}


def _train_loop(data: Any, cfg: dict[str, Any], net: Any, fragmenter: Any, trainer: Any, rng: Any,
                budget: int, log: Any) -> dict[str, Any]:
    """``PreferenceComparisons.train(total_timesteps=0, total_comparisons=budget)`` on the pool episodes (no agent)."""
    from imitation.algorithms import preference_comparisons as pc

    loop = cfg["loop"]
    algo = pc.PreferenceComparisons(
        pc.TrajectoryDataset(episodes(data), rng=rng, custom_logger=log),
        net,
        num_iterations=loop["num_iterations"],
        fragmenter=fragmenter,
        preference_gatherer=pc.SyntheticGatherer(temperature=1.0 / cfg["teacher_beta"], rng=rng, custom_logger=log),
        reward_trainer=trainer,
        fragment_length=loop["fragment_length"],
        transition_oversampling=1,
        initial_comparison_frac=loop["initial_comparison_frac"],
        initial_epoch_multiplier=loop["initial_epoch_multiplier"],
        custom_logger=log,
        query_schedule="hyperbolic",
    )
    t0, c0 = time.perf_counter(), time.process_time()
    with open(os.devnull, "w") as devnull:  # PreferenceComparisons prints its query schedule
        stdout, sys.stdout = sys.stdout, devnull
        try:
            algo.train(total_timesteps=0, total_comparisons=budget)
        finally:
            sys.stdout = stdout
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "comparisons": int(len(algo.dataset))}


def run_loop(
    data: Any, cfg: dict[str, Any], spaces: tuple[Any, Any], seed: int, budget: int, log: Any
) -> dict[str, Any]:
    """imitation's ``PreferenceComparisons`` on the pool episodes with ``total_comparisons=budget`` (no agent)."""
    from imitation.algorithms import preference_comparisons as pc

    loop = cfg["loop"]
    rng = np.random.default_rng(seed)
    net = build_net(spaces, seed)
    model = pc.PreferenceModel(net)
    trainer = pc.BasicRewardTrainer(model, pc.CrossEntropyRewardLoss(), rng=rng, batch_size=loop["batch_size"],
                                    epochs=loop["epochs"], lr=loop["lr"], custom_logger=log)
    fragmenter = pc.RandomFragmenter(rng=rng, warning_threshold=0, custom_logger=log)
    return {"net": net, **_train_loop(data, cfg, net, fragmenter, trainer, rng, budget, log)}


def run_active(
    data: Any, cfg: dict[str, Any], spaces: tuple[Any, Any], seed: int, budget: int, log: Any
) -> dict[str, Any]:
    """``run_loop`` with imitation's active selection over a reward ensemble (see the module docstring)."""
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import RewardEnsemble

    loop, active = cfg["loop"], cfg["active"]
    rng = np.random.default_rng(seed)
    members = [build_net(spaces, seed * 1000 + k) for k in range(active["members"])]
    net = RewardEnsemble(spaces[0], spaces[1], members)
    model = pc.PreferenceModel(net)
    trainer = pc.EnsembleTrainer(model, pc.CrossEntropyRewardLoss(), rng=rng, batch_size=loop["batch_size"],
                                 epochs=loop["epochs"], lr=loop["lr"], custom_logger=log)
    fragmenter = pc.ActiveSelectionFragmenter(
        model, pc.RandomFragmenter(rng=rng, warning_threshold=0, custom_logger=log),
        fragment_sample_factor=active["fragment_sample_factor"], uncertainty_on="logit", custom_logger=log,
    )
    return {"members": list(net.members), **_train_loop(data, cfg, net, fragmenter, trainer, rng, budget, log)}


def query_schedule(total: int, iterations: int, initial_frac: float) -> list[int]:
    """The comparisons per iteration that ``PreferenceComparisons.train`` asks for (its own helpers)."""
    from imitation.algorithms.preference_comparisons import QUERY_SCHEDULES
    from imitation.util import util

    initial = int(total * initial_frac)
    probs = np.vectorize(QUERY_SCHEDULES["hyperbolic"])(np.linspace(0, 1, iterations))
    probs = probs / probs.sum()
    return [initial] + util.oric(probs * (total - initial)).tolist()


def checks(data: Any, cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """Same teacher model and same environment on both sides."""
    import gymnasium as gym
    from imitation.algorithms import preference_comparisons as pc

    out: dict[str, Any] = {}
    # imitation's synthetic teacher, asked for its probabilities, on the shared pairs
    seed = cfg["seeds"][0]
    n = min(500, len(data[f"pairs_i_{seed}"]))
    i, j = data[f"pairs_i_{seed}"][:n], data[f"pairs_j_{seed}"][:n]
    gatherer = pc.SyntheticGatherer(temperature=1.0 / cfg["teacher_beta"], sample=False, custom_logger=log)
    p = gatherer(list(zip(fragments(data, i), fragments(data, j))))
    out["teacher_max_abs_prob_diff"] = float(np.max(np.abs(p - data[f"teacher_p_{seed}"][:n])))
    # the same env id, reset seed and actions under gymnasium 0.29 reproduce the episode recorded under the main venv
    env = gym.make(cfg["env_id"])
    obs, _ = env.reset(seed=int(data["check_seed"]))
    obs_err = [float(np.max(np.abs(obs - data["check_obs"][0])))]
    rew_err = []
    for t, action in enumerate(data["check_act"]):
        obs, reward, *_ = env.step(action)
        obs_err.append(float(np.max(np.abs(obs - data["check_obs"][t + 1]))))
        rew_err.append(abs(float(reward) - float(data["check_rew"][t])))
    out["env_max_abs_obs_diff"] = max(obs_err)
    out["env_max_abs_reward_diff"] = max(rew_err)
    out["env_observation_space"] = str(env.observation_space)
    env.close()
    loop = cfg["loop"]
    out["query_schedules"] = {
        str(b): query_schedule(b, loop["num_iterations"], loop["initial_comparison_frac"]) for b in cfg["loop_budgets"]
    }
    return out


def versions() -> dict[str, str]:
    """Versions of the packages that matter on this side."""
    from importlib.metadata import version

    return {p: version(p) for p in ("imitation", "gymnasium", "stable-baselines3", "mujoco", "torch", "numpy")}


def main(argv: list[str]) -> int:
    """Run the arms listed in the config and write ``results.json`` and the traced models."""
    import gymnasium as gym

    cfg = json.loads(Path(argv[1]).read_text())
    torch.set_num_threads(int(cfg.get("threads", 1)))
    out_dir = Path(cfg["out_dir"])
    data = dict(np.load(cfg["data"]))
    env = gym.make(cfg["env_id"])
    spaces = (env.observation_space, env.action_space)
    env.close()
    runners = {"fixed": run_fixed, "loop": run_loop, "active": run_active}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        log = quiet_logger(Path(tmp))
        for arm in cfg["arms"]:
            for seed in cfg["seeds"]:
                for budget in cfg["budgets"] if arm == "fixed" else cfg["loop_budgets"]:  # loop and active
                    res = runners[arm](data, cfg, spaces, seed, budget, log)
                    nets = res["members"] if "members" in res else [res["net"]]
                    paths = []
                    for k, member in enumerate(nets):
                        suffix = f"_m{k}" if "members" in res else ""
                        path = out_dir / "models" / f"{arm}_s{seed}_b{budget}{suffix}.npz"
                        export_mlp(member, path, data["probe_obs"], data["probe_act"])
                        paths.append(str(path))
                    records.append({"arm": arm, "seed": seed, "budget": budget, "seconds": res["seconds"],
                                    "cpu_seconds": res["cpu_seconds"], "comparisons": res["comparisons"],
                                    "model": paths[0] if len(paths) == 1 else paths})
                    print(f"imitation {arm} seed={seed} budget={budget}: {res['seconds']:.1f} s wall, "
                          f"{res['cpu_seconds']:.1f} s CPU", flush=True)
        result = {"records": records, "checks": checks(data, cfg, log), "versions": versions()}
    (out_dir / "results.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

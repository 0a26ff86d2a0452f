"""Offline datasets: collect by running policies through the wrappers, save, export to Minari, relabel.

An :class:`OfflineDataset` holds flat per-transition arrays in time order (the layout
D4RL and most offline-RL code use): ``observations``, ``actions``, ``rewards``,
``next_observations``, ``terminations``, ``truncations``, ``env_rewards`` (the env's
own reward, kept when ``rewards`` are relabelled), ``episode_ids``, selected ``info``
keys as float arrays, and optionally the ``frames`` rendered after each step.

Files: :meth:`OfflineDataset.save` writes one ``.npz`` (the arrays above plus a JSON
``metadata`` string: task card, policy mixture, seed, reward used); :func:`load_dataset`
reads it. :func:`to_minari` / :func:`from_minari` convert to and from Farama's Minari
format (``pip install "minari[hdf5]"``) — episodes with ``T + 1`` observations,
``T`` actions/rewards/terminations/truncations, info arrays; frames are not exported.

:func:`relabel` recomputes ``rewards`` with any reward plugin, in batches, episode by
episode (so plugins with per-episode state see their resets).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..core.errors import ConfigError, MissingDependencyError

#: ``info`` keys stored by default when present (MetaWorld's phase signals and success).
DEFAULT_INFO_KEYS = ("success", "is_success", "near_object", "grasp_success", "obj_to_target")
FORMAT = "robo_reward.offline/1"


@dataclass
class OfflineDataset:
    """Transitions in time order, episode after episode (see the module docstring for the fields)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_ids: np.ndarray
    env_rewards: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    frames: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def n_episodes(self) -> int:
        """Number of episodes."""
        return int(len(np.unique(self.episode_ids)))

    def episode_slices(self) -> list[slice]:
        """One ``slice`` of rows per episode, in order."""
        ids = self.episode_ids
        if len(ids) == 0:
            return []
        cut = np.flatnonzero(np.diff(ids) != 0) + 1
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [len(ids)]])
        return [slice(int(a), int(b)) for a, b in zip(starts, ends)]

    def episode_returns(self, env_reward: bool = False) -> np.ndarray:
        """Undiscounted return of every episode (of ``rewards``, or of ``env_rewards``)."""
        r = self.env_rewards if env_reward else self.rewards
        return np.array([float(r[s].sum()) for s in self.episode_slices()])

    def episode_success(self, key: str = "is_success") -> np.ndarray:
        """Whether each episode reached success at any step (from the stored info ``key``)."""
        if key not in self.infos:
            raise ConfigError(f"the dataset stores no info key {key!r}; it has {sorted(self.infos)}")
        return np.array([bool(np.any(self.infos[key][s] > 0)) for s in self.episode_slices()])

    def save(self, path: str | Path) -> Path:
        """Write the dataset to one ``.npz`` file (compressed when it holds frames)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations",
                      "episode_ids", "env_rewards")
        }
        arrays.update({f"info/{k}": v for k, v in self.infos.items()})
        if self.frames is not None:
            arrays["frames"] = self.frames
        arrays["metadata"] = np.array(json.dumps({"format": FORMAT, **self.metadata}, default=str))
        with open(path, "wb") as f:
            (np.savez_compressed if self.frames is not None else np.savez)(f, **arrays)
        return path


def load_dataset(path: str | Path) -> OfflineDataset:
    """Read a dataset written by :meth:`OfflineDataset.save`.

    Raises:
        ConfigError: the file is missing or is not a robo_reward offline dataset.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"dataset {path} does not exist; collect one with collect_dataset()")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            if meta.pop("format", None) != FORMAT:
                raise ConfigError(f"{path} is not a robo_reward offline dataset ({FORMAT})")
            ds = OfflineDataset(
                **{k: z[k] for k in ("observations", "actions", "rewards", "next_observations", "terminations",
                                     "truncations", "episode_ids", "env_rewards")},
                infos={k[5:]: z[k] for k in z.files if k.startswith("info/")},
                frames=z["frames"] if "frames" in z.files else None,
                metadata=meta,
            )
    except (KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"{path} is not a robo_reward offline dataset: {exc}") from exc
    return ds


# ----------------------------------------------------------------------------- policies


def _metaworld_expert(card: Any) -> Callable[[np.ndarray], np.ndarray]:
    if card.family != "metaworld":
        raise ConfigError(f"scripted experts exist only for MetaWorld tasks, not {card.name!r} ({card.family})")
    try:
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as exc:
        raise MissingDependencyError("metaworld", "metaworld", "scripted MetaWorld experts") from exc
    env_name = card.env_kwargs.get("env_name")
    if env_name not in ENV_POLICY_MAP:
        raise ConfigError(f"MetaWorld has no scripted policy for {env_name!r}")
    import warnings

    pol = ENV_POLICY_MAP[env_name]()

    def act(obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Constant(s) may be too high" on every call
            return np.asarray(pol.get_action(obs), dtype=np.float32)

    return act


def _parse_mixture(policy: str | Mapping[str, float]) -> dict[str, float]:
    if isinstance(policy, str):
        mix = {}
        for part in policy.split("+"):
            name, _, w = part.partition("@")
            mix[name.strip()] = float(w) if w else 1.0
    else:
        mix = {str(k): float(v) for k, v in policy.items()}
    for name in mix:
        base = name.partition(":")[0]
        if base not in ("expert", "noisy", "random"):
            raise ConfigError(f"unknown policy {name!r}: use 'expert', 'noisy[:std]' or 'random' (or a mixture)")
    total = sum(mix.values())
    if total <= 0:
        raise ConfigError("policy mixture weights must sum to a positive number")
    return {k: v / total for k, v in mix.items()}


def collect_dataset(
    task: Any,
    n_episodes: int = 10,
    policy: str | Mapping[str, float] | Callable[[np.ndarray], np.ndarray] = "expert",
    seed: int = 0,
    max_steps: int | None = None,
    frames: bool = False,
    render_overrides: Mapping[str, Any] | None = None,
    info_keys: tuple[str, ...] = DEFAULT_INFO_KEYS,
    reward: Any = None,
    progress: bool = False,
) -> OfflineDataset:
    """Run a policy (or a mixture of policies) in a task card's env and record the transitions.

    Args:
        task: a task card name, path or :class:`~robo_reward.envs.cards.TaskCard`.
        n_episodes: episodes to record.
        policy: ``"expert"`` (MetaWorld's scripted policy), ``"noisy:0.3"`` (expert plus
            Gaussian action noise of that std, clipped to the action bounds), ``"random"``,
            a mixture such as ``"expert@0.5+noisy:0.5@0.3+random@0.2"`` or
            ``{"expert": 0.5, "random": 0.5}`` (one policy drawn per episode), or a
            callable ``obs -> action``.
        seed: seeds the env, the mixture draws and the noise.
        max_steps: cut episodes at this many steps (default: the card's time limit).
        frames: also store the frame rendered after each step (``uint8[N, H, W, 3]``).
        render_overrides: e.g. ``{"width": 64, "height": 64}`` for small frames.
        info_keys: ``info`` entries stored (as float arrays) when the env provides them.
        reward: an optional reward spec to wrap the env with (``rewards`` then hold it).
        progress: show a progress bar.
    """
    from ..envs import load_card, make_env

    card = load_card(task)
    rng = np.random.default_rng(seed)
    env = make_env(card, reward=reward, seed=seed, render_mode="rgb_array" if frames else None,
                   render_overrides=render_overrides)
    low, high = env.action_space.low, env.action_space.high
    if callable(policy):
        mix, custom = {"custom": 1.0}, policy
    else:
        mix, custom = _parse_mixture(policy), None
    expert = _metaworld_expert(card) if any(k.startswith(("expert", "noisy")) for k in mix) else None
    names, probs = list(mix), np.array(list(mix.values()))
    cols: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc", "ep", "env_rew")}
    infos: dict[str, list] = {}
    frame_list: list[np.ndarray] = []
    chosen: list[str] = []
    it = range(int(n_episodes))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"collect {card.name}")
    try:
        for ep in it:
            name = names[int(rng.choice(len(names), p=probs))]
            chosen.append(name)
            obs, _ = env.reset(seed=int(seed) * 100_003 + ep)
            t = 0
            while True:
                base = name.partition(":")[0]
                if custom is not None:
                    a = np.asarray(custom(obs), dtype=np.float32)
                elif base == "random":
                    a = rng.uniform(low, high).astype(np.float32)
                else:
                    a = expert(obs)
                    if base == "noisy":
                        std = float(name.partition(":")[2] or 0.3)
                        a = np.clip(a + rng.normal(0.0, std, a.shape), low, high).astype(np.float32)
                nobs, r, term, trunc, info = env.step(a)
                t += 1
                if max_steps is not None and t >= max_steps:
                    trunc = True
                cols["obs"].append(np.asarray(obs, np.float32))
                cols["act"].append(a)
                cols["rew"].append(float(r))
                cols["next"].append(np.asarray(nobs, np.float32))
                cols["term"].append(bool(term))
                cols["trunc"].append(bool(trunc))
                cols["ep"].append(ep)
                cols["env_rew"].append(float(info.get("env_reward", r)))
                for k in info_keys:
                    if k in info:
                        infos.setdefault(k, []).append(float(info[k]))
                if frames:
                    frame_list.append(np.asarray(env.render(), np.uint8))
                obs = nobs
                if term or trunc:
                    break
    finally:
        env.close()
    n = len(cols["rew"])
    return OfflineDataset(
        observations=np.stack(cols["obs"]),
        actions=np.stack(cols["act"]).astype(np.float32),
        rewards=np.asarray(cols["rew"], np.float32),
        next_observations=np.stack(cols["next"]),
        terminations=np.asarray(cols["term"], bool),
        truncations=np.asarray(cols["trunc"], bool),
        episode_ids=np.asarray(cols["ep"], np.int64),
        env_rewards=np.asarray(cols["env_rew"], np.float32),
        infos={k: np.asarray(v, np.float32) for k, v in infos.items() if len(v) == n},
        frames=np.stack(frame_list) if frames else None,
        metadata={"task": card.name, "policy": policy if not callable(policy) else "custom", "seed": int(seed),
                  "episode_policies": chosen, "reward": None if reward is None else str(reward)},
    )


# ----------------------------------------------------------------------------- relabelling


def relabel(dataset: OfflineDataset, reward: Any, batch_size: int = 256, task: Any = None,
            progress: bool = False) -> OfflineDataset:
    """Return a copy of ``dataset`` whose ``rewards`` come from the reward plugin ``reward``.

    The plugin sees the same :class:`~robo_reward.core.types.TransitionBatch` fields it
    would see online (observations, actions, next observations, stored info keys as
    ``infos``, frames when stored), in batches of up to ``batch_size`` rows of one
    episode, with :meth:`~robo_reward.core.types.RewardPlugin.reset` before each episode.
    ``env_rewards`` are untouched; the plugin's terms are stored as ``infos["term/<name>"]``.
    ``task`` (default: the dataset's recorded task card) is passed to rewards that take one.

    Raises:
        ConfigError: the plugin needs frames and the dataset has none.
    """
    from ..core.registry import make_reward
    from ..core.types import TransitionBatch

    if task is None and dataset.metadata.get("task"):
        from ..envs import load_card

        try:
            task = load_card(dataset.metadata["task"])
        except ConfigError:
            task = None
    plugin = make_reward(reward, task=task)
    if "frames" in plugin.requires and dataset.frames is None:
        raise ConfigError(f"reward {plugin.name!r} scores frames; collect the dataset with frames=True")
    n = len(dataset)
    out = np.empty(n, np.float32)
    terms: dict[str, np.ndarray] = {}
    keys = list(dataset.infos)
    slices = dataset.episode_slices()
    if progress:
        from tqdm import tqdm

        slices = tqdm(slices, desc="relabel")
    for ep in slices:
        plugin.reset(np.ones(1, dtype=bool))
        for a in range(ep.start, ep.stop, batch_size):
            b = min(a + batch_size, ep.stop)
            rows = slice(a, b)
            m = b - a
            batch = TransitionBatch(
                terminated=dataset.terminations[rows],
                truncated=dataset.truncations[rows],
                env_reward=dataset.env_rewards[rows],
                env_ids=np.zeros(m, np.int64),
                obs=dataset.observations[rows] if "obs" in plugin.requires else None,
                action=dataset.actions[rows] if "action" in plugin.requires else None,
                next_obs=dataset.next_observations[rows] if "next_obs" in plugin.requires else None,
                infos=[{k: dataset.infos[k][i] for k in keys} for i in range(a, b)] if "info" in plugin.requires
                else None,
                frames=dataset.frames[rows] if "frames" in plugin.requires else None,
            )
            res = plugin(batch)
            out[rows] = res.reward
            for k, v in res.terms.items():
                terms.setdefault(k, np.zeros(n, np.float32))[rows] = v
    infos = {k: v for k, v in dataset.infos.items() if not k.startswith("term/")}
    infos.update({f"term/{k}": v for k, v in terms.items()})
    meta = {**dataset.metadata, "reward": reward if isinstance(reward, (str, dict)) else plugin.name}
    return replace(dataset, rewards=out, infos=infos, metadata=meta)


# ----------------------------------------------------------------------------- Minari


def _require_minari():
    try:
        import minari
    except ImportError as exc:
        raise MissingDependencyError("minari[hdf5]", None, "Minari datasets") from exc
    return minari


def to_minari(dataset: OfflineDataset, dataset_id: str, data_path: str | Path | None = None,
              env_id: str | None = None) -> Any:
    """Write ``dataset`` as a Minari dataset ``dataset_id`` (e.g. ``"robo_reward/pick-place/expert-v0"``).

    ``data_path`` sets Minari's dataset root (``MINARI_DATASETS_PATH``) for this call.
    Returns the :class:`minari.MinariDataset`.
    """
    minari = _require_minari()
    from minari.data_collector import EpisodeBuffer
    import gymnasium as gym

    buffers = []
    for i, s in enumerate(dataset.episode_slices()):
        obs = np.concatenate([dataset.observations[s], dataset.next_observations[s][-1:]])
        infos = {k: np.concatenate([[0.0], v[s]]).astype(np.float32)
                 for k, v in dataset.infos.items() if not k.startswith("term/")}
        infos["env_reward"] = np.concatenate([[0.0], dataset.env_rewards[s]]).astype(np.float32)
        buffers.append(EpisodeBuffer(id=i, observations=list(obs), actions=list(dataset.actions[s]),
                                     rewards=list(dataset.rewards[s].astype(np.float64)),
                                     terminations=list(dataset.terminations[s]),
                                     truncations=list(dataset.truncations[s]), infos=infos))
    obs_space = gym.spaces.Box(-np.inf, np.inf, dataset.observations.shape[1:], np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, dataset.actions.shape[1:], np.float32)
    old = os.environ.get("MINARI_DATASETS_PATH")
    if data_path is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(data_path)
    try:
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env_id, observation_space=obs_space, action_space=act_space,
            algorithm_name=str(dataset.metadata.get("policy")), author="robo_reward",
            description=json.dumps(dataset.metadata, default=str), data_format="hdf5",
        )
    finally:
        if data_path is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old


def minari_description(mds: Any) -> str | None:
    """The description stored with a loaded Minari dataset (``to_minari`` keeps the metadata there as JSON)."""
    storage = getattr(mds, "storage", None)
    desc = (getattr(storage, "metadata", None) or {}).get("description") if storage is not None else None
    if desc is None:
        desc = getattr(getattr(mds, "spec", None), "description", None)
    return None if desc is None else str(desc)


def from_minari(dataset_id: str, data_path: str | Path | None = None) -> OfflineDataset:
    """Read a local Minari dataset (any producer) into an :class:`OfflineDataset`.

    Flat ``Box`` observations only. ``env_rewards`` come from an ``env_reward`` info
    array when present, else equal ``rewards``.
    """
    minari = _require_minari()
    old = os.environ.get("MINARI_DATASETS_PATH")
    if data_path is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(data_path)
    try:
        mds = minari.load_dataset(dataset_id)
        cols: dict[str, list] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc", "ep", "env")}
        infos: dict[str, list] = {}
        for i, ep in enumerate(mds.iterate_episodes()):
            o = np.asarray(ep.observations, np.float32)
            if o.ndim != 2:
                raise ConfigError(f"Minari dataset {dataset_id!r} has non-flat observations {o.shape}")
            T = len(ep.actions)
            cols["obs"].append(o[:-1])
            cols["next"].append(o[1:])
            cols["act"].append(np.asarray(ep.actions, np.float32))
            cols["rew"].append(np.asarray(ep.rewards, np.float32))
            cols["term"].append(np.asarray(ep.terminations, bool))
            cols["trunc"].append(np.asarray(ep.truncations, bool))
            cols["ep"].append(np.full(T, i, np.int64))
            ei = ep.infos or {}
            cols["env"].append(np.asarray(ei["env_reward"][1:], np.float32) if "env_reward" in ei else cols["rew"][-1])
            for k, v in ei.items():
                v = np.asarray(v)
                if k != "env_reward" and v.ndim == 1 and len(v) == T + 1:
                    infos.setdefault(k, []).append(v[1:].astype(np.float32))
        meta = {"minari_id": dataset_id}
        try:
            meta.update(json.loads(minari_description(mds) or "{}"))
        except (ValueError, TypeError):
            pass
    finally:
        if data_path is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old
    cat = lambda k: np.concatenate(cols[k])  # noqa: E731
    n_ep = len(cols["ep"])
    return OfflineDataset(cat("obs"), cat("act"), cat("rew"), cat("next"), cat("term"), cat("trunc"), cat("ep"),
                          cat("env"), {k: np.concatenate(v) for k, v in infos.items() if len(v) == n_ep},
                          None, meta)

"""Export trained policies to ONNX or TorchScript, with a parity check and a metadata file.

``robo-reward export RUN_DIR --format onnx`` (or :func:`export_policy`) turns the
deterministic action of a trained policy into one self-contained file:

* **observation normalisation** is baked in: SB3 ``VecNormalize`` statistics (a
  ``vecnormalize.pkl`` in the run folder, or ``--vecnormalize PATH``) or the built-in
  PPO's running statistics: ``clip((obs - mean) / sqrt(var + eps), -clip_obs, clip_obs)``;
* **action rescaling** is baked in: squashed policies (SAC, TD3, gSDE with
  ``squash_output``) map ``tanh`` outputs to ``[low, high]``; Gaussian policies (PPO,
  A2C, the built-in PPO) clip the mean action to ``[low, high]``, as their ``predict`` does.

The file's input is ``obs`` (float32 ``[batch, D]``, raw observations), its output
``action`` (float32 ``[batch, A]``, in the env's units). Next to it, ``<file>.json``
holds the metadata (also embedded in the file): observation and action spaces,
observation fields with units from the task card, control rate (``1 / env.dt``), the
training run, the reward it was trained on, and the parity result.

The **parity check** runs on every export: the exported file, loaded by the runtime
that will run it (onnxruntime / ``torch.jit.load``), and the original policy's own
``predict(obs, deterministic=True)`` must agree on random observations to ``1e-5``
(absolute, per action entry); otherwise :class:`~robo_reward.deploy.errors.ExportError`
is raised and the file is deleted.

Sources: a run folder of ``robo-reward train`` (``final_model.zip`` or ``final_model.pt``,
else the latest checkpoint; ``config.yaml`` gives the agent and the task), an SB3 model
``.zip`` (with ``--task``; the algorithm is read from the file), or a checkpoint ``.pt``
of a built-in agent (:class:`robo_reward.agents.ppo.PPO` — ``ppo-native``,
``ppo-multicritic`` —, :class:`robo_reward.agents.barfi.BARFI`, or the offline agents
:class:`robo_reward.offline.iql.IQL` and :class:`robo_reward.offline.bc.BC`, whose dataset
normaliser and action bounds are baked in). Policies with 1-D Box observations and Box
actions are supported.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import pickle
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.errors import ConfigError, require
from .errors import ExportError
from .policy import EMBEDDED_METADATA_KEY, METADATA_FORMAT, metadata_path

#: Export formats and the file each writes.
FORMATS: dict[str, str] = {"onnx": "policy.onnx", "torchscript": "policy.torchscript.pt"}

#: Default parity tolerance (largest absolute difference of any action entry).
PARITY_TOLERANCE = 1e-5

#: SB3 algorithms whose models can be exported.
SB3_ALGORITHMS = ("ppo", "a2c", "sac", "td3", "ddpg")

#: VecNormalize statistics files looked for in a run folder.
VECNORMALIZE_NAMES = ("vecnormalize.pkl", "vec_normalize.pkl", "final_vecnormalize.pkl")


@dataclasses.dataclass
class ObsNormalization:
    """Observation normalisation baked into an export: ``clip((obs - mean) * scale, -clip, clip)``.

    Attributes:
        mean: per-entry mean.
        scale: per-entry ``1 / sqrt(var + eps)``.
        clip: clip bound (``None``: none).
        source: where the statistics came from (``vecnormalize:<file>``, ``builtin-ppo``).
    """

    mean: np.ndarray
    scale: np.ndarray
    clip: float | None
    source: str

    def apply(self, obs: np.ndarray) -> np.ndarray:
        """Normalise a batch in float64 (the reference path)."""
        x = (np.asarray(obs, dtype=np.float64) - self.mean) * self.scale
        return x if self.clip is None else np.clip(x, -self.clip, self.clip)


@dataclasses.dataclass
class PolicySource:
    """A trained policy loaded for export.

    Attributes:
        kind: ``sb3`` or ``builtin``.
        algo: ``ppo``, ``sac``, ``td3``, ``a2c``, ``ddpg`` (SB3), or ``ppo-native``,
            ``ppo-multicritic``, ``barfi``, ``iql``, ``bc`` (built-in agents).
        model: the SB3 model or the built-in agent.
        model_path: the file it was loaded from.
        observation_space, action_space: the policy's single-env spaces.
        obs_norm: observation normalisation to bake in (``None``: none).
        card: the task card (``None`` when unknown).
        run_dir: the run folder, when the source was one.
        run_config: the run's ``config.yaml`` as a dict.
        timesteps: training steps of the model, when known.
    """

    kind: str
    algo: str
    model: Any
    model_path: Path
    observation_space: Any
    action_space: Any
    obs_norm: ObsNormalization | None = None
    card: Any = None
    run_dir: Path | None = None
    run_config: dict[str, Any] | None = None
    timesteps: int | None = None

    def reference(self, obs: np.ndarray) -> np.ndarray:
        """The original policy's deterministic actions for a batch of raw observations (float64)."""
        if self.kind == "sb3":
            x = self.obs_norm.apply(obs).astype(np.float32) if self.obs_norm is not None else obs
            action, _ = self.model.predict(x, deterministic=True)
        else:
            action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float64)


# ----------------------------------------------------------------------------- loading sources


def infer_sb3_algo(path: str | Path) -> str:
    """Read which SB3 algorithm saved a model ``.zip`` (``ppo``, ``a2c``, ``sac``, ``td3``).

    Raises:
        ConfigError: not an SB3 zip, or an algorithm that cannot be told (pass ``algo``).
    """
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a Stable-Baselines3 model zip: {exc}") from None
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    if ".sac." in module:
        return "sac"
    if ".td3." in module:
        return "td3"
    if module.endswith("common.policies"):
        return "ppo" if "clip_range" in data else "a2c"
    raise ConfigError(f"cannot tell which SB3 algorithm saved {path} (policy module {module!r}); pass algo/--algo")


def _sb3_class(algo: str) -> Any:
    sb3 = require("stable_baselines3", "sb3", "exporting SB3 policies")
    names = {"ppo": "PPO", "a2c": "A2C", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG"}
    if algo not in names:
        raise ConfigError(f"unknown SB3 algorithm {algo!r}; valid: {', '.join(SB3_ALGORITHMS)}")
    return getattr(sb3, names[algo])


def load_vecnormalize(path: str | Path) -> ObsNormalization:
    """Read observation statistics from a saved SB3 ``VecNormalize`` (``VecNormalize.save``).

    The file is a pickle: load only files you trust.

    Raises:
        ConfigError: missing or unreadable file, or statistics that are not for a flat observation.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no VecNormalize statistics at {p}")
    require("stable_baselines3", "sb3", "reading VecNormalize statistics")
    try:
        with p.open("rb") as f:
            vn = pickle.load(f)
    except Exception as exc:
        raise ConfigError(f"cannot read VecNormalize statistics from {p}: {exc}") from None
    rms = getattr(vn, "obs_rms", None)
    if rms is None or isinstance(rms, dict) or not hasattr(rms, "mean"):
        raise ConfigError(f"{p} holds no flat observation statistics (dict observations are not supported)")
    eps = float(getattr(vn, "epsilon", 1e-8))
    if not getattr(vn, "norm_obs", True):
        raise ConfigError(f"{p} was saved with norm_obs=False: there is nothing to bake in; export without it")
    clip = getattr(vn, "clip_obs", None)
    mean = np.asarray(rms.mean, dtype=np.float64).reshape(-1)
    scale = 1.0 / np.sqrt(np.asarray(rms.var, dtype=np.float64).reshape(-1) + eps)
    return ObsNormalization(mean, scale, None if clip is None else float(clip), f"vecnormalize:{p.name}")


def _read_yaml(path: Path) -> dict[str, Any]:
    from ..train.config import read_yaml_mapping

    return read_yaml_mapping(path)


#: Built-in agent names (``robo-reward train --agent``) whose checkpoints can be exported.
BUILTIN_AGENTS = ("ppo-native", "ppo-multicritic", "barfi", "iql", "bc")


def _builtin_format(path: Path) -> str | None:
    """``"ppo"``, ``"barfi"``, ``"iql"`` or ``"bc"`` for a built-in agent's checkpoint, else ``None``."""
    if path.suffix not in (".pt", ".pth"):
        return None
    import torch

    from ..agents.barfi import CHECKPOINT_FORMAT as BARFI_FORMAT
    from ..agents.ppo import CHECKPOINT_FORMAT as PPO_FORMAT

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(state, Mapping):
        return None
    if state.get("algorithm") in ("iql", "bc") and "obs_mean" in state:  # robo_reward.offline checkpoints
        return str(state["algorithm"])
    return {PPO_FORMAT: "ppo", BARFI_FORMAT: "barfi"}.get(state.get("format"))


def _load_builtin(path: Path, fmt: str) -> Any:
    if fmt in ("iql", "bc"):
        from ..offline.bc import BC
        from ..offline.iql import IQL

        return (IQL if fmt == "iql" else BC).load(path, device="cpu")
    if fmt == "barfi":
        from ..agents.barfi import BARFI

        return BARFI.load(path, device="cpu")
    from ..agents.ppo import PPO

    return PPO.load(path, device="cpu")


def load_policy_source(
    source: str | Path,
    *,
    task: Any = None,
    algo: str | None = None,
    vecnormalize: str | Path | None = None,
) -> PolicySource:
    """Load what :func:`export_policy` exports.

    Args:
        source: a run folder, an SB3 model ``.zip`` or a built-in agent's checkpoint ``.pt``.
        task: task card (name, path or card); default: the run folder's. Needed for units
            and the control rate in the metadata.
        algo: the SB3 algorithm (default: the run's agent, or read from the zip).
        vecnormalize: SB3 ``VecNormalize`` statistics to bake in (default: a
            ``vecnormalize.pkl`` in the run folder, if any).

    Raises:
        ConfigError: nothing loadable there, or an unsupported policy.
    """
    from ..envs import load_card

    src = Path(source)
    run_dir: Path | None = None
    run_config: dict[str, Any] | None = None
    timesteps: int | None = None
    if src.is_dir():
        if not (src / "config.yaml").is_file():
            raise ConfigError(f"{src} is not a run folder (no config.yaml); pass a run folder or a model file")
        run_dir = src
        run_config = _read_yaml(src / "config.yaml")
        if (src / "final_model.zip").is_file():
            model_path = src / "final_model.zip"
        elif (src / "final_model.pt").is_file():
            model_path = src / "final_model.pt"
        else:
            from ..train.runner import latest_checkpoint

            ckpt = latest_checkpoint(src)
            if ckpt is None:
                raise ConfigError(f"{src} has no final_model.zip, final_model.pt or checkpoint to export")
            model_path, timesteps = ckpt.model, ckpt.timesteps
        meta = src / (model_path.stem + ".json")
        if timesteps is None and meta.is_file():
            try:
                timesteps = int(json.loads(meta.read_text()).get("timesteps"))
            except (ValueError, TypeError, json.JSONDecodeError):
                timesteps = None
        if task is None:
            task = run_config.get("task")
        if algo is None:
            algo = run_config.get("agent")
        if vecnormalize is None:
            for name in VECNORMALIZE_NAMES:
                if (src / name).is_file():
                    vecnormalize = src / name
                    break
    elif src.is_file():
        model_path = src
    else:
        raise ConfigError(f"nothing to export at {src}: give a run folder, an SB3 .zip or a built-in PPO .pt")

    card = load_card(task) if task is not None else None
    obs_norm = load_vecnormalize(vecnormalize) if vecnormalize is not None else None

    builtin = _builtin_format(model_path)
    if builtin is not None or algo in BUILTIN_AGENTS:
        if builtin is None:
            raise ConfigError(f"{model_path} is not a checkpoint of the built-in agent {algo!r}")
        if obs_norm is not None:
            raise ConfigError("built-in agents keep their own observation statistics; drop --vecnormalize")
        agent = _load_builtin(model_path, builtin)
        if builtin in ("iql", "bc"):
            src_obj = _offline_source(agent, builtin, model_path, card, run_dir, run_config, timesteps)
            _check_spaces(src_obj)
            return src_obj
        if not agent.continuous:
            raise ConfigError("only policies with Box actions can be deployed (this built-in agent has Discrete actions)")
        if builtin == "ppo" and agent.config.norm_obs:
            scale = 1.0 / np.sqrt(agent.obs_rms.var + agent.config.norm_eps)
            obs_norm = ObsNormalization(agent.obs_rms.mean.copy(), scale, float(agent.config.clip_obs), "builtin-ppo")
        name = algo if algo in BUILTIN_AGENTS else ("ppo-native" if builtin == "ppo" else "barfi")
        src_obj = PolicySource(
            "builtin", name, agent, model_path, agent.observation_space, agent.action_space, obs_norm,
            card, run_dir, run_config, timesteps if timesteps is not None else int(agent.num_timesteps),
        )
    else:
        if model_path.suffix != ".zip":
            raise ConfigError(f"{model_path} is neither an SB3 model .zip nor a built-in PPO checkpoint")
        name = (algo or infer_sb3_algo(model_path)).lower()
        cls = _sb3_class(name)
        try:
            model = cls.load(str(model_path), device="cpu")
        except Exception as exc:
            raise ConfigError(f"cannot load {model_path} as an SB3 {name.upper()} model: {exc}") from None
        if timesteps is None:
            timesteps = int(getattr(model, "num_timesteps", 0)) or None
        src_obj = PolicySource("sb3", name, model, model_path, model.observation_space, model.action_space, obs_norm,
                               card, run_dir, run_config, timesteps)
    _check_spaces(src_obj)
    return src_obj


def _offline_source(agent: Any, algo: str, model_path: Path, card: Any, run_dir: Path | None,
                    run_config: dict[str, Any] | None, timesteps: int | None) -> PolicySource:
    """A :class:`PolicySource` for an offline agent (IQL, BC): its dataset normaliser and action bounds."""
    from gymnasium import spaces

    obs_space = spaces.Box(-np.inf, np.inf, (agent.obs_dim,), np.float32)
    if agent.action_low is not None:
        act_space = spaces.Box(np.asarray(agent.action_low, np.float32), np.asarray(agent.action_high, np.float32))
    else:  # an agent without bounds acts in [-1, 1] as it is
        act_space = spaces.Box(-1.0, 1.0, (agent.act_dim,), np.float32)
    std = agent.obs_std.cpu().numpy().astype(np.float64)
    obs_norm = ObsNormalization(agent.obs_mean.cpu().numpy().astype(np.float64), 1.0 / std, None, f"builtin-{algo}")
    return PolicySource("builtin", algo, agent, model_path, obs_space, act_space, obs_norm, card, run_dir,
                        run_config, timesteps if timesteps is not None else int(agent.steps))


def _check_spaces(src: PolicySource) -> None:
    from gymnasium import spaces

    if not isinstance(src.observation_space, spaces.Box) or len(src.observation_space.shape) != 1:
        raise ConfigError(f"only flat (1-D Box) observations can be exported, got {src.observation_space}")
    if not isinstance(src.action_space, spaces.Box) or len(src.action_space.shape) != 1:
        raise ConfigError(f"only 1-D Box actions can be deployed, got {src.action_space}")
    d = int(src.observation_space.shape[0])
    if src.obs_norm is not None and src.obs_norm.mean.shape != (d,):
        raise ConfigError(f"the normalisation statistics have {src.obs_norm.mean.size} entries, the observation {d}")
    if src.card is not None and src.card.obs_dim is not None and src.card.obs_dim != d:
        raise ConfigError(f"task card {src.card.name!r} has obs_dim {src.card.obs_dim}, the policy's observation has {d}")


# ----------------------------------------------------------------------------- the exported module


def _torch() -> Any:
    return require("torch", "sb3", "exporting policies")


def build_export_module(src: PolicySource) -> Any:
    """The ``torch.nn.Module`` that is exported: normalisation → actor → rescaling, float32, on the CPU."""
    torch = _torch()
    nn = torch.nn
    low = np.asarray(src.action_space.low, dtype=np.float32)
    high = np.asarray(src.action_space.high, dtype=np.float32)
    squash = False
    if src.kind == "sb3":
        from stable_baselines3.common.policies import ActorCriticPolicy

        policy = src.model.policy
        if isinstance(policy, ActorCriticPolicy):
            fe = policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor
            parts = [fe, policy.mlp_extractor.policy_net, policy.action_net]
            squash = bool(policy.squash_output)
            if squash:
                parts.append(nn.Tanh())
        elif src.algo == "sac" or hasattr(getattr(policy, "actor", None), "latent_pi"):
            actor = policy.actor
            parts = [actor.features_extractor, actor.latent_pi, actor.mu, nn.Tanh()]
            squash = True
        elif hasattr(getattr(policy, "actor", None), "mu"):
            actor = policy.actor  # TD3 / DDPG: mu ends in tanh
            parts = [actor.features_extractor, actor.mu]
            squash = True
        else:
            raise ExportError(f"cannot export a {type(policy).__name__} policy")
        actor_net = copy.deepcopy(nn.Sequential(*parts)).cpu()
        if squash and not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ExportError("a squashed policy needs a bounded action space")
    elif src.algo in ("iql", "bc"):
        nn_mean = copy.deepcopy(src.model.policy_module.mean).cpu()  # Linear/ReLU MLP
        actor_net = nn.Sequential(nn_mean, nn.Tanh())
        squash = True
    else:
        from ..agents.ppo import _ACTIVATIONS

        policy = src.model.policy
        mlp = policy.actor if hasattr(policy, "actor") else policy  # PPO's ActorCritic, or BARFI's MLP
        if getattr(mlp, "heads", 1) != 1:
            raise ExportError("the built-in policy network has several heads; cannot export it")
        names = [k for k, (_, fn) in _ACTIVATIONS.items() if fn is mlp.act]
        if not names:
            raise ExportError(f"unknown activation {mlp.act!r} in the built-in policy network")
        act_cls = _ACTIVATIONS[names[0]][0]
        layers: list[Any] = []
        n = len(mlp.weights)
        for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases)):
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(w.detach().cpu())
                lin.bias.copy_(b.detach().cpu())
            layers.append(lin)
            if i < n - 1:
                layers.append(act_cls())
        actor_net = nn.Sequential(*layers)
    norm = src.obs_norm
    module = _ExportModuleFactory.make(
        actor_net,
        None if norm is None else norm.mean.astype(np.float32),
        None if norm is None else norm.scale.astype(np.float32),
        None if norm is None else norm.clip,
        squash, low, high,
    )
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class _ExportModuleFactory:
    """Builds the exported ``nn.Module`` (a class defined on first use, so torch loads lazily)."""

    _cls: Any = None

    @classmethod
    def make(cls, actor: Any, mean: np.ndarray | None, scale: np.ndarray | None, clip: float | None,
             squash: bool, low: np.ndarray, high: np.ndarray) -> Any:
        """``clip((obs - mean) * scale)`` → ``actor`` → ``low + (a + 1) (high - low) / 2`` (squash) or clip to bounds."""
        if cls._cls is None:
            torch = _torch()

            class ExportedPolicy(torch.nn.Module):
                """Raw float32 observations → actions in the env's units."""

                def __init__(self, actor: Any, mean: Any, scale: Any, clip: float | None, squash: bool,
                             low: Any, high: Any):
                    super().__init__()
                    self.actor = actor
                    self.normalize = mean is not None
                    self.clip = clip
                    self.squash = squash
                    if self.normalize:
                        self.register_buffer("obs_mean", torch.as_tensor(mean))
                        self.register_buffer("obs_scale", torch.as_tensor(scale))
                    self.register_buffer("low", torch.as_tensor(low))
                    self.register_buffer("high", torch.as_tensor(high))
                    if squash:
                        self.register_buffer("half_range", torch.as_tensor((high - low) / 2.0))

                def forward(self, obs: Any) -> Any:
                    """float32 ``[batch, D]`` raw observations → float32 ``[batch, A]`` actions."""
                    x = obs
                    if self.normalize:
                        x = (x - self.obs_mean) * self.obs_scale
                        if self.clip is not None:
                            x = torch.clamp(x, -self.clip, self.clip)
                    a = self.actor(x)
                    if self.squash:
                        return self.low + (a + 1.0) * self.half_range
                    return torch.minimum(torch.maximum(a, self.low), self.high)

            cls._cls = ExportedPolicy
        return cls._cls(actor, mean, scale, clip, squash, low, high)


# ----------------------------------------------------------------------------- writing files


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' chatter (deprecation warnings, progress prints)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def _write_onnx(module: Any, path: Path, obs_dim: int, opset: int | None, exporter: str) -> str:
    torch = _torch()
    require("onnx", "deploy", "ONNX export")
    example = torch.zeros(1, obs_dim, dtype=torch.float32)
    errors = []
    order = [exporter] if exporter != "auto" else ["dynamo", "legacy"]
    for which in order:
        try:
            with _quiet():
                if which == "dynamo":
                    require("onnxscript", "deploy", "ONNX export")
                    batch = torch.export.Dim("batch", min=1, max=1 << 16)
                    torch.onnx.export(
                        module, (example,), str(path), dynamo=True, input_names=["obs"], output_names=["action"],
                        dynamic_shapes=({0: batch},), opset_version=opset, external_data=False, verbose=False,
                    )
                elif which == "legacy":
                    torch.onnx.export(
                        module, (example,), str(path), dynamo=False, input_names=["obs"], output_names=["action"],
                        dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                        opset_version=opset or 17, do_constant_folding=True,
                    )
                else:
                    raise ConfigError(f"unknown ONNX exporter {which!r}; use auto, dynamo or legacy")
            return which
        except ConfigError:
            raise
        except Exception as exc:
            errors.append(f"{which}: {type(exc).__name__}: {str(exc)[:300]}")
    raise ExportError("ONNX export failed: " + " | ".join(errors))


def _write_torchscript(module: Any, path: Path, obs_dim: int, meta_json: str) -> None:
    torch = _torch()
    example = torch.zeros(4, obs_dim, dtype=torch.float32)
    with _quiet():
        traced = torch.jit.trace(module, example, check_trace=True)
        torch.jit.save(traced, str(path), _extra_files={EMBEDDED_METADATA_KEY: meta_json})


def _embed_onnx_metadata(path: Path, meta_json: str) -> None:
    onnx = require("onnx", "deploy", "ONNX export")
    model = onnx.load(str(path))
    props = [p for p in model.metadata_props if p.key != EMBEDDED_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = EMBEDDED_METADATA_KEY, meta_json
    model.producer_name = "robo_reward"
    onnx.save(model, str(path))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _space_dict(space: Any) -> dict[str, Any]:
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    return {
        "shape": [int(d) for d in space.shape],
        "dtype": str(np.dtype(space.dtype)),
        "low": [float(x) if np.isfinite(x) else None for x in low],
        "high": [float(x) if np.isfinite(x) else None for x in high],
    }


def random_observations(src: PolicySource, n: int, seed: int = 0) -> np.ndarray:
    """Observations for the parity check: uniform in bounded entries; around the normalisation
    statistics (or N(0, 1)) in unbounded ones, with a tenth at 10x the spread (exercises clipping)."""
    rng = np.random.default_rng(seed)
    space = src.observation_space
    d = int(space.shape[0])
    low = np.asarray(space.low, dtype=np.float64)
    high = np.asarray(space.high, dtype=np.float64)
    if src.obs_norm is not None:
        centre, spread = src.obs_norm.mean, 1.0 / src.obs_norm.scale
    else:
        centre, spread = np.zeros(d), np.ones(d)
    obs = centre + spread * rng.standard_normal((n, d))
    obs[: max(n // 10, 1)] *= 10.0
    bounded = np.isfinite(low) & np.isfinite(high)
    if bounded.any():
        obs[:, bounded] = rng.uniform(low[bounded], high[bounded], size=(n, int(bounded.sum())))
    return obs.astype(np.float32)


def _env_rate(card: Any) -> tuple[float | None, float | None]:
    if card is None:
        return None, None
    try:
        from ..envs import make_env

        env = make_env(card)
        try:
            dt = getattr(env.unwrapped, "dt", None)
        finally:
            env.close()
    except Exception:
        return None, None
    return (float(dt), 1.0 / float(dt)) if dt else (None, None)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("robo-reward", "torch", "stable-baselines3", "onnx", "onnxruntime", "gymnasium", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def build_metadata(src: PolicySource, policy_format: str, file_name: str) -> dict[str, Any]:
    """The metadata of an export (before the parity result and the file hash are added)."""
    card = src.card
    dt, rate = _env_rate(card)
    run: dict[str, Any] = {"model": str(src.model_path), "agent": src.algo, "timesteps": src.timesteps}
    reward = None
    if src.run_dir is not None:
        run["run_dir"] = str(src.run_dir)
        cfg = src.run_config or {}
        run.update({k: cfg.get(k) for k in ("seed", "steps", "n_envs") if k in cfg})
        reward = {"spec": cfg.get("reward") or "env", "mode": cfg.get("mode", "replace"),
                  "alpha": cfg.get("alpha"), "weights": cfg.get("weights")}
        summary = src.run_dir / "summary.json"
        if summary.is_file():
            try:
                fe = json.loads(summary.read_text()).get("final_eval") or {}
                run["final_eval"] = {k: fe.get(k) for k in ("episodes", "success_rate", "return_mean") if k in fe}
            except json.JSONDecodeError:
                pass
    task = None
    fields: list[dict[str, Any]] = []
    if card is not None:
        task = {"name": card.name, "env_id": card.env_id, "family": card.family,
                "max_episode_steps": card.max_episode_steps,
                "source": str(card.source) if card.source is not None else None}
        fields = [{"name": f.name, "start": f.start, "stop": f.stop, "units": f.units, "meaning": f.meaning}
                  for f in card.observation]
    norm = src.obs_norm
    squashed = (src.kind == "sb3" and bool(getattr(src.model.policy, "squash_output", False))) or src.algo in ("iql", "bc")
    return {
        "format": METADATA_FORMAT,
        "policy_format": policy_format,
        "file": file_name,
        "input": {"name": "obs", "shape": [None, int(src.observation_space.shape[0])], "dtype": "float32",
                  "meaning": "raw observations (normalisation is inside the policy)"},
        "output": {"name": "action", "shape": [None, int(src.action_space.shape[0])], "dtype": "float32",
                   "meaning": "deterministic action in the env's units"},
        "observation_space": _space_dict(src.observation_space),
        "action_space": _space_dict(src.action_space),
        "observation_fields": fields,
        "action_units": "the env's action units (see the task card's description)",
        "control_rate_hz": rate,
        "env_dt": dt,
        "task": task,
        "training_run": run,
        "reward": reward,
        "normalization": None if norm is None else {
            "source": norm.source, "clip": norm.clip, "mean": norm.mean.tolist(), "scale": norm.scale.tolist()},
        "action_rescaling": "tanh to [low, high]" if squashed else "clip to [low, high]",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(),
    }


@dataclasses.dataclass
class ExportResult:
    """One exported file.

    Attributes:
        path: the policy file.
        metadata_path: its ``.json`` metadata.
        metadata: the metadata.
        max_abs_diff: the parity check's largest absolute action difference.
    """

    path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    max_abs_diff: float


def export_policy(
    source: str | Path | PolicySource,
    out_dir: str | Path | None = None,
    formats: Sequence[str] = ("onnx",),
    *,
    task: Any = None,
    algo: str | None = None,
    vecnormalize: str | Path | None = None,
    parity_samples: int = 1000,
    tolerance: float = PARITY_TOLERANCE,
    seed: int = 0,
    opset: int | None = None,
    exporter: str = "auto",
    log: Callable[[str], None] | None = None,
) -> list[ExportResult]:
    """Export a trained policy to each of ``formats`` and check parity.

    Args:
        source: a run folder, an SB3 ``.zip``, a built-in PPO ``.pt`` or a loaded :class:`PolicySource`.
        out_dir: where to write (default ``<run folder>/export``, or ``export/`` next to a model file).
        formats: ``onnx`` and/or ``torchscript``.
        task, algo, vecnormalize: see :func:`load_policy_source`.
        parity_samples: random observations of the parity check.
        tolerance: largest allowed absolute difference of any action entry.
        seed: seed of the random observations.
        opset: ONNX opset (default: the exporter's).
        exporter: ONNX exporter: ``auto`` (``torch.export``-based, falling back to the
            TorchScript-based one), ``dynamo`` or ``legacy``.
        log: called with progress lines.

    Returns:
        one :class:`ExportResult` per format.

    Raises:
        ConfigError: bad arguments or an unloadable source.
        ExportError: the export or its parity check failed (the failed file is deleted).
    """
    say = log or (lambda line: None)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"unknown export format(s) {bad}; valid: {', '.join(FORMATS)}")
    if parity_samples < 1:
        raise ConfigError("parity_samples must be >= 1")
    if not tolerance > 0:
        raise ConfigError("tolerance must be positive")
    src = source if isinstance(source, PolicySource) else load_policy_source(
        source, task=task, algo=algo, vecnormalize=vecnormalize)
    if out_dir is None:
        out_dir = (src.run_dir / "export") if src.run_dir is not None else src.model_path.parent / "export"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = build_export_module(src)
    obs = random_observations(src, parity_samples, seed)
    reference = src.reference(obs)
    d = int(src.observation_space.shape[0])
    results = []
    for fmt in formats:
        path = out / FORMATS[fmt]
        meta = build_metadata(src, fmt, path.name)
        meta_json = json.dumps(meta)
        say(f"exporting {src.algo} policy to {path} ({fmt})")
        try:
            if fmt == "onnx":
                meta["onnx_exporter"] = _write_onnx(module, path, d, opset, exporter)
                meta_json = json.dumps(meta)
                _embed_onnx_metadata(path, meta_json)
            else:
                _write_torchscript(module, path, d, meta_json)
            runtime_policy = _load_for_parity(path, fmt, meta)
            exported = runtime_policy.batch(obs).astype(np.float64)
        except ExportError:
            path.unlink(missing_ok=True)
            raise
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise ExportError(f"{fmt} export failed: {type(exc).__name__}: {exc}") from exc
        diff = float(np.max(np.abs(exported - reference))) if exported.shape == reference.shape else float("inf")
        if not diff <= tolerance:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"parity check failed for {fmt}: the exported policy differs from the original by up to {diff:.3g} "
                f"(tolerance {tolerance:g}) on {parity_samples} random observations; the file was not kept"
            )
        meta["parity"] = {"samples": parity_samples, "seed": seed, "tolerance": tolerance, "max_abs_diff": diff,
                          "reference": f"{src.algo}.predict(obs, deterministic=True)", "passed": True}
        meta["sha256"] = _sha256(path)
        mp = metadata_path(path)
        mp.write_text(json.dumps(meta, indent=2))
        say(f"parity ok: max |exported - original| = {diff:.2e} over {parity_samples} observations")
        results.append(ExportResult(path, mp, meta, diff))
    return results


def _load_for_parity(path: Path, fmt: str, meta: Mapping[str, Any]) -> Any:
    from .policy import OnnxPolicy, TorchScriptPolicy

    return OnnxPolicy(path, meta) if fmt == "onnx" else TorchScriptPolicy(path, meta, threads=None)


__all__ = [
    "BUILTIN_AGENTS",
    "ExportResult",
    "FORMATS",
    "ObsNormalization",
    "PARITY_TOLERANCE",
    "PolicySource",
    "SB3_ALGORITHMS",
    "build_export_module",
    "build_metadata",
    "export_policy",
    "infer_sb3_algo",
    "load_policy_source",
    "load_vecnormalize",
    "random_observations",
]

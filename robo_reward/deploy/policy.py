"""Exported policies at run time: load an ONNX or TorchScript file and call it on observations.

An exported policy maps a raw float32 observation ``[D]`` (or a batch ``[N, D]``) to a
float32 action ``[A]`` in the env's action units: observation normalisation and
action rescaling are inside the file (see :mod:`robo_reward.deploy.export`). Its
metadata (spaces, units, control rate, training run) is the JSON file next to it,
``<file>.json`` (also embedded in the file itself).

* :func:`load_policy` — pick the runtime from the file (``.onnx`` → onnxruntime,
  otherwise TorchScript);
* :class:`OnnxPolicy`, :class:`TorchScriptPolicy` — one thread by default, which is the
  fastest for the small MLPs of state-based control;
* :class:`CallablePolicy` — any Python function (tests, scripted controllers).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..core.errors import ConfigError, require

#: The ``format`` field of policy metadata written by this version.
METADATA_FORMAT = "robo_reward.deploy.policy/1"

#: Key under which the metadata JSON is embedded (ONNX ``metadata_props``, TorchScript extra file).
EMBEDDED_METADATA_KEY = "robo_reward.json"


@runtime_checkable
class Policy(Protocol):
    """What the runtime calls: a deterministic map from a flat observation to a flat action."""

    obs_dim: int
    action_dim: int
    metadata: dict[str, Any]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """float32 ``[D]`` → float32 ``[A]``."""
        ...


def metadata_path(policy_path: str | Path) -> Path:
    """The metadata file of an exported policy: ``<policy file>.json``."""
    p = Path(policy_path)
    return p.with_name(p.name + ".json")


def read_metadata(policy_path: str | Path) -> dict[str, Any]:
    """Read an exported policy's metadata (the ``.json`` next to it, else the copy embedded in the file).

    Raises:
        ConfigError: the file does not exist, or no metadata can be found.
    """
    p = Path(policy_path)
    if not p.is_file():
        raise ConfigError(f"no exported policy at {p}")
    mp = metadata_path(p)
    if mp.is_file():
        try:
            return json.loads(mp.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{mp} is not valid JSON: {exc}") from None
    if p.suffix == ".onnx":
        onnx = require("onnx", "deploy", "reading ONNX policies")
        model = onnx.load(str(p), load_external_data=False)
        for prop in model.metadata_props:
            if prop.key == EMBEDDED_METADATA_KEY:
                return json.loads(prop.value)
    else:
        import torch

        extra = {EMBEDDED_METADATA_KEY: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
        except Exception as exc:
            raise ConfigError(f"{p} is neither ONNX nor TorchScript: {exc}") from None
        if extra[EMBEDDED_METADATA_KEY]:
            return json.loads(extra[EMBEDDED_METADATA_KEY])
    raise ConfigError(f"{p} has no metadata ({mp.name} is missing and none is embedded); export it again")


def _bounds(meta: Mapping[str, Any], key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    space = meta.get(key) or {}
    low = np.array([-np.inf if v is None else v for v in space.get("low", [None] * n)], dtype=np.float64)
    high = np.array([np.inf if v is None else v for v in space.get("high", [None] * n)], dtype=np.float64)
    return low, high


class _FilePolicy:
    """Shared parts of the file-backed policies."""

    obs_dim: int
    action_dim: int
    metadata: dict[str, Any]
    path: Path

    def _init_meta(self, path: str | Path, metadata: Mapping[str, Any] | None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"no exported policy at {self.path}")
        self.metadata = dict(metadata) if metadata is not None else read_metadata(self.path)
        try:
            self.obs_dim = int(self.metadata["observation_space"]["shape"][0])
            self.action_dim = int(self.metadata["action_space"]["shape"][0])
        except (KeyError, TypeError, IndexError):
            raise ConfigError(f"the metadata of {self.path} has no observation/action space shapes") from None
        self.action_low, self.action_high = _bounds(self.metadata, "action_space", self.action_dim)
        self._one = np.zeros((1, self.obs_dim), dtype=np.float32)

    def _check_batch(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ConfigError(f"observations must have shape [N, {self.obs_dim}], got {x.shape}")
        return np.ascontiguousarray(x)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """One observation ``[D]`` → one action ``[A]`` (float32)."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1)
        if x.size != self.obs_dim:
            raise ConfigError(f"observation has {x.size} values, the policy expects {self.obs_dim}")
        self._one[0] = x
        return self._run(self._one)[0]

    def batch(self, obs: np.ndarray) -> np.ndarray:
        """Observations ``[N, D]`` → actions ``[N, A]`` (float32)."""
        return self._run(self._check_batch(obs))

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


class OnnxPolicy(_FilePolicy):
    """An exported ONNX policy run by onnxruntime (CPU).

    Args:
        path: the ``.onnx`` file.
        metadata: the metadata (default: read from ``<path>.json`` or the file).
        threads: intra-op threads (1 is fastest for small MLPs and leaves the other cores alone).
        providers: onnxruntime execution providers (default CPU).
    """

    def __init__(self, path: str | Path, metadata: Mapping[str, Any] | None = None, *, threads: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",)):
        self._init_meta(path, metadata)
        ort = require("onnxruntime", "deploy", "running ONNX policies")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(providers))
        except Exception as exc:
            raise ConfigError(f"onnxruntime cannot load {self.path}: {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: x})[0]


class TorchScriptPolicy(_FilePolicy):
    """An exported TorchScript policy run by torch (CPU, no autograd).

    Args:
        path: the TorchScript file.
        metadata: the metadata (default: read from ``<path>.json`` or the file).
        threads: ``torch.set_num_threads`` while this policy runs (``None``: leave torch's setting).
    """

    def __init__(self, path: str | Path, metadata: Mapping[str, Any] | None = None, *, threads: int | None = 1):
        import torch

        self._init_meta(path, metadata)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in recent torch
                self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as exc:
            raise ConfigError(f"torch cannot load {self.path} as TorchScript: {exc}") from None
        self._torch = torch
        if threads is not None:
            torch.set_num_threads(int(threads))

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(x)).numpy()


class CallablePolicy:
    """A Python function as a policy.

    Args:
        fn: ``obs float32[D] -> action [A]``.
        obs_dim, action_dim: the sizes.
        action_low, action_high: the action bounds (numbers or one per entry).
        metadata: anything the log should record.
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], obs_dim: int, action_dim: int,
                 action_low: float | Sequence[float] = -1.0, action_high: float | Sequence[float] = 1.0,
                 metadata: Mapping[str, Any] | None = None):
        self.fn = fn
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.action_low = np.broadcast_to(np.asarray(action_low, dtype=np.float64), (self.action_dim,)).copy()
        self.action_high = np.broadcast_to(np.asarray(action_high, dtype=np.float64), (self.action_dim,)).copy()
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("observation_space", {"shape": [self.obs_dim]})
        self.metadata.setdefault(
            "action_space",
            {"shape": [self.action_dim], "low": self.action_low.tolist(), "high": self.action_high.tolist()},
        )

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``fn(obs)`` as a float32 vector."""
        return np.asarray(self.fn(obs), dtype=np.float32).reshape(-1)

    def batch(self, obs: np.ndarray) -> np.ndarray:
        """``fn`` on each row."""
        return np.stack([self(o) for o in np.asarray(obs, dtype=np.float32)])


def load_policy(path: str | Path, *, format: str | None = None, threads: int = 1) -> OnnxPolicy | TorchScriptPolicy:
    """Load an exported policy for the runtime.

    Args:
        path: the exported file (``policy.onnx``, ``policy.torchscript.pt``), or an export
            folder holding exactly one of them (ONNX preferred).
        format: ``onnx`` or ``torchscript`` (default: from the metadata, else the suffix).
        threads: inference threads.

    Raises:
        ConfigError: missing file, unknown format, or a file the runtime cannot load.
    """
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob("*.onnx")) or sorted(p.glob("*.torchscript.pt"))
        if not found:
            raise ConfigError(f"{p} holds no exported policy (*.onnx or *.torchscript.pt); run 'robo-reward export' first")
        p = found[0]
    if not p.is_file():
        raise ConfigError(f"no exported policy at {p}; run 'robo-reward export RUN_DIR' first")
    meta = read_metadata(p)
    fmt = format or meta.get("policy_format") or ("onnx" if p.suffix == ".onnx" else "torchscript")
    if fmt == "onnx":
        return OnnxPolicy(p, meta, threads=threads)
    if fmt == "torchscript":
        return TorchScriptPolicy(p, meta, threads=threads)
    raise ConfigError(f"unknown policy format {fmt!r}; use 'onnx' or 'torchscript'")


__all__ = [
    "CallablePolicy",
    "EMBEDDED_METADATA_KEY",
    "METADATA_FORMAT",
    "OnnxPolicy",
    "Policy",
    "TorchScriptPolicy",
    "load_policy",
    "metadata_path",
    "read_metadata",
]

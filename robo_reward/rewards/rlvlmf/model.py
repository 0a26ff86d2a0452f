"""The image reward model of RL-VLM-F: Bradley–Terry on single frames.

With preference labels over pairs of frames, the reward model ``r(frame)`` is fitted by
Bradley–Terry: ``P(frame₁ ≻ frame₂) = logistic(r(frame₁) − r(frame₂))`` — the partial-return
model of :mod:`robo_reward.rewards.preference.bt` with segments of length one. Three encoders:

* ``clip`` — a frozen CLIP image embedding (open_clip), with an MLP ensemble head
  (:class:`~robo_reward.rewards.preference.bt.RewardEnsemble`, trained by
  :func:`~robo_reward.rewards.preference.bt.train_bradley_terry`);
* ``pixels`` — the frame averaged down to ``size × size`` RGB pixels (no learned
  features), with the same MLP ensemble head;
* ``cnn`` — a small convolutional net per ensemble member, trained end to end on frames
  resized to ``size × size`` (the form of the reward model in Wang et al. 2024).

Inputs of the MLP head are standardised with the mean and standard deviation of the
training features (each standard deviation floored at a tenth of their mean, so a
feature that never moved in training cannot blow up later). After training, the mean
and standard deviation of the predicted reward over the training frames are kept, and
:meth:`ImageRewardModel.predict` returns the reward standardised with them by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ConfigError
from ..vlm.model import DEFAULT_MODEL, DEFAULT_PRETRAINED

__all__ = ["EncoderSpec", "ImageRewardModel", "ENCODER_KINDS", "FILE_FORMAT"]

#: Encoders an :class:`ImageRewardModel` can use.
ENCODER_KINDS = ("clip", "pixels", "cnn")
#: The ``format`` key of files written by :meth:`ImageRewardModel.save`.
FILE_FORMAT = "robo_reward.rlvlmf"
_DEFAULT_SIZE = {"pixels": 16, "cnn": 64, "clip": 0}


@dataclass(frozen=True)
class EncoderSpec:
    """How frames become the reward model's input; saved with the model.

    Attributes:
        kind: ``"clip"``, ``"pixels"`` or ``"cnn"`` (see the module docstring).
        model: open_clip model name (``clip`` only).
        pretrained: open_clip tag or checkpoint file; ``None`` for random weights (tests).
        seed: seed of random CLIP weights.
        size: ``pixels``: side of the averaged-down image (default 16); ``cnn``: side of
            the network's input (default 64).
    """

    kind: str = "clip"
    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    seed: int = 0
    size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ConfigError(f"unknown encoder {self.kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
        if self.size is not None and int(self.size) < (16 if self.kind == "cnn" else 1):
            raise ConfigError(f"encoder size {self.size} is too small for {self.kind!r}")

    @property
    def side(self) -> int:
        """The image side used (``size`` or the kind's default)."""
        return int(self.size) if self.size else _DEFAULT_SIZE[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict (for saving)."""
        return asdict(self)


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of the vlm extra
        from ...core.errors import MissingDependencyError

        raise MissingDependencyError("torch", "vlm", "RL-VLM-F reward models") from exc
    return torch


def _check_frames(frames: Any) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ConfigError(f"frames must be uint8[n, H, W, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8, got {arr.dtype}")
    return arr


def _resize(frames: np.ndarray, side: int, device: Any, mode: str) -> Any:
    """``uint8[n, H, W, 3]`` → ``float32[n, 3, side, side]`` in [0, 1] (area average or bilinear)."""
    torch = _torch()
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] == (side, side):
        return x
    if mode == "area":
        return torch.nn.functional.adaptive_avg_pool2d(x, side)
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def _make_cnn(side: int, seed: int) -> Any:
    """A small conv net: 4 stride-2 3×3 convolutions (16, 32, 32, 32 channels), then 128 → 1."""
    torch = _torch()
    nn = torch.nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        layers: list[Any] = []
        c, s = 3, side
        for ch in (16, 32, 32, 32):
            layers += [nn.Conv2d(c, ch, 3, stride=2, padding=1), nn.LeakyReLU()]
            c, s = ch, (s + 1) // 2
        layers += [nn.Flatten(), nn.Linear(c * s * s, 128), nn.LeakyReLU(), nn.Linear(128, 1)]
        return nn.Sequential(*layers)


class ImageRewardModel:
    """A reward on rendered frames, learned from pairwise labels (Bradley–Terry over single frames).

    Args:
        encoder: an :class:`EncoderSpec`, a dict of its fields, or a kind name.
        ensemble_size: members of the ensemble (their mean is the reward; their spread a term).
        hidden: hidden widths of the MLP head (``clip``/``pixels``).
        activation: activation of the MLP head (see :class:`~robo_reward.rewards.preference.bt.RewardModelConfig`).
        output_activation: ``None``, ``"tanh"`` or ``"sigmoid"`` on the head's output.
        seed: seed of the initial weights (member ``k`` uses ``seed + k``).
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.

    Example::

        model = ImageRewardModel(EncoderSpec("pixels", size=16))
        model.fit(frames, pairs, preferences)          # preferences = P(first ≻ second)
        r = model.predict(frames)                       # float32[n], standardised
    """

    kind = "rl-vlm-f"

    def __init__(
        self,
        encoder: EncoderSpec | dict[str, Any] | str | None = None,
        *,
        ensemble_size: int = 3,
        hidden: tuple[int, ...] = (256, 256),
        activation: str = "leaky_relu",
        output_activation: str | None = None,
        seed: int = 0,
        device: str = "cpu",
    ):
        if encoder is None:
            encoder = EncoderSpec()
        elif isinstance(encoder, str):
            encoder = EncoderSpec(kind=encoder)
        elif isinstance(encoder, dict):
            encoder = EncoderSpec(**encoder)
        if not isinstance(encoder, EncoderSpec):
            raise ConfigError(f"encoder must be an EncoderSpec, a dict or a kind name, got {type(encoder).__name__}")
        if int(ensemble_size) < 1:
            raise ConfigError(f"ensemble_size must be >= 1, got {ensemble_size}")
        from ..vlm.model import resolve_device

        self.spec = encoder
        self.ensemble_size = int(ensemble_size)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.output_activation = output_activation
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.head: Any = None  # RewardEnsemble, built when the feature width is known
        self.cnn: Any = None
        self._clip: Any = None
        self.reward_mean = 0.0
        self.reward_std = 1.0
        self.meta: dict[str, Any] = {}
        if self.spec.kind == "cnn":
            torch = _torch()
            self.cnn = torch.nn.ModuleList(
                [_make_cnn(self.spec.side, self.seed + k) for k in range(self.ensemble_size)]
            ).to(self.device)
            self.cnn.eval()

    # ------------------------------------------------------------------ inputs
    @property
    def trained(self) -> bool:
        """Whether the model has been fitted (or loaded)."""
        return self.head is not None or bool(self.meta.get("trained"))

    def _clip_encoder(self) -> Any:
        if self._clip is None:
            from ..vlm.model import get_encoder

            self._clip = get_encoder(self.spec.model, self.spec.pretrained, str(self.device),
                                     "fp32" if self.device.type == "cpu" else "auto", seed=self.spec.seed)
        return self._clip

    def features(self, frames: Any, batch_size: int = 256) -> np.ndarray:
        """Encoder features ``float32[n, D]`` of frames (``clip`` and ``pixels`` encoders only)."""
        arr = _check_frames(frames)
        if self.spec.kind == "cnn":
            raise ConfigError("the cnn encoder has no frozen features; call predict() on frames")
        torch = _torch()
        outs = []
        for i in range(0, len(arr), batch_size):
            chunk = arr[i : i + batch_size]
            if self.spec.kind == "pixels":
                with torch.inference_mode():
                    outs.append(_resize(chunk, self.spec.side, self.device, "area").flatten(1).cpu().numpy())
            else:
                outs.append(self._clip_encoder().encode_frames(chunk, batch_size).float().cpu().numpy())
        if not outs:
            width = 3 * self.spec.side**2 if self.spec.kind == "pixels" else self._clip_encoder().embed_dim
            return np.zeros((0, width), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def _build_head(self, feats: np.ndarray) -> None:
        from ..preference.bt import RewardEnsemble, RewardModelConfig

        torch = _torch()
        cfg = RewardModelConfig(obs_shape=(feats.shape[1],), action_shape=(), use_action=False, hidden=self.hidden,
                                activation=self.activation, output_activation=self.output_activation,
                                ensemble_size=self.ensemble_size, normalize=False, seed=self.seed)
        head = RewardEnsemble(cfg).to(self.device)
        mean = feats.mean(0)
        std = feats.std(0)
        std = np.maximum(std, 0.1 * float(std.mean()) + 1e-8)
        with torch.no_grad():
            for m in head.members:
                m.input_mean.copy_(torch.as_tensor(mean, device=self.device))
                m.input_std.copy_(torch.as_tensor(std, device=self.device))
            head.normalizer_fitted.fill_(True)
        self.head = head

    # ------------------------------------------------------------------ outputs
    def predict_members(self, frames: Any, batch_size: int = 256) -> np.ndarray:
        """Each member's raw reward, ``float32[K, n]``."""
        arr = _check_frames(frames)
        if self.spec.kind == "cnn":
            torch = _torch()
            outs = []
            with torch.inference_mode():
                for i in range(0, len(arr), batch_size):
                    x = _resize(arr[i : i + batch_size], self.spec.side, self.device, "bilinear")
                    outs.append(torch.stack([m(x).squeeze(-1) for m in self.cnn]).float().cpu().numpy())
            if not outs:
                return np.zeros((self.ensemble_size, 0), np.float32)
            return np.concatenate(outs, axis=1).astype(np.float32, copy=False)
        if self.head is None:
            raise ConfigError("the reward model is not trained yet: call fit() or load a saved model")
        return self.head.predict_members(obs=self.features(arr, batch_size))

    def predict(self, frames: Any, normalized: bool = True, batch_size: int = 256) -> np.ndarray:
        """The ensemble-mean reward ``float32[n]`` (standardised with the training-frame statistics unless told not to)."""
        r = self.predict_members(frames, batch_size).mean(axis=0)
        if normalized:
            r = (r - self.reward_mean) / self.reward_std
        return r.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        frames: Any,
        pairs: Any,
        preferences: Any,
        *,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int | None = 0,
        progress: bool = False,
        num_threads: int | None = 1,
    ) -> Any:
        """Fit the ensemble to labelled pairs of frames; returns a :class:`~robo_reward.rewards.preference.bt.TrainResult`.

        Args:
            frames: the frame pool ``uint8[N, H, W, 3]``.
            pairs: ``int[M, 2]`` indices into ``frames``.
            preferences: ``float[M]``, ``P(frames[pairs[i, 0]] ≻ frames[pairs[i, 1]])`` (1, 0, or 0.5).
            epochs, batch_size, lr, weight_decay, seed: optimisation (Adam; each member
                sees its own shuffling of the pairs).
            progress: show a progress bar over epochs.
            num_threads: torch threads while training (``None``: unchanged).

        Training again continues from the current weights.
        """
        from ..preference.bt import torch_threads

        arr = _check_frames(frames)
        pr = np.asarray(pairs, np.int64)
        y = np.asarray(preferences, np.float64).reshape(-1)
        if pr.ndim != 2 or pr.shape[1] != 2 or len(pr) != len(y):
            raise ConfigError(f"need pairs int[M, 2] and one preference per pair, got {pr.shape} and {y.shape}")
        if not len(pr):
            raise ConfigError("no labelled pairs to train on (were all labels unsure?)")
        if not np.all((y >= 0) & (y <= 1)):
            raise ConfigError("preferences must lie in [0, 1]; drop unsure pairs (NaN) first")
        used, inv = np.unique(pr, return_inverse=True)
        inv = inv.reshape(pr.shape)
        with torch_threads(num_threads):
            if self.spec.kind == "cnn":
                result = self._fit_cnn(arr[used], inv, y, epochs, batch_size, lr, weight_decay, seed, progress)
            else:
                result = self._fit_head(arr[used], inv, y, epochs, batch_size, lr, weight_decay, seed, progress)
            r = self.predict_members(arr[used]).mean(axis=0)
        self.reward_mean = float(r.mean())
        self.reward_std = float(max(r.std(), 1e-6))
        self.meta["trained"] = True
        return result

    def _fit_head(self, pool: np.ndarray, inv: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float,
                  weight_decay: float, seed: int | None, progress: bool) -> Any:
        from ..preference import PreferencePairs, SegmentBatch
        from ..preference.bt import train_bradley_terry

        feats = self.features(pool)
        if self.head is None:
            self._build_head(feats)
        pairs = PreferencePairs(SegmentBatch(feats[inv[:, 0]][:, None, :]), SegmentBatch(feats[inv[:, 1]][:, None, :]), y)
        return train_bradley_terry(self.head, pairs, epochs=epochs, batch_size=batch_size, lr=lr,
                                   weight_decay=weight_decay, seed=seed, progress=progress, num_threads=None)

    def _fit_cnn(self, pool: np.ndarray, inv: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float,
                 weight_decay: float, seed: int | None, progress: bool) -> Any:
        from ..preference.bt import fit_member_logits

        torch = _torch()
        if epochs < 1 or batch_size < 1 or not lr > 0 or weight_decay < 0:
            raise ConfigError("fit needs epochs >= 1, batch_size >= 1, lr > 0 and weight_decay >= 0")
        with torch.inference_mode():
            x = torch.cat([_resize(pool[i : i + 256], self.spec.side, self.device, "bilinear")
                           for i in range(0, len(pool), 256)])
        x = x.clone()  # leave inference mode
        i1 = torch.as_tensor(inv[:, 0], device=self.device)
        i2 = torch.as_tensor(inv[:, 1], device=self.device)
        yt = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        result = fit_member_logits(
            self.cnn, self.cnn, lambda member, idx: member(x[i1[idx]]).squeeze(-1) - member(x[i2[idx]]).squeeze(-1),
            yt, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, progress=progress,
        )
        with torch.inference_mode():
            r = torch.stack([m(x).squeeze(-1) for m in self.cnn]).cpu().numpy()
        decided = y != 0.5
        if decided.any():
            target = y[decided] > 0.5
            result.accuracy = [float(np.mean((r[k, inv[decided, 0]] > r[k, inv[decided, 1]]) == target))
                               for k in range(len(self.cnn))]
        return result

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the model (encoder spec, weights, reward statistics) to one torch file; returns the path."""
        torch = _torch()
        if not self.trained:
            raise ConfigError("the reward model is not trained; fit() it before saving")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "format": FILE_FORMAT, "version": 1, "kind": self.kind, "encoder": self.spec.to_dict(),
            "config": {"ensemble_size": self.ensemble_size, "hidden": list(self.hidden), "activation": self.activation,
                       "output_activation": self.output_activation, "seed": self.seed},
            "reward_mean": self.reward_mean, "reward_std": self.reward_std, "meta": dict(self.meta),
        }
        if self.head is not None:
            state["head"] = {"config": self.head.config.to_dict(),
                             "state_dict": {k: v.detach().cpu() for k, v in self.head.state_dict().items()}}
        if self.cnn is not None:
            state["cnn"] = {k: v.detach().cpu() for k, v in self.cnn.state_dict().items()}
        torch.save(state, path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "ImageRewardModel":
        """Read a model written by :meth:`save`.

        Raises:
            ConfigError: the file is missing or holds something else.
        """
        torch = _torch()
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"RL-VLM-F reward model {path} does not exist; fit one with fit_rlvlmf() "
                              "or `robo-reward reward fit rl-vlm-f`")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise ConfigError(f"could not read {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
            raise ConfigError(f"{path} is not an RL-VLM-F reward model (written by ImageRewardModel.save)")
        cfg = state["config"]
        model = cls(EncoderSpec(**state["encoder"]), ensemble_size=cfg["ensemble_size"], hidden=tuple(cfg["hidden"]),
                    activation=cfg["activation"], output_activation=cfg["output_activation"], seed=cfg["seed"],
                    device=device)
        if "head" in state:
            from ..preference.bt import RewardEnsemble

            model.head = RewardEnsemble.from_state(state["head"]).to(model.device)
        if "cnn" in state:
            model.cnn.load_state_dict(state["cnn"])
            model.cnn.eval()
        model.reward_mean = float(state["reward_mean"])
        model.reward_std = float(state["reward_std"])
        model.meta = dict(state.get("meta") or {})
        model.meta["trained"] = True
        return model

    def __repr__(self) -> str:
        return (f"ImageRewardModel(encoder={self.spec.kind!r}, members={self.ensemble_size}, "
                f"trained={self.trained}, device={str(self.device)!r})")

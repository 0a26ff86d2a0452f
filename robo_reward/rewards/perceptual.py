"""Perceptual rewards from a few demonstrations (Sermanet, Xu & Levine 2016).

"Unsupervised Perceptual Rewards for Imitation Learning" (RSS 2016) builds a dense
reward from a handful of unlabelled demonstration videos:

1. **Features** — every frame goes through a pretrained vision model
   (:func:`make_feature_extractor`: the open_clip visual tower, or a torchvision ResNet).
2. **Segmentation** — each demo is split into ``n_steps`` contiguous steps so that the
   average, over steps, of the within-step feature standard deviation is smallest
   (:func:`segment_features`). The paper searches the splits recursively; we solve the
   same objective exactly by dynamic programming over split points, with a minimum
   step length.
3. **Feature selection** — with features z-normalised over all demo frames, for step
   ``i`` the frames of the step are the positives and all other frames the negatives;
   features are ranked by ``α|μ⁺ − μ⁻| − (σ⁺ + σ⁻)`` (α = 5) and the ``top_k`` (32 in the
   paper) are kept (:func:`rank_features`).
4. **Reward** — step ``i`` scores a frame by how well its selected features match the
   step's statistics, ``R_i = exp(−½ · mean_j ((f_j − μ⁺_ij) / σ⁺_ij)²)`` in ``(0, 1]``, and
   the steps are combined so that later steps count more: step ``i`` (1-based) is
   weighted by ``2^(i−1)``, normalised so the reward lies in ``(0, 1]``
   (:meth:`PerceptualRewardModel.score_features`).

A fitted model (:class:`PerceptualRewardModel`) is saved to one ``.npz`` file that also
records how to rebuild its feature extractor; the registered reward plugin
``perceptual`` loads it (``"perceptual:model_path=runs/pp.npz"``) and scores rendered
frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import ConfigError, MissingDependencyError
from ..core.registry import register_reward
from ..core.types import RewardOutput, RewardPlugin, TransitionBatch

#: Weight of the mean-separation term in the feature ranking (α in the paper).
DEFAULT_ALPHA = 5.0
#: Features kept per step (32 in the paper).
DEFAULT_TOP_K = 32
_EPS = 1e-6

# ----------------------------------------------------------------------------- feature extractors


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a feature extractor; stored in fitted model files so the plugin rebuilds it.

    Attributes:
        kind: ``"clip"`` (open_clip visual tower, unit-norm image embedding) or
            ``"torchvision"`` (a torchvision classification network, pooled features
            before the classifier).
        model: open_clip model name (``"ViT-B-32"``) or torchvision model name (``"resnet18"``).
        pretrained: open_clip pretrained tag / checkpoint file; for torchvision
            ``"default"`` (the library's normal download), a local ``.pth`` state-dict
            file, or ``None`` for random weights (tests).
        seed: seed of the random initialisation when ``pretrained`` is ``None``.
        image_size: torchvision only — frames are resized to this square size.
    """

    kind: str = "torchvision"
    model: str = "resnet18"
    pretrained: str | None = "default"
    seed: int = 0
    image_size: int = 224

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-serialisable dict."""
        return {"kind": self.kind, "model": self.model, "pretrained": self.pretrained, "seed": self.seed,
                "image_size": self.image_size}


class FeatureExtractor:
    """Turns ``uint8[n, H, W, 3]`` frames into ``float32[n, D]`` features, in batches.

    Build one with :func:`make_feature_extractor`; call :meth:`encode`.
    """

    def __init__(self, spec: BackboneSpec, fn: Callable[[np.ndarray], np.ndarray]):
        self.spec = spec
        self._fn = fn

    def encode(self, frames: Any, batch_size: int = 64) -> np.ndarray:
        """Features ``float32[n, D]`` of ``frames`` (``uint8[n, H, W, 3]``)."""
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ConfigError(f"frames must be uint8[n, H, W, 3], got shape {arr.shape}")
        outs = [self._fn(arr[i : i + batch_size]) for i in range(0, len(arr), batch_size)]
        if not outs:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.spec})"


def _torchvision_extractor(spec: BackboneSpec, device: str) -> FeatureExtractor:
    try:
        import torch
        import torchvision
    except ImportError as exc:
        raise MissingDependencyError("torchvision", "vlm", "perceptual rewards") from exc
    from .vlm.model import resolve_device

    dev = resolve_device(device)
    try:
        builder = torchvision.models.get_model_builder(spec.model)
    except ValueError as exc:
        raise ConfigError(f"unknown torchvision model {spec.model!r}: {exc}") from exc
    pre = spec.pretrained
    if pre is None or str(pre).lower() in ("", "none", "null", "random"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.seed))
            net = builder(weights=None)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    elif Path(str(pre)).suffix in (".pth", ".pt", ".bin") or Path(str(pre)).exists():
        path = Path(str(pre)).expanduser()
        if not path.is_file():
            raise ConfigError(f"torchvision weights file {path} does not exist; give a state-dict file or 'default'")
        net = builder(weights=None)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        weights = torchvision.models.get_model_weights(spec.model)
        w = weights.DEFAULT if str(pre).lower() == "default" else weights[str(pre)]
        try:
            net = builder(weights=w)
        except Exception as exc:  # the download failed (offline)
            from .vlm.model import MissingWeightsError

            raise MissingWeightsError(
                f"could not get torchvision weights {w} for {spec.model!r}: {exc}. Put the state dict in a local "
                f"file and pass pretrained=/path/to/weights.pth, or copy torch's hub cache (~/.cache/torch)."
            ) from exc
        mean, std = w.transforms().mean, w.transforms().std
    # Pooled features before the classification head.
    if hasattr(net, "fc"):
        net.fc = torch.nn.Identity()
    elif hasattr(net, "classifier"):
        net.classifier = torch.nn.Identity()
    elif hasattr(net, "heads"):
        net.heads = torch.nn.Identity()
    net.eval().to(dev)
    m = torch.tensor(mean, device=dev).view(1, 3, 1, 1)
    s = torch.tensor(std, device=dev).view(1, 3, 1, 1)
    size = int(spec.image_size)

    def fn(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(dev).permute(0, 3, 1, 2).float() / 255.0
            if x.shape[-2:] != (size, size):
                x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            return net((x - m) / s).float().flatten(1).cpu().numpy()

    return FeatureExtractor(spec, fn)


def _clip_extractor(spec: BackboneSpec, device: str) -> FeatureExtractor:
    from .vlm.model import ClipEncoder

    enc = ClipEncoder(spec.model, spec.pretrained, device=device, precision="fp32" if device == "cpu" else "auto",
                      seed=spec.seed)

    def fn(frames: np.ndarray) -> np.ndarray:
        return enc.encode_frames(frames).float().cpu().numpy()

    return FeatureExtractor(spec, fn)


def make_feature_extractor(spec: BackboneSpec | dict[str, Any] | None = None, device: str = "auto") -> FeatureExtractor:
    """Build the feature extractor described by ``spec`` (default: torchvision ResNet-18, downloaded weights).

    Raises:
        ConfigError: unknown ``kind`` or model name.
        MissingWeightsError: pretrained weights cannot be found locally nor downloaded.
    """
    if spec is None:
        spec = BackboneSpec()
    elif isinstance(spec, dict):
        spec = BackboneSpec(**spec)
    if spec.kind == "torchvision":
        return _torchvision_extractor(spec, device)
    if spec.kind == "clip":
        return _clip_extractor(spec, device)
    raise ConfigError(f"unknown backbone kind {spec.kind!r}; use 'torchvision' or 'clip'")


# ----------------------------------------------------------------------------- segmentation


def _segment_costs(features: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    """Return ``cost(starts, b)``: for each start ``a``, the mean over feature dims of the std of ``features[a:b]``."""
    x = np.asarray(features, dtype=np.float64)
    c1 = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, 0)])
    c2 = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x * x, 0)])

    def cost(a: np.ndarray, b: int) -> np.ndarray:
        n = (b - a)[:, None]
        mu = (c1[b] - c1[a]) / n
        var = np.maximum((c2[b] - c2[a]) / n - mu * mu, 0.0)
        return np.sqrt(var).mean(1)

    return cost


#: How :func:`segment_features` averages the within-step feature spread.
SEGMENT_WEIGHTINGS = ("length", "step")


def segment_features(features: np.ndarray, n_steps: int, min_length: int = 1, weighting: str = "length") -> list[int]:
    """Split a ``[T, D]`` feature sequence into ``n_steps`` contiguous steps.

    Minimises the average within-step feature standard deviation (mean over feature
    dimensions), with every step at least ``min_length`` frames long. Sermanet et al.
    (2016, §3.1) search the split points recursively; this solves the same objective
    exactly by dynamic programming in ``O(n_steps · T²)`` cost evaluations.

    ``weighting`` says what the average is over:

    * ``"length"`` (default): over frames, i.e. each step's std weighted by its length;
    * ``"step"``: over steps, each counting once. This lets several minimum-length steps
      sit where nothing changes (they cost almost nothing) and one long step take the
      rest: on MetaWorld scripted demos it agreed with the task phases less well than
      random splits (``benchmarks/perceptual_segmentation.py``), so it is not the default.

    Returns:
        the ``n_steps − 1`` boundaries, i.e. the start frame of steps ``2..n_steps``.

    Raises:
        ConfigError: ``T < n_steps · min_length`` or bad arguments.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"features must be [T, D], got shape {x.shape}")
    T = x.shape[0]
    n_steps, min_length = int(n_steps), int(min_length)
    if n_steps < 1 or min_length < 1:
        raise ConfigError("n_steps and min_length must be positive integers")
    if weighting not in SEGMENT_WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {', '.join(SEGMENT_WEIGHTINGS)}, got {weighting!r}")
    if T < n_steps * min_length:
        raise ConfigError(f"a demo of {T} frames cannot be split into {n_steps} steps of at least {min_length} frames")
    step_cost = _segment_costs(x)
    if weighting == "length":
        def cost(a: np.ndarray, b: int) -> np.ndarray:
            return (b - a) * step_cost(a, b)
    else:
        cost = step_cost
    inf = float("inf")
    # best[k][t]: smallest summed cost of splitting x[:t] into k steps; arg[k][t]: start of the k-th step.
    best = np.full((n_steps + 1, T + 1), inf)
    arg = np.zeros((n_steps + 1, T + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, n_steps + 1):
        lo_t = k * min_length
        hi_t = T - (n_steps - k) * min_length
        for t in range(lo_t, hi_t + 1):
            starts = np.arange((k - 1) * min_length, t - min_length + 1)
            if k == 1:
                starts = starts[:1]  # the first step starts at frame 0
            v = best[k - 1, starts] + cost(starts, t)
            j = int(np.argmin(v))
            best[k, t], arg[k, t] = v[j], starts[j]
    bounds = []
    t = T
    for k in range(n_steps, 0, -1):
        s = int(arg[k, t])
        if k > 1:
            bounds.append(s)
        t = s
    return sorted(bounds)


def labels_from_boundaries(length: int, boundaries: Sequence[int]) -> np.ndarray:
    """Per-frame step index ``int64[length]`` (0-based) from the step start frames ``boundaries``."""
    lab = np.zeros(int(length), dtype=np.int64)
    for b in sorted(boundaries):
        lab[int(b) :] += 1
    return lab


# ----------------------------------------------------------------------------- feature ranking


def rank_features(z: np.ndarray, positive: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Score every feature for separating ``positive`` rows from the rest.

    ``score_j = α|μ⁺_j − μ⁻_j| − (σ⁺_j + σ⁻_j)`` on (already z-normalised) features ``z``
    ``[N, D]``; ``positive`` is ``bool[N]``. Higher is better (Sermanet et al. 2016, §3.2).
    """
    z = np.asarray(z, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    if pos.shape != (z.shape[0],) or pos.all() or not pos.any():
        raise ConfigError("positive must be bool[N] with at least one positive and one negative row")
    p, n = z[pos], z[~pos]
    return alpha * np.abs(p.mean(0) - n.mean(0)) - (p.std(0) + n.std(0))


# ----------------------------------------------------------------------------- the model


@dataclass
class PerceptualRewardModel:
    """A fitted perceptual reward: normalisation, per-step selected features and their statistics.

    Attributes:
        norm_mean, norm_std: ``float32[D]`` z-normalisation of raw features.
        selected: ``int64[n_steps, k]`` feature indices chosen for each step.
        step_mean, step_std: ``float32[n_steps, k]`` positive-class statistics of those features.
        backbone: the :class:`BackboneSpec` as a dict (``None`` when fitted on given features).
        boundaries: the step boundaries found in each demo (for inspection).
        alpha: α used in the ranking.
    """

    norm_mean: np.ndarray
    norm_std: np.ndarray
    selected: np.ndarray
    step_mean: np.ndarray
    step_std: np.ndarray
    backbone: dict[str, Any] | None = None
    boundaries: list[list[int]] = field(default_factory=list)
    alpha: float = DEFAULT_ALPHA

    @property
    def n_steps(self) -> int:
        """Number of steps the demos were split into."""
        return int(self.selected.shape[0])

    @classmethod
    def fit_features(
        cls,
        demos: Sequence[np.ndarray],
        n_steps: int,
        min_length: int = 1,
        top_k: int = DEFAULT_TOP_K,
        alpha: float = DEFAULT_ALPHA,
        backbone: dict[str, Any] | None = None,
        weighting: str = "length",
    ) -> "PerceptualRewardModel":
        """Fit on per-demo feature sequences ``[T_d, D]``: segment each demo, rank and select features per step.

        ``weighting`` is :func:`segment_features`'s.
        """
        demos = [np.asarray(d, dtype=np.float64) for d in demos]
        if not demos:
            raise ConfigError("at least one demo is needed")
        dims = {d.shape[1] for d in demos if d.ndim == 2}
        if len(dims) != 1 or any(d.ndim != 2 for d in demos):
            raise ConfigError("every demo must be a [T, D] feature array with the same D")
        allf = np.concatenate(demos)
        mean, std = allf.mean(0), allf.std(0) + _EPS
        bounds, labels = [], []
        for d in demos:
            # Segment on the raw features: z-normalising first would give every noise dimension as much
            # weight as the few dimensions that change between steps.
            b = segment_features(d, n_steps, min_length, weighting)
            bounds.append(b)
            labels.append(labels_from_boundaries(len(d), b))
        z = (allf - mean) / std
        lab = np.concatenate(labels)
        k = min(int(top_k), z.shape[1])
        sel, mu, sd = [], [], []
        for i in range(n_steps):
            pos = lab == i
            if n_steps == 1:
                idx = np.argsort(z.std(0))[:k]  # one step: keep the steadiest features
            else:
                idx = np.argsort(-rank_features(z, pos, alpha), kind="stable")[:k]
            sel.append(idx)
            mu.append(z[pos][:, idx].mean(0))
            sd.append(np.maximum(z[pos][:, idx].std(0), 0.1))  # floor: a constant feature must not dominate
        return cls(mean.astype(np.float32), std.astype(np.float32), np.asarray(sel, np.int64),
                   np.asarray(mu, np.float32), np.asarray(sd, np.float32), backbone, bounds, float(alpha))

    def step_scores(self, features: np.ndarray) -> np.ndarray:
        """Per-step match ``float32[n, n_steps]`` in ``(0, 1]``: ``exp(−½ mean_j z-score²)`` over the step's features."""
        z = (np.asarray(features, dtype=np.float64) - self.norm_mean) / self.norm_std
        out = np.empty((z.shape[0], self.n_steps))
        for i in range(self.n_steps):
            d = (z[:, self.selected[i]] - self.step_mean[i]) / self.step_std[i]
            out[:, i] = np.exp(-0.5 * np.mean(d * d, axis=1))
        return out.astype(np.float32)

    def score_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Progress reward ``float32[n]`` and per-step scores ``float32[n, n_steps]``.

        Reward ``= Σ_i 2^(i−1) R_i / (2^n − 1)`` so that matching a later step is worth more.
        """
        s = self.step_scores(features)
        w = 2.0 ** np.arange(self.n_steps)
        return (s @ w / w.sum()).astype(np.float32), s

    # -- files

    def save(self, path: str | Path) -> Path:
        """Write the model to one ``.npz`` file (arrays plus a JSON header)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": "robo_reward.perceptual/1", "backbone": self.backbone, "boundaries": self.boundaries,
                  "alpha": self.alpha}
        with open(path, "wb") as f:
            np.savez(f, norm_mean=self.norm_mean, norm_std=self.norm_std, selected=self.selected,
                     step_mean=self.step_mean, step_std=self.step_std, header=np.array(json.dumps(header)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PerceptualRewardModel":
        """Read a model written by :meth:`save`.

        Raises:
            ConfigError: the file is missing or not a perceptual reward model.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"perceptual reward model {path} does not exist; fit one with fit_perceptual_reward()")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: z[k] for k in ("norm_mean", "norm_std", "selected", "step_mean", "step_std")}
        except (KeyError, ValueError, OSError) as exc:
            raise ConfigError(f"{path} is not a perceptual reward model file: {exc}") from exc
        if header.get("format") != "robo_reward.perceptual/1":
            raise ConfigError(f"{path} has format {header.get('format')!r}, expected 'robo_reward.perceptual/1'")
        return cls(**arrays, backbone=header.get("backbone"), boundaries=header.get("boundaries", []),
                   alpha=float(header.get("alpha", DEFAULT_ALPHA)))


def fit_perceptual_reward(
    demos: Sequence[np.ndarray],
    n_steps: int = 3,
    min_length: int = 5,
    top_k: int = DEFAULT_TOP_K,
    alpha: float = DEFAULT_ALPHA,
    backbone: BackboneSpec | dict[str, Any] | None = None,
    device: str = "auto",
    batch_size: int = 64,
    weighting: str = "length",
) -> PerceptualRewardModel:
    """Fit a :class:`PerceptualRewardModel` on demo videos (each ``uint8[T, H, W, 3]``).

    Args:
        demos: the demonstration videos (see :func:`load_demo_frames`).
        n_steps: how many steps to split every demo into.
        min_length: shortest allowed step, in frames.
        top_k: features kept per step.
        alpha: α of the ranking ``α|μ⁺ − μ⁻| − (σ⁺ + σ⁻)``.
        backbone: the vision model (default: torchvision ResNet-18 with downloaded weights).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        weighting: how the segmentation averages the within-step spread (see
            :func:`segment_features`).
    """
    spec = backbone if isinstance(backbone, BackboneSpec) else BackboneSpec(**(backbone or {}))
    ext = make_feature_extractor(spec, device)
    feats = [ext.encode(d, batch_size) for d in demos]
    return PerceptualRewardModel.fit_features(feats, n_steps, min_length, top_k, alpha, backbone=spec.to_dict(),
                                              weighting=weighting)


def load_demo_frames(path: str | Path) -> np.ndarray:
    """Read one demo as ``uint8[T, H, W, 3]`` from a video file, a folder of images, or an ``.npz``/``.npy``.

    An ``.npz`` must hold a ``frames`` array (as written by :mod:`robo_reward.offline.demos`).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"demo {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "frames" not in z:
                raise ConfigError(f"{path} has no 'frames' array")
            return np.asarray(z["frames"], np.uint8)
    if path.suffix == ".npy":
        return np.asarray(np.load(path), np.uint8)
    import imageio.v3 as iio

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        if not files:
            raise ConfigError(f"folder {path} holds no .png/.jpg frames")
        return np.stack([np.asarray(iio.imread(p))[..., :3] for p in files]).astype(np.uint8)
    return np.asarray(iio.imread(path))[..., :3].astype(np.uint8)


# ----------------------------------------------------------------------------- the plugin


@register_reward("perceptual")
class PerceptualReward(RewardPlugin):
    """Perceptual progress reward from demos (Sermanet et al. 2016); scores rendered frames with a fitted model.

    Args:
        model_path: a model file written by :meth:`PerceptualRewardModel.save`
            (``robo-reward`` fits one with :func:`fit_perceptual_reward`).
        device: where the vision backbone runs (``"auto"``: CUDA when present).
        batch_size: most frames per forward pass.
        task: the task card (unused; accepted so specs can be built with a task).

    Terms: ``step_1 .. step_n`` (each step's match in ``(0, 1]``) and ``stage`` (the
    best-matching step, 1-based).
    """

    requires = frozenset({"frames"})

    def __init__(self, model_path: str, device: str = "auto", batch_size: int = 64, task: Any = None):
        self.model = PerceptualRewardModel.load(model_path)
        if self.model.backbone is None:
            raise ConfigError(f"{model_path} was fitted on given features, not frames; it has no backbone to score frames")
        self.extractor = make_feature_extractor(self.model.backbone, device)
        self.batch_size = int(batch_size)

    def compute(self, batch: TransitionBatch) -> RewardOutput:
        """Score ``batch.frames`` with the fitted model."""
        if batch.frames is None:
            raise ConfigError("the perceptual reward needs rendered frames (render_mode='rgb_array')")
        feats = self.extractor.encode(batch.frames, self.batch_size)
        reward, steps = self.model.score_features(feats)
        terms = {f"step_{i + 1}": steps[:, i] for i in range(steps.shape[1])}
        terms["stage"] = (steps.argmax(1) + 1).astype(np.float32)
        return RewardOutput(reward, terms)

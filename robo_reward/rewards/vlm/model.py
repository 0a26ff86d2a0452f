"""CLIP models through ``open_clip``: finding weights without waiting, encoding frames and prompts in batches.

* :func:`resolve_weights` decides where a model's weights come from — a pretrained tag
  that is already in the local cache, a local checkpoint file, a ``local-dir:`` folder,
  a download, or random initialisation — and raises :class:`MissingWeightsError` at
  once (no network retries) when they cannot be had.
* :class:`ClipEncoder` holds the model on its device (``auto``: CUDA when present, half
  precision there), turns ``uint8`` frame batches into model inputs with tensor
  operations only (resize, crop, normalise with the model's mean and std), and encodes
  text prompts once per prompt set.
* :func:`get_encoder` shares one :class:`ClipEncoder` per (model, weights, device,
  precision) within a process.

``torch`` and ``open_clip`` are imported only when a model is built, so importing this
module is cheap.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ...core.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Model used when none is given: small enough for a CPU, and a widely used LAION checkpoint.
DEFAULT_MODEL = "ViT-B-32"
#: Pretrained tag used with :data:`DEFAULT_MODEL`.
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
#: Values of ``pretrained`` that mean "random weights" (tests, benchmarks of speed only).
RANDOM_WEIGHTS = frozenset({"", "none", "null", "random"})
#: Seconds to wait for the weights server before declaring the machine offline.
PROBE_TIMEOUT_S = 3.0

_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_HF_CONFIG_FILE = "open_clip_config.json"
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class MissingWeightsError(ConfigError):
    """Pretrained CLIP weights are neither on this machine nor downloadable now.

    The message says where the library looked and how to provide the weights (copy a
    Hugging Face cache, pass a checkpoint file as ``pretrained=``, or a
    ``local-dir:`` model folder).
    """


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise MissingDependencyError("torch", "vlm", "VLM rewards (CLIP)") from exc
    return torch


def _import_open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError("open_clip_torch", "vlm", "VLM rewards (CLIP)") from exc
    return open_clip


# ----------------------------------------------------------------------------- device and precision


def resolve_device(device: str | Any = "auto") -> "torch.device":
    """Turn ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda:1"``, ... into a ``torch.device``.

    Raises:
        ConfigError: a CUDA device is asked for but CUDA is not available, or the name is invalid.
    """
    torch = _import_torch()
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


_PRECISIONS = ("fp32", "fp16", "bf16")


def resolve_precision(precision: str, device: "torch.device") -> str:
    """``"auto"`` → ``"fp16"`` on CUDA and ``"fp32"`` elsewhere; otherwise check the name.

    Raises:
        ConfigError: an unknown precision, or half precision on the CPU.
    """
    p = (precision or "auto").strip().lower()
    if p == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if p not in _PRECISIONS:
        raise ConfigError(f"precision must be 'auto' or one of {', '.join(_PRECISIONS)}, got {precision!r}")
    if p == "fp16" and device.type == "cpu":
        raise ConfigError("precision='fp16' is not supported on the CPU; use 'fp32' (or 'bf16')")
    return p


# ----------------------------------------------------------------------------- finding weights


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a CLIP model's weights come from, decided before anything is built.

    Attributes:
        kind: ``"random"``, ``"file"`` (a checkpoint on disk), ``"local-dir"`` (an
            open_clip model folder), ``"download"`` (a tag or ``hf-hub:`` id to fetch now).
        model_name: the name handed to ``open_clip.create_model``.
        pretrained: the ``pretrained`` argument handed to ``open_clip.create_model``.
        preprocess: the pretrained tag's preprocessing (mean, std, interpolation, resize
            mode) when the weights are loaded from a cached file of a tag.
        quick_gelu: the tag's weights were trained with QuickGELU activations.
        source: a human-readable description (logged, shown in errors and benchmark files).
    """

    kind: str
    model_name: str
    pretrained: str | None
    preprocess: dict[str, Any] = field(default_factory=dict)
    quick_gelu: bool = False
    source: str = ""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or Hugging Face's parsed constant) says not to use the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(getattr(constants, "HF_HUB_OFFLINE", False))
    except ImportError:
        return False


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(getattr(constants, "ENDPOINT", "https://huggingface.co"))
    except ImportError:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def probe_url(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Return ``None`` if ``url``'s server answers within ``timeout`` seconds, else the reason it did not.

    Any HTTP answer (even an error status) counts as reachable; only failures to connect do not.
    """
    parts = urllib.parse.urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    req = urllib.request.Request(root, method="HEAD")
    try:
        urllib.request.urlopen(req, timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except Exception as exc:  # URLError, socket.timeout, ConnectionError, ssl errors
        reason = getattr(exc, "reason", exc)
        return f"{parts.netloc} is unreachable ({reason})"
    return None


def _how_to_provide(model: str, pretrained: str | None, repo: str | None) -> str:
    lines = [
        "To provide the weights, do one of:",
        f"  1. on a machine with network access, run: python -c \"import open_clip; "
        f"open_clip.create_model('{model}', pretrained='{pretrained}')\""
        + (f" (or: huggingface-cli download {repo})" if repo else "")
        + ", then copy its Hugging Face cache (~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine"
        " (or pass cache_dir=/path/to/that/cache);",
        "  2. download the checkpoint file and pass its path: pretrained=/path/to/open_clip_pytorch_model.bin"
        " (the model name must match its architecture);",
        "  3. pass model='local-dir:/path/to/folder' with open_clip_config.json and the weights in that folder.",
        "For tests and speed benchmarks only, pretrained=None builds the architecture with random weights.",
    ]
    return "\n".join(lines)


def _hub_cached_file(repo: str, filenames: Sequence[str], cache_dir: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in filenames:
        hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    return None


def _hf_candidates(filename: str) -> list[str]:
    """The file a tag names, preceded by its safetensors alternative (open_clip prefers that)."""
    out = []
    if filename == "open_clip_pytorch_model.bin":
        out.append("open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        out.append(filename[:-4] + ".safetensors")
    out.append(filename)
    return out


def _has_hub() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


def _check_online(what: str, url: str, model: str, pretrained: str | None, repo: str | None, looked: str) -> None:
    """Raise :class:`MissingWeightsError` now if a download of ``what`` from ``url`` cannot work."""
    if hub_offline():
        raise MissingWeightsError(
            f"CLIP weights for {what} are not on this machine ({looked}) and HF_HUB_OFFLINE is set, "
            f"so they cannot be downloaded.\n{_how_to_provide(model, pretrained, repo)}"
        )
    reason = probe_url(url)
    if reason is not None:
        raise MissingWeightsError(
            f"CLIP weights for {what} are not on this machine ({looked}) and cannot be downloaded: {reason}.\n"
            f"{_how_to_provide(model, pretrained, repo)}"
        )


def resolve_weights(
    model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED, cache_dir: str | None = None
) -> ResolvedWeights:
    """Decide where the weights of ``model``/``pretrained`` come from, without waiting on the network.

    Args:
        model: an open_clip model name (``"ViT-B-32"``, ``"ViT-bigG-14"``), ``"hf-hub:org/repo"``
            or ``"local-dir:/path"`` (a folder with ``open_clip_config.json`` and weights).
        pretrained: an open_clip pretrained tag (``"laion2b_s34b_b79k"``), a checkpoint file,
            or ``None``/``"random"`` for random weights. Ignored for ``hf-hub:``/``local-dir:`` models.
        cache_dir: where downloads are cached (open_clip's ``cache_dir``; by default the
            Hugging Face cache, and ``~/.cache/clip`` for weights fetched by URL).

    Order: a cached copy is used without touching the network; otherwise, when
    ``HF_HUB_OFFLINE`` is set or the server does not answer within
    :data:`PROBE_TIMEOUT_S` seconds, :class:`MissingWeightsError` is raised at once.

    Raises:
        ConfigError: unknown model name or pretrained tag (the message lists what exists).
        MissingWeightsError: the weights are not available (the message says how to provide them).
    """
    open_clip = _import_open_clip()
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"model must be an open_clip model name, 'hf-hub:org/repo' or 'local-dir:/path', got {model!r}")
    model = model.strip()

    if model.startswith("local-dir:"):
        folder = Path(os.path.expanduser(model[len("local-dir:") :]))
        if not (folder / _HF_CONFIG_FILE).is_file():
            raise MissingWeightsError(
                f"model {model!r}: {folder} has no {_HF_CONFIG_FILE}; a local-dir: model folder needs it and the "
                "weights (e.g. open_clip_model.safetensors), as on the Hugging Face Hub"
            )
        if not any(p.suffix in _CHECKPOINT_SUFFIXES for p in folder.iterdir()):
            raise MissingWeightsError(f"model {model!r}: {folder} has no weights file ({', '.join(_CHECKPOINT_SUFFIXES)})")
        return ResolvedWeights("local-dir", f"local-dir:{folder}", None, source=f"local folder {folder}")

    if model.startswith("hf-hub:"):
        repo = model[len("hf-hub:") :].strip("/")
        config = _hub_cached_file(repo, [_HF_CONFIG_FILE], cache_dir)
        if config is not None:
            snapshot = Path(config).parent
            if any((snapshot / f).is_file() for f in _HF_WEIGHT_FILES):
                return ResolvedWeights("local-dir", f"local-dir:{snapshot}", None, source=f"cached {model} ({snapshot})")
        _check_online(f"{model!r}", _hub_endpoint(), model, None, repo, "not in the Hugging Face cache")
        return ResolvedWeights("download", model, None, source=f"download of {model}")

    name = model.replace("/", "-")
    known = open_clip.list_models()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ConfigError(
            f"open_clip has no model named {model!r}.{hint} See open_clip.list_models(), or use "
            "'hf-hub:org/repo' or 'local-dir:/path'"
        )

    if pretrained is None or (isinstance(pretrained, str) and pretrained.strip().lower() in RANDOM_WEIGHTS):
        return ResolvedWeights("random", name, None, source="random weights (pretrained=None)")
    pretrained = str(pretrained).strip()
    path = Path(os.path.expanduser(pretrained))
    if path.is_file():
        return ResolvedWeights("file", name, str(path), source=f"checkpoint {path}")
    if path.is_dir():
        if (path / _HF_CONFIG_FILE).is_file():
            return resolve_weights(f"local-dir:{path}", None, cache_dir)
        raise MissingWeightsError(
            f"pretrained={pretrained!r} is a folder; pass the checkpoint file inside it, or "
            f"model='local-dir:{path}' if it holds open_clip_config.json and the weights"
        )

    cfg = get_pretrained_cfg(name, pretrained)
    if not cfg:
        if os.sep in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES):
            raise MissingWeightsError(f"pretrained checkpoint file {pretrained!r} does not exist")
        tags = list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"{pretrained!r} is neither a pretrained tag of {name} nor an existing file. "
            f"Tags of {name}: {', '.join(tags) or '(none: pass a checkpoint file or pretrained=None)'}"
        )
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k) is not None}
    quick_gelu = bool(cfg.get("quick_gelu", False))
    if cfg.get("file"):
        return ResolvedWeights("file", name, cfg["file"], preprocess, quick_gelu, f"{name}/{pretrained} ({cfg['file']})")

    hub_id = cfg.get("hf_hub", "") if _has_hub() else ""
    url = cfg.get("url", "")
    repo = None
    looked = []
    if hub_id:
        # open_clip's convention: "org/repo/" (default file name) or "org/repo/file.bin"
        repo, filename = os.path.split(hub_id)
        filename = filename or "open_clip_pytorch_model.bin"
        hit = _hub_cached_file(repo, _hf_candidates(filename), cache_dir)
        if hit is not None:
            return ResolvedWeights("file", name, hit, preprocess, quick_gelu, f"cached {name}/{pretrained} ({hit})")
        looked.append(f"Hugging Face cache{' ' + cache_dir if cache_dir else ''}: no {repo}/{filename}")
    if url:
        target = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return ResolvedWeights("file", name, str(target), preprocess, quick_gelu, f"cached {name}/{pretrained} ({target})")
        looked.append(f"no {target}")
    server = _hub_endpoint() if hub_id else url
    if not server:
        raise MissingDependencyError("huggingface_hub", "vlm", f"downloading {name} pretrained={pretrained!r}")
    _check_online(f"{name} pretrained={pretrained!r}", server, name, pretrained, repo, "; ".join(looked) or "no cache")
    return ResolvedWeights("download", name, pretrained, source=f"download of {name}/{pretrained}")


# ----------------------------------------------------------------------------- preprocessing on tensors


@dataclass(frozen=True)
class PreprocessSpec:
    """How frames become model inputs (open_clip's inference transform, done on tensors).

    Attributes:
        size: ``(height, width)`` the model takes.
        mean, std: per-channel normalisation, for pixel values in ``[0, 1]``.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        resize_mode: ``"shortest"`` (resize the short side, centre-crop), ``"squash"``
            (resize to the size, ignoring aspect) or ``"longest"`` (resize the long side, pad).
        fill_color: padding value (0–255) for ``"longest"``.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @classmethod
    def from_open_clip(cls, cfg: dict[str, Any]) -> "PreprocessSpec":
        """Build from an open_clip ``model.visual.preprocess_cfg`` dict."""
        size = cfg.get("size", 224)
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        return cls(
            size=(int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
            interpolation=str(cfg.get("interpolation", "bicubic")),
            resize_mode=str(cfg.get("resize_mode", "shortest")),
            fill_color=int(cfg.get("fill_color", 0) or 0),
        )


def _resize(x: "torch.Tensor", size: tuple[int, int], interpolation: str) -> "torch.Tensor":
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    mode = "bicubic" if interpolation == "bicubic" else "bilinear"
    out = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0) if mode == "bicubic" else out


def preprocess_frames(frames: "torch.Tensor", spec: PreprocessSpec, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
    """Turn ``uint8[n, H, W, 3]`` frames (a tensor, on any device) into normalised ``[n, 3, h, w]`` model inputs.

    The same steps as open_clip's inference transform — resize with the model's
    interpolation (antialiased, as PIL does), centre-crop or pad, scale to ``[0, 1]``,
    normalise with the model's mean and std — on the whole batch at once, on the
    frames' device, without a PIL round trip per image.
    """
    torch = _import_torch()
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ConfigError(f"frames must be [n, H, W, 3], got shape {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    th, tw = spec.size
    if (h, w) != (th, tw):
        if spec.resize_mode == "squash":
            x = _resize(x, (th, tw), spec.interpolation)
        elif spec.resize_mode == "longest":
            scale = min(th / h, tw / w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = _resize(x, (nh, nw), spec.interpolation)
            pad_t, pad_l = (th - nh) // 2, (tw - nw) // 2
            canvas = torch.full((x.shape[0], 3, th, tw), spec.fill_color / 255.0, dtype=x.dtype, device=x.device)
            canvas[:, :, pad_t : pad_t + nh, pad_l : pad_l + nw] = x
            x = canvas
        else:  # "shortest": the short side becomes the target, as torchvision's Resize(int), then centre-crop
            if th == tw:
                short, long_ = (h, w) if h <= w else (w, h)
                new_short, new_long = th, int(th * long_ / short)
                nh, nw = (new_short, new_long) if h <= w else (new_long, new_short)
            else:
                scale = max(th / h, tw / w)
                nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
            x = _resize(x, (nh, nw), spec.interpolation)
            top = int(round((nh - th) / 2.0))
            left = int(round((nw - tw) / 2.0))
            x = x[:, :, top : top + th, left : left + tw]
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.to(dtype) if dtype is not None else x


def as_uint8_frames(frames: Any) -> np.ndarray | list[np.ndarray]:
    """Check and normalise frames to ``uint8`` RGB: one ``[n, H, W, 3]`` array, or a list when sizes differ.

    Accepts an array ``[n, H, W, C]`` or ``[H, W, C]`` (``C`` = 3, 4 (alpha dropped) or 1
    (grey, repeated)), a torch tensor, or a sequence of ``[H, W, C]`` arrays.

    Raises:
        ConfigError: not ``uint8``, or not an image shape.
    """
    if hasattr(frames, "detach") and hasattr(frames, "cpu"):  # a torch tensor
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        arr = frames
        if arr.ndim == 3:
            arr = arr[None]
        return _fix_channels(arr)
    items = [np.asarray(f) for f in frames]
    if not items:
        return np.zeros((0, 1, 1, 3), dtype=np.uint8)
    items = [_fix_channels(f[None])[0] if f.ndim == 3 else _fix_channels(f)[0] for f in items]
    if all(f.shape == items[0].shape for f in items):
        return np.stack(items)
    return items


def _fix_channels(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8 RGB images (0-255), got dtype {arr.dtype}")
    if arr.ndim == 3:  # [n, H, W] grey
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise ConfigError(f"frames must be [n, H, W, 3] (or [H, W, 3]) RGB images, got shape {arr.shape}")
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    elif arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


# ----------------------------------------------------------------------------- the encoder


class ClipEncoder:
    """A CLIP model on its device, with tensor preprocessing and per-prompt-set text caching.

    Args:
        model: an open_clip model name, ``"hf-hub:org/repo"`` or ``"local-dir:/path"``.
        pretrained: a pretrained tag, a checkpoint file, or ``None`` for random weights
            (see :func:`resolve_weights`).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"auto"`` (``fp16`` on CUDA, ``fp32`` on the CPU), ``"fp32"``, ``"fp16"``, ``"bf16"``.
        cache_dir: download cache (see :func:`resolve_weights`).
        batch_size: most frames encoded in one forward pass (larger batches are split).
        seed: seed of the random initialisation when ``pretrained`` is ``None`` (the same
            seed gives the same random model, hence the same rewards).

    Raises:
        MissingDependencyError: torch or open_clip_torch is not installed.
        MissingWeightsError: the weights are not available (raised before any download attempt).
        ConfigError: bad model name, tag, device or precision.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str = "auto",
        precision: str = "auto",
        cache_dir: str | None = None,
        batch_size: int = 64,
        seed: int = 0,
    ):
        torch = _import_torch()
        open_clip = _import_open_clip()
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = int(batch_size)
        self.weights = resolve_weights(model, pretrained, cache_dir)
        w = self.weights
        kwargs: dict[str, Any] = {"precision": self.precision, "device": self.device, "cache_dir": cache_dir}
        if w.preprocess:
            kwargs["force_preprocess_cfg"] = dict(w.preprocess)
        if w.quick_gelu:
            kwargs["force_quick_gelu"] = True  # the tag's weights were trained with QuickGELU
        try:
            if w.kind == "random":
                # open_clip initialises the weights on the CPU before moving them, so the CPU generator decides
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(seed))
                    net = open_clip.create_model(w.model_name, pretrained=None, **kwargs)
            else:
                net = open_clip.create_model(w.model_name, pretrained=w.pretrained, **kwargs)
        except MemoryError:
            raise
        except Exception as exc:
            if w.kind == "download":
                raise MissingWeightsError(
                    f"downloading CLIP weights ({w.source}) failed: {exc}\n"
                    f"{_how_to_provide(model, pretrained, None)}"
                ) from exc
            raise ConfigError(f"could not build CLIP model {model!r} from {w.source}: {exc}") from exc
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.model = net
        self.model_name = model
        self.pretrained = None if w.kind == "random" else pretrained
        self.tokenizer = open_clip.get_tokenizer(w.model_name, cache_dir=cache_dir)
        self.preprocess_spec = PreprocessSpec.from_open_clip(dict(getattr(net.visual, "preprocess_cfg", {}) or {}))
        self.dtype = next(net.parameters()).dtype
        self._text_cache: dict[tuple[str, ...], "torch.Tensor"] = {}
        self._lock = threading.Lock()

    @property
    def embed_dim(self) -> int:
        """Size of the shared image–text embedding."""
        return int(self.encode_text(["a photo"]).shape[-1])

    def __repr__(self) -> str:
        return (
            f"ClipEncoder(model={self.model_name!r}, weights={self.weights.source!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r})"
        )

    def encode_text(self, prompts: Sequence[str]) -> "torch.Tensor":
        """Unit-norm text embeddings ``float32[k, D]`` of ``prompts``, computed once per prompt tuple."""
        torch = _import_torch()
        key = tuple(str(p) for p in prompts)
        if not key:
            raise ConfigError("at least one prompt is needed")
        with self._lock:
            hit = self._text_cache.get(key)
            if hit is not None:
                return hit
            with torch.inference_mode():
                tokens = self.tokenizer(list(key)).to(self.device)
                emb = self.model.encode_text(tokens).float()
                emb = emb / emb.norm(dim=-1, keepdim=True)
            self._text_cache[key] = emb
            return emb

    def preprocess(self, frames: Any) -> "torch.Tensor":
        """Model inputs ``[n, 3, h, w]`` (model dtype, on the model's device) from ``uint8`` frames.

        Frames of different sizes (a list) are preprocessed one size group at a time.
        """
        torch = _import_torch()
        arr = as_uint8_frames(frames)
        if isinstance(arr, list):
            parts = [self.preprocess(f[None]) for f in arr]
            return torch.cat(parts) if parts else self._empty_inputs()
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, non_blocking=True)
        return preprocess_frames(t, self.preprocess_spec, self.dtype)

    def _empty_inputs(self) -> "torch.Tensor":
        torch = _import_torch()
        h, w = self.preprocess_spec.size
        return torch.zeros((0, 3, h, w), dtype=self.dtype, device=self.device)

    def encode_frames(self, frames: Any, batch_size: int | None = None) -> "torch.Tensor":
        """Unit-norm image embeddings ``float32[n, D]`` of ``uint8`` frames.

        At most ``batch_size`` (default: the encoder's) frames go through the model per
        forward pass; more are split into several passes.
        """
        torch = _import_torch()
        arr = as_uint8_frames(frames)
        n = len(arr)
        step = int(batch_size or self.batch_size)
        if n == 0:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32, device=self.device)
        outs = []
        with torch.inference_mode():
            for start in range(0, n, step):
                chunk = arr[start : start + step]
                x = self.preprocess(chunk)
                emb = self.model.encode_image(x).float()
                outs.append(emb / emb.norm(dim=-1, keepdim=True))
        return torch.cat(outs) if len(outs) > 1 else outs[0]


_CACHE: dict[tuple, ClipEncoder] = {}
_CACHE_LOCK = threading.Lock()


def get_encoder(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> ClipEncoder:
    """Return a shared :class:`ClipEncoder` for these arguments (built on first use).

    Several reward plugins with the same model (one per env, an eval env, the CLI)
    share one copy of the weights. ``batch_size`` is per call: the shared encoder's
    is the one of its first creation; pass ``batch_size`` to
    :meth:`ClipEncoder.encode_frames` where another is needed. :func:`clear_encoder_cache`
    frees them.
    """
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    rand = pretrained is None or (isinstance(pretrained, str) and pretrained.strip().lower() in RANDOM_WEIGHTS)
    key = (model, None if rand else pretrained, str(dev), prec, cache_dir, int(seed) if rand else None)
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            enc = ClipEncoder(model, pretrained, str(dev), prec, cache_dir, batch_size, seed)
            _CACHE[key] = enc
        return enc


def clear_encoder_cache() -> None:
    """Drop every shared encoder made by :func:`get_encoder` (frees their memory once unreferenced)."""
    with _CACHE_LOCK:
        _CACHE.clear()

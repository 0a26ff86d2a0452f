"""Recorded frames without an env: read a video file or a folder of images, and score them.

Videos are read with ``imageio`` (``imageio-ffmpeg`` for mp4 and most other formats),
frame by frame, so long videos do not have to fit in memory; a folder is read in
natural order of its image file names (``frame2.png`` before ``frame10.png``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...core.errors import ConfigError, MissingDependencyError

#: File name endings read as images when a folder is scored.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (not recursive), in natural order of their names.

    Raises:
        ConfigError: the folder holds no image files.
    """
    folder = Path(folder)
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise ConfigError(f"{folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _imageio_v3():
    try:
        import imageio.v3 as iio
    except ImportError as exc:
        raise MissingDependencyError("imageio", "video", "reading recorded frames") from exc
    return iio


def _rgb(frame: Any) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = np.round(a * 255.0)
        elif a.dtype == np.uint16:
            a = a // 257
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ConfigError(f"cannot read an RGB image from an array of shape {a.shape}")
    return np.ascontiguousarray(a)


def iter_frames(path: str | Path, stride: int = 1, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield ``uint8[H, W, 3]`` frames of a video file or a folder of images.

    Args:
        path: a video file (anything imageio reads: mp4, gif, webm, ...) or a folder of images.
        stride: keep every ``stride``-th frame.
        max_frames: stop after this many kept frames.

    Raises:
        ConfigError: the path does not exist, holds no images, or cannot be decoded.
        MissingDependencyError: imageio (or its ffmpeg plugin, for videos) is missing.
    """
    if not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"stride must be a positive integer, got {stride!r}")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be positive, got {max_frames!r}")
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p} does not exist: give a video file or a folder of images")
    iio = _imageio_v3()
    kept = 0
    if p.is_dir():
        for i, f in enumerate(list_image_files(p)):
            if i % stride:
                continue
            try:
                yield _rgb(iio.imread(f))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read image {f}: {exc}") from exc
            kept += 1
            if max_frames is not None and kept >= max_frames:
                return
        return
    try:
        frames = iio.imiter(p)
        for i, frame in enumerate(frames):
            if i % stride:
                continue
            yield _rgb(frame)
            kept += 1
            if max_frames is not None and kept >= max_frames:
                return
    except ImportError as exc:
        raise MissingDependencyError("imageio-ffmpeg", "video", f"reading the video {p.name}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        if "ffmpeg" in str(exc).lower() and "not" in str(exc).lower():
            raise MissingDependencyError("imageio-ffmpeg", "video", f"reading the video {p.name}") from exc
        raise ConfigError(f"cannot read frames from {p}: {exc}") from exc
    if kept == 0:
        raise ConfigError(f"{p} holds no frames")


def iter_batches(frames: Iterator[np.ndarray], batch_size: int) -> Iterator[list[np.ndarray]]:
    """Group a frame iterator into lists of at most ``batch_size`` frames."""
    batch: list[np.ndarray] = []
    for f in frames:
        batch.append(f)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_frames(path: str | Path, stride: int = 1, max_frames: int | None = None) -> list[np.ndarray]:
    """All frames of a video or image folder as a list of ``uint8[H, W, 3]`` arrays (see :func:`iter_frames`)."""
    return list(iter_frames(path, stride, max_frames))


def score_recorded(
    scorer: Any,
    path: str | Path,
    *,
    batch_size: int = 64,
    stride: int = 1,
    max_frames: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score every frame of a video or image folder with a :class:`~robo_reward.rewards.vlm.reward.VLMRewardModel`.

    Frames are read and encoded ``batch_size`` at a time. Returns ``(rewards, terms)``,
    each ``float32[n_frames]``.
    """
    rewards: list[np.ndarray] = []
    terms: dict[str, list[np.ndarray]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="frame", desc="scoring", leave=False)
    try:
        for batch in iter_batches(iter_frames(path, stride, max_frames), batch_size):
            s = scorer.score(batch)
            rewards.append(s.reward)
            for k, v in s.terms.items():
                terms.setdefault(k, []).append(v)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    r = np.concatenate(rewards) if rewards else np.zeros(0, np.float32)
    return r, {k: np.concatenate(v) for k, v in terms.items()}


def load_labels(path: str | Path) -> np.ndarray:
    """Read ground-truth labels or rewards, one per frame: ``.npy``, or text/CSV (one number per line, last column).

    Raises:
        ConfigError: missing file or a line without a number.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"labels file {p} does not exist")
    if p.suffix == ".npy":
        return np.asarray(np.load(p), dtype=np.float64).reshape(-1)
    values: list[float] = []
    for lineno, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cell = re.split(r"[,\s;]+", line)[-1]
        if cell.lower() in ("true", "false"):
            values.append(1.0 if cell.lower() == "true" else 0.0)
            continue
        try:
            values.append(float(cell))
        except ValueError:
            if not values and lineno == 1:
                continue  # a header line
            raise ConfigError(f"{p}:{lineno}: expected a number, got {cell!r}") from None
    return np.asarray(values, dtype=np.float64)


"""Tests of the perceptual reward (Sermanet et al. 2016): segmentation, feature ranking, progress, plugin."""

from __future__ import annotations

import numpy as np
import pytest

from robo_reward.core.errors import ConfigError
from robo_reward.core.registry import make_reward
from robo_reward.core.types import TransitionBatch
from robo_reward.rewards.perceptual import (
    BackboneSpec,
    PerceptualRewardModel,
    fit_perceptual_reward,
    labels_from_boundaries,
    load_demo_frames,
    rank_features,
    segment_features,
)


def _piecewise(lengths, dim=16, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    levels = rng.normal(size=(len(lengths), dim)) * 2.0
    lab = np.repeat(np.arange(len(lengths)), lengths)
    return levels[lab] + rng.normal(size=(len(lab), dim)) * noise, lab


@pytest.mark.parametrize("lengths", [[30, 50, 25, 45], [12, 40], [20, 20, 20], [8, 30, 9, 22, 15]])
def test_segmentation_recovers_piecewise_constant_boundaries(lengths):
    x, _ = _piecewise(lengths, seed=len(lengths))
    expected = list(np.cumsum(lengths)[:-1])
    assert segment_features(x, len(lengths), min_length=3) == expected


def test_segmentation_respects_min_length():
    x, _ = _piecewise([3, 40, 40])
    b = segment_features(x, 3, min_length=10)
    assert b[0] >= 10 and b[1] - b[0] >= 10 and len(x) - b[1] >= 10
    with pytest.raises(ConfigError):
        segment_features(x, 3, min_length=40)


def test_labels_from_boundaries():
    assert labels_from_boundaries(6, [2, 4]).tolist() == [0, 0, 1, 1, 2, 2]


def test_feature_ranking_hand_built():
    # feature 0: separates perfectly (means 1 vs -1, no spread) -> 5*2 - 0 = 10
    # feature 1: same means, spread 1 in both classes -> 0 - 2 = -2
    # feature 2: small separation, no spread -> 5*0.2 = 1
    pos = np.array([True, True, False, False])
    z = np.array([[1.0, 1.0, 0.1], [1.0, -1.0, 0.1], [-1.0, 1.0, -0.1], [-1.0, -1.0, -0.1]])
    s = rank_features(z, pos, alpha=5.0)
    np.testing.assert_allclose(s, [10.0, -2.0, 1.0])
    assert np.argsort(-s).tolist() == [0, 2, 1]


def test_selected_features_are_the_informative_ones():
    rng = np.random.default_rng(1)
    T = 90
    lab = np.repeat([0, 1, 2], 30)
    x = rng.normal(size=(T, 8)) * 0.3  # noise features
    x[:, 5] += 4.0 * (lab == 1)  # only feature 5 marks step 2
    x[:, 7] += 4.0 * (lab == 2)  # only feature 7 marks step 3
    m = PerceptualRewardModel.fit_features([x], n_steps=3, min_length=5, top_k=1)
    assert m.boundaries == [[30, 60]]
    assert m.selected[1, 0] == 5 and m.selected[2, 0] == 7


def test_progress_reward_increases_along_demo():
    demos = [_piecewise([20, 25, 30, 20], seed=s)[0] for s in (3, 3)]
    demos[1] = demos[1] + np.random.default_rng(9).normal(size=demos[1].shape) * 0.05
    m = PerceptualRewardModel.fit_features(demos, n_steps=4, min_length=5, top_k=8)
    reward, steps = m.score_features(demos[0])
    lab = labels_from_boundaries(len(demos[0]), m.boundaries[0])
    means = [reward[lab == i].mean() for i in range(4)]
    assert all(a < b for a, b in zip(means, means[1:]))
    assert steps.shape == (len(demos[0]), 4) and np.all((steps >= 0) & (steps <= 1))
    assert 0 <= reward.min() and reward.max() <= 1


def _synthetic_video(seed=0, size=32):
    """A red square moving left to right in three phases (still, moving, still at the right)."""
    frames = []
    xs = [2] * 10 + list(np.linspace(2, 22, 15).astype(int)) + [22] * 10
    for x in xs:
        f = np.full((size, size, 3), 40, np.uint8)
        f[12:20, x : x + 8] = (220, 30, 30)
        frames.append(f)
    return np.stack(frames)


def test_fit_save_load_and_plugin(tmp_path):
    pytest.importorskip("torchvision", reason="needs torchvision (the vlm extra); scripts/setup.sh leaves it out in its CPU-only torch mode")
    spec = BackboneSpec(kind="torchvision", model="resnet18", pretrained=None, seed=0, image_size=32)
    video = _synthetic_video()
    model = fit_perceptual_reward([video, video], n_steps=3, min_length=4, top_k=16, backbone=spec, device="cpu")
    path = model.save(tmp_path / "pp.npz")
    again = PerceptualRewardModel.load(path)
    np.testing.assert_array_equal(again.selected, model.selected)
    plugin = make_reward(f"perceptual:model_path={path},device=cpu")
    assert plugin.requires == frozenset({"frames"})
    n = len(video)
    out = plugin(TransitionBatch(terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
                                 env_reward=np.zeros(n, np.float32), env_ids=np.zeros(n, np.int64), frames=video))
    assert out.reward.shape == (n,) and {"step_1", "step_3", "stage"} <= set(out.terms)
    assert out.reward[-1] > out.reward[0]  # the end of the demo scores above its start
    # the same seed rebuilds the same random backbone: same rewards
    feats = plugin.extractor.encode(video)
    np.testing.assert_allclose(model.score_features(feats)[0], out.reward, rtol=1e-5)


def test_model_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        PerceptualRewardModel.load(tmp_path / "none.npz")
    np.savez(tmp_path / "bad.npz", x=np.zeros(2))
    with pytest.raises(ConfigError, match="not a perceptual"):
        PerceptualRewardModel.load(tmp_path / "bad.npz")


def test_load_demo_frames(tmp_path):
    import imageio.v3 as iio

    video = _synthetic_video()
    np.savez(tmp_path / "d.npz", frames=video)
    assert load_demo_frames(tmp_path / "d.npz").shape == video.shape
    (tmp_path / "frames").mkdir()
    for i, f in enumerate(video[:3]):
        iio.imwrite(tmp_path / "frames" / f"{i:03d}.png", f)
    np.testing.assert_array_equal(load_demo_frames(tmp_path / "frames"), video[:3])


def test_segmentation_weighting_by_length_finds_phases_before_a_still_end():
    """Two moving phases, then the scene stands still (as after success in a scripted demo).

    Averaged over steps, two minimum-length steps in the still part cost nothing and one
    step swallows both moving phases; averaged over frames, the true phases win.
    """
    rng = np.random.default_rng(0)
    x = np.zeros((80, 8))
    x[:20] = rng.normal(0, 1, (20, 8))
    x[20:40] = 3 + rng.normal(0, 1, (20, 8))
    x[40:] = 6
    assert segment_features(x, 3, 3) == [20, 40]  # the default weighting is "length"
    step = segment_features(x, 3, 3, weighting="step")
    assert step[0] >= 40  # both moving phases in one step
    with pytest.raises(ConfigError, match="weighting"):
        segment_features(x, 3, 3, weighting="frames")

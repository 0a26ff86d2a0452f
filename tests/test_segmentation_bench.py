"""The agreement metric and baselines of ``benchmarks/perceptual_segmentation.py`` on hand-built segmentations."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perceptual_segmentation.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("perceptual_segmentation_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_segments_and_interval_iou(bench):
    assert bench.segments_of([0, 0, 1, 1, 1, 2]) == [(0, 2), (2, 5), (5, 6)]
    assert bench.segments_of([3, 3, 1, 1, 3]) == [(0, 2), (2, 4), (4, 5)]  # a repeated label is a new segment
    assert bench.interval_iou((0, 4), (2, 8)) == pytest.approx(2 / 8)
    assert bench.interval_iou((0, 4), (4, 8)) == 0.0
    assert bench.interval_iou((1, 5), (1, 5)) == 1.0


def test_jaccard_agreement_hand_built(bench):
    truth = [0, 0, 0, 0, 1, 1, 1, 1]
    assert bench.jaccard_agreement(truth, truth) == 1.0
    # relabelling the segments does not matter, only where they are
    assert bench.jaccard_agreement(truth, [5, 5, 5, 5, 2, 2, 2, 2]) == 1.0
    # truth (0,4): best is (0,2) with 2/4; truth (4,8): best is (2,8) with 4/6
    assert bench.jaccard_agreement(truth, [0, 0, 1, 1, 1, 1, 1, 1]) == pytest.approx((0.5 + 4 / 6) / 2)
    # one predicted segment covering everything
    assert bench.jaccard_agreement(truth, [0] * 8) == pytest.approx(0.5)
    # three true phases, prediction shifted by one frame at each boundary
    t3 = [0] * 4 + [1] * 4 + [2] * 4
    p3 = [0] * 5 + [1] * 4 + [2] * 3
    assert bench.jaccard_agreement(t3, p3) == pytest.approx((4 / 5 + 3 / 5 + 3 / 4) / 3)
    with pytest.raises(ValueError):
        bench.jaccard_agreement([0, 1], [0])


def test_boundary_error_and_equal_split(bench):
    assert bench.boundary_error([10, 20], [12, 17]) == pytest.approx(2.5)
    assert bench.boundary_error([], []) == 0.0
    assert bench.equal_boundaries(12, 3) == [4, 8]
    assert bench.equal_boundaries(10, 1) == []


def test_random_splits_are_uniform_over_valid_splits(bench):
    rng = np.random.default_rng(0)
    draws = [tuple(bench.random_boundaries(8, 2, 2, rng)) for _ in range(3000)]
    counts = Counter(draws)
    assert set(counts) == {(2,), (3,), (4,), (5,), (6,)}  # every split with both steps >= 2 frames
    assert all(abs(c / 3000 - 0.2) < 0.04 for c in counts.values())
    for _ in range(200):
        b = bench.random_boundaries(30, 4, 5, rng)
        lengths = np.diff([0, *b, 30])
        assert len(b) == 3 and lengths.min() >= 5 and lengths.sum() == 30
    with pytest.raises(ValueError):
        bench.random_boundaries(5, 3, 2, rng)


def test_methods_are_the_library_weightings_on_a_still_tail(bench):
    assert list(bench.METHODS) == ["length", "step"]
    assert not hasattr(bench, "weighted_segmentation")
    rng = np.random.default_rng(1)
    levels = rng.normal(size=(3, 8)) * 0.7
    lab = np.repeat([0, 1, 2], [20, 25, 20])
    x = levels[lab] + rng.normal(size=(len(lab), 8)) * 0.3
    x[50:] = x[50]  # the last 15 frames do not change (a demo after success)
    assert bench.METHODS["length"](x, 3, 3) == [20, 45]
    # averaged over steps, minimum-length steps in the still tail cost almost nothing
    assert bench.METHODS["step"](x, 3, 3) == [50, 53]


def test_demo_evaluation_on_synthetic_features(bench):
    rng = np.random.default_rng(2)
    phases = np.repeat([0, 1, 2, 3], [15, 10, 20, 12])
    feats = np.eye(4)[phases] * 5 + rng.normal(size=(len(phases), 4)) * 0.1
    base = bench.demo_baselines(phases, 3, 200, rng)
    assert base["steps"] == 4 and base["true_boundaries"] == [15, 25, 45]
    assert 0 < base["random_jaccard_mean"] < 1
    r = bench.evaluate_demo(feats, phases, base, "length", 3)
    assert r["jaccard"] == 1.0 and r["boundary_error"] == 0.0 and r["random_at_least_as_good"] < 0.05
    r = bench.evaluate_demo(feats, phases, base, "step", 3)
    assert 0 < r["jaccard"] <= 1

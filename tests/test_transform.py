"""The vectorised Basenji transform equals the per-track reference rules, bit for bit."""

import numpy as np
import pytest

from enformer_transfer.data._reference import reference_extreme_clip, reference_track_window
from enformer_transfer.data.transform import (
    TopValues,
    TrackParams,
    bin_window,
)

QS = [50.0, 25.0, 0.0, 100.0, 99.0, 99.99999, 37.3]


@pytest.mark.parametrize("seed", range(4))
def test_top_values_percentile_equals_numpy(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(30):
        n = int(rng.integers(2, 3000))
        q = float(rng.choice(QS))
        x = (rng.gamma(0.3, 5, size=(n, 3)) * 10).astype(np.float16)
        top = TopValues(3, n, q)
        for part in np.array_split(x, 5):
            top.add(part)
        expected = np.array([np.percentile(x[:, t], q) for t in range(3)], dtype=np.float16)
        np.testing.assert_array_equal(top.thresholds(), expected)


def _params(stats, clip, clip_soft, scale):
    return TrackParams(tuple(stats), np.array(clip, float), np.array(clip_soft, float), np.array(scale, float))


@pytest.mark.parametrize("order", ["old", "new"])
@pytest.mark.parametrize("floor_zero", [False, True])
def test_bin_window_equals_reference(order, floor_zero):
    rng = np.random.default_rng(7)
    stats = ["mean", "sum", "max", "sum_sqrt", "mean_sqrt", "peak", "mean", "sum"]
    clip = [32, 384, np.nan, 384, 32, 1, 2, 50]
    soft = [np.nan, 64, np.nan, 64, 8, np.nan, 1.5, 40]
    scale = [2, 1, 0.3, 1, 3.7, 1, 2, 0.01]
    params = _params(stats, clip, soft, scale)
    n_bins, bin_size, crop = 16, 32, 40
    length = n_bins * bin_size + 2 * crop
    for trial in range(20):
        cov = rng.gamma(0.4, 3, size=(len(stats), length)) * rng.choice([0.1, 1, 40])
        cov[rng.random(cov.shape) < 0.3] = 0
        if trial % 3 == 0:
            cov[:, 100:180] = np.nan  # uncovered stretch: baseline becomes 0
        if trial % 4 == 1:
            cov[2, :] = -cov[2, :]
        slices = [(0, 30), (200, 260), (length - 10, length)] if trial % 2 else []
        got, uncovered = bin_window(cov, slices, crop, n_bins, bin_size, params, order, 50.0, floor_zero)
        for t in range(len(stats)):
            expected = reference_track_window(
                cov[t], slices, crop, n_bins, bin_size, stats[t],
                None if np.isnan(clip[t]) else clip[t], None if np.isnan(soft[t]) else soft[t],
                scale[t], order, 50.0, floor_zero,
            )
            np.testing.assert_array_equal(got[:, t], expected, err_msg=f"track {t} ({stats[t]}) trial {trial}")
        expected_uncovered = np.isnan(cov[:, crop : crop + n_bins * bin_size]).reshape(-1, n_bins, bin_size).any(2).T
        np.testing.assert_array_equal(uncovered, expected_uncovered)


def test_extreme_clip_reference_clips_only_the_top():
    rng = np.random.default_rng(3)
    x = rng.gamma(0.5, 2, size=(50, 8, 2)).astype(np.float16)
    x[3, 4, 0] = 60000
    clipped = reference_extreme_clip(x, 99.0)
    assert clipped[3, 4, 0] < 60000
    assert (clipped <= x).all()

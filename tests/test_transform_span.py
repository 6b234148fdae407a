"""Windows of a shared coverage span, base by base, equal the per-window transform and the reference."""

import numpy as np
import pytest

from enformer_transfer.data._reference import reference_track_window
from enformer_transfer.data.transform import (
    UNCOVERED,
    BaseValues,
    TrackParams,
    bin_window,
    mean_run_length,
)

STATS = ["mean", "sum", "max", "sum_sqrt", "mean_sqrt", "peak", "mean", "sum"]
CLIP = [32, 384, np.nan, 384, 32, 1, 2, 50]
SOFT = [np.nan, 64, np.nan, 64, 8, np.nan, 1.5, 40]
SCALE = [2, 1, 0.3, 1, 3.7, 1, 2, 0.01]


def _opt(v):
    return None if np.isnan(v) else v


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # values beyond float16, on purpose
@pytest.mark.parametrize("order", ["old", "new"])
@pytest.mark.parametrize("floor_zero", [False, True])
@pytest.mark.parametrize("q", [50.0, 37.3, 100.0])
def test_span_windows_equal_reference(order, floor_zero, q):
    rng = np.random.default_rng(11)
    params = TrackParams(tuple(STATS), np.array(CLIP, float), np.array(SOFT, float), np.array(SCALE, float))
    n_bins, bin_size, crop = 16, 32, 40
    row = n_bins * bin_size + 2 * crop
    for trial in range(12):
        span = rng.gamma(0.4, 3, size=(len(STATS), 3 * row)) * rng.choice([0.1, 1, 40, 3000])
        span = np.repeat(span[:, ::2], 2, axis=1)[:, : 3 * row]  # runs of two bases
        span[rng.random(span.shape) < 0.3] = 0
        if trial % 3 == 0:
            span[:, 700:780] = np.nan  # an uncovered stretch: baseline 0 where it falls in the row
            span[5, 1500] = np.nan
        if trial % 4 == 1:
            span[2] = -span[2]
            span[3, 10:20] = -0.0
        if trial == 5:
            span[4, 300:310] = 1e6  # beyond float16: inf
        values = BaseValues().load(span)
        marked = BaseValues().load(np.where(np.isnan(span), UNCOVERED, span))  # as workers read it
        for offset in (0, 37, row - 5, 2 * row):
            cov = span[:, offset : offset + row]
            slices = [(0, 30), (200, 260), (row - 10, row)] if (trial + offset) % 2 else []
            got, uncovered = values.bin_window(offset, row, slices, crop, n_bins, bin_size, params, order, q,
                                               floor_zero)
            runs, runs_uncovered = bin_window(cov, slices, crop, n_bins, bin_size, params, order, q, floor_zero)
            np.testing.assert_array_equal(got.view(np.uint16), runs.view(np.uint16))  # bit for bit
            np.testing.assert_array_equal(uncovered, runs_uncovered)
            again, again_uncovered = marked.bin_window(offset, row, slices, crop, n_bins, bin_size, params, order,
                                                       q, floor_zero)
            np.testing.assert_array_equal(again.view(np.uint16), got.view(np.uint16))
            np.testing.assert_array_equal(again_uncovered, uncovered)
            for t in range(len(STATS)):
                expected = reference_track_window(
                    cov[t], slices, crop, n_bins, bin_size, STATS[t], _opt(CLIP[t]), _opt(SOFT[t]), SCALE[t],
                    order, q, floor_zero,
                )
                # by value: which zero np.percentile picks among -0.0 and +0.0 is the partition's choice
                np.testing.assert_array_equal(got[:, t], expected, err_msg=f"track {t} trial {trial} offset {offset}")


def test_loaded_again_with_less_memory():
    """A span loaded into the memory of a longer one gives the windows a fresh load gives."""
    rng = np.random.default_rng(5)
    params = TrackParams(("mean", "sum"), np.array([32.0, np.nan]), np.array([np.nan, np.nan]), np.array([2.0, 1.0]))
    long_span, span = rng.gamma(0.5, 2, size=(2, 40_000)), rng.gamma(0.5, 2, size=(2, 20_000))
    reused = BaseValues().load(long_span).load(span)
    got = reused.bin_window(100, 4096, [], 0, 32, 128, params)
    expected = BaseValues().load(span).bin_window(100, 4096, [], 0, 32, 128, params)
    np.testing.assert_array_equal(got[0].view(np.uint16), expected[0].view(np.uint16))


def test_mean_run_length():
    x = np.repeat(np.arange(8.0), 4)[None, :].repeat(3, axis=0)
    assert mean_run_length(x) == 4.0
    x[1, :] = np.nan  # every NaN is a run of its own
    assert mean_run_length(x) == 96 / (3 + 31 + 7 + 7)
    assert mean_run_length(x, sample=8) == 24 / (3 + 7 + 1 + 1)

"""The dataset build's fast paths give the same bits as the plain ones: bp-resolution coverage
base by base over shared spans, and the final pass from chunk summaries (no re-read)."""

import numpy as np
import pandas as pd
import pytest

from enformer_transfer import Run, RunConfig, build_dataset
from enformer_transfer.data import build, store
from enformer_transfer.data._reference import reference_build
from enformer_transfer.data.build import blacklist_slices
from enformer_transfer.genome.intervals import IntervalSet
from enformer_transfer.synthetic import DEMO_GEOMETRY, make_synthetic


@pytest.fixture(scope="module")
def bp_data(tmp_path_factory):
    """Runs of two bases (bp-resolution), overlapping windows, a blacklist and an uncovered stretch."""
    return make_synthetic(tmp_path_factory.mktemp("bp"), seed=1, n_chroms=3, chrom_length=120_000, step=2)


def _config(data, run_dir, **dataset):
    config = RunConfig(run_dir=run_dir, geometry=DEMO_GEOMETRY)
    ds = config.dataset
    ds.genome, ds.targets, ds.windows, ds.blacklist = data.genome, data.targets, data.windows, data.blacklist
    ds.workers, ds.chunk_windows, ds.extreme_clip_percentile = 2, 3, 99.0
    for key, value in dataset.items():
        setattr(ds, key, value)
    return config


def _outputs(run_dir):
    run = Run(run_dir)
    folder = run.layout.dataset
    targets = np.concatenate([np.asarray(run.targets(s)) for s in run.splits])
    return targets, folder.track_stats.read_text(), folder.extreme_clip.read_text()


def test_bp_resolution_equals_reference_and_mask(bp_data, tmp_path):
    config = _config(bp_data, tmp_path / "run", uncovered="mask")
    build_dataset(config, progress=False)
    run = Run(tmp_path / "run")
    windows = pd.concat([run.windows(s) for s in run.splits])
    blacklist = IntervalSet.from_bed(bp_data.blacklist)
    ref = reference_build(
        windows, run.tracks, 64, 128,
        blacklist_slices_of=lambda r: blacklist_slices(blacklist, r.chrom, r.row_start, r.row_end, 20, False),
        extreme_clip_percentile=99.0,
    )
    ours = np.concatenate([np.asarray(run.targets(s)) for s in run.splits])
    np.testing.assert_array_equal(ours.view(np.uint16), ref.view(np.uint16))
    assert run.track_stats["values_clipped"].sum() > 0
    mask = np.concatenate([np.asarray(run.masks(s)) for s in run.splits])
    assert 0 < mask.sum() < mask.size  # the uncovered stretch of the last chromosome


@pytest.mark.parametrize("q", [99.0, 99.99999])
def test_final_pass_from_summaries_equals_reading(bp_data, tmp_path, monkeypatch, q):
    build_dataset(_config(bp_data, tmp_path / "summaries", extreme_clip_percentile=q), progress=False)
    monkeypatch.setattr(build, "_read_summary", lambda *args: None)  # every chunk read, every chunk rewritten
    build_dataset(_config(bp_data, tmp_path / "read", extreme_clip_percentile=q), progress=False)
    fast, plain = _outputs(tmp_path / "summaries"), _outputs(tmp_path / "read")
    np.testing.assert_array_equal(fast[0].view(np.uint16), plain[0].view(np.uint16))
    assert fast[1:] == plain[1:]  # track_stats.tsv and extreme_clip.json, byte for byte


def test_interrupted_clip_pass_resumes(bp_data, tmp_path, monkeypatch):
    """A clip pass killed after some chunks (rewritten by the plain path) resumes, with its
    counts, to what an uninterrupted build gives."""
    build_dataset(_config(bp_data, tmp_path / "fresh"), progress=False)
    config = _config(bp_data, tmp_path / "killed")
    adds = []
    original_add = store.ProgressLog.add

    def add(self, chunk, checksums=()):
        if self.path.name.startswith("clip-"):
            adds.append(chunk)
            if len(adds) == 3:
                raise KeyboardInterrupt
        original_add(self, chunk, checksums)

    with monkeypatch.context() as patch:
        patch.setattr(store.ProgressLog, "add", add)
        patch.setattr(build, "_clip_keeps", lambda *args: False)
        with pytest.raises(KeyboardInterrupt):
            build_dataset(config, progress=False)
    assert (tmp_path / "killed" / "dataset.partial" / "extreme_clip.json").exists()
    build_dataset(config, progress=False)
    resumed, fresh = _outputs(tmp_path / "killed"), _outputs(tmp_path / "fresh")
    np.testing.assert_array_equal(resumed[0].view(np.uint16), fresh[0].view(np.uint16))
    assert resumed[1:] == fresh[1:]


def test_rolling_coverage_equals_plain_reads(bp_data):
    """Overlapping, longer, shorter and separate spans: the kept bases plus the new ones are
    what one read of the span gives."""
    from enformer_transfer.data._worker import RollingCoverage
    from enformer_transfer.data.bigwig import CoverageReader
    from enformer_transfer.data.transform import UNCOVERED

    files = [str(f) for f in bp_data.bigwigs[:3]]
    maps = [{"chr1": "chr1", "chr3": "chr3"}] * 3
    rolling, plain = RollingCoverage(CoverageReader(files, maps), 3), CoverageReader(files, maps)
    spans = [("chr1", 100, 5000), ("chr1", 3000, 9000), ("chr1", 3000, 20000), ("chr1", 15000, 18000),
             ("chr1", 17000, 40000), ("chr3", 39000, 41000), ("chr3", 40999, 41001), ("chr1", -100, 300),
             ("chr1", 119_000, 120_300)]
    for chrom, start, end in spans:
        np.testing.assert_array_equal(rolling.read(chrom, start, end), plain.read(chrom, start, end, fill=UNCOVERED))

"""Stage ``tfrecords import``: a run's dataset from Basenji TFRecords (``data.tfrecords`` reads
them), checked against the genome before any work."""

from __future__ import annotations

import itertools
from pathlib import Path

from ..data.build import finish_targets, write_windows_table
from ..data.tfrecords import read_split, read_statistics
from ..errors import InputError
from ..genome.onehot import base_indices_padded
from ..genome.sequence import Genome
from ..genome.windows import read_windows_bed
from ..rundir import store
from ..rundir.config import Geometry, RunConfig
from ..rundir.layout import DatasetFolder, RunLayout
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage
from ..targets.table import read_targets_table, write_targets_table


def import_tfrecords(folder: Path | str, run_dir: Path | str, genome: Path | str, seq_length: int | None = None,
                     chrom_aliases: str = "none", force: bool = False, check_windows: int = 8) -> Path:
    """A dataset stage from Basenji TFRecords: targets as stored, windows from sequences.bed,
    tracks from targets.txt, geometry from statistics.json (``seq_length`` = model input,
    default Enformer's 196,608 or the records' own length if longer). The records' sequences
    are checked against ``genome`` on ``check_windows`` windows per split: the embedding stage
    reads the (longer) model inputs from the genome."""
    folder = Path(folder).absolute()
    genome = Path(genome).absolute()
    stats = read_statistics(folder)
    records_dir = folder / "tfrecords" if (folder / "tfrecords").is_dir() else folder
    target_bp = stats["target_length"] * stats["pool_width"]
    seq_length = seq_length or max(196_608, stats["seq_length"])
    try:
        geometry = Geometry(seq_length=seq_length, bin_size=stats["pool_width"], n_bins=stats["target_length"])
    except ValueError as err:
        raise InputError(f"--seq-length {seq_length} does not fit the records' {target_bp}-bp targets ({err})") from None
    for name in ("sequences.bed", "targets.txt"):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name} (a Basenji data folder has statistics.json, sequences.bed, targets.txt)")
    windows = read_windows_bed(folder / "sequences.bed", geometry)
    for split in windows.splits:
        expected = stats.get(f"{split}_seqs")
        if expected is not None and expected != len(windows.split(split)):
            raise InputError(f"{folder}: sequences.bed has {len(windows.split(split))} {split} windows, "
                             f"statistics.json says {expected}")
    tracks = read_targets_table(folder / "targets.txt", check_files=False)
    if len(tracks) != stats["num_targets"]:
        raise InputError(f"{folder}: targets.txt has {len(tracks)} tracks, statistics.json says {stats['num_targets']}")
    reference = Genome(genome, chrom_aliases)
    crop = stats.get("crop_bp", 0)
    for split in windows.splits:  # before any work: do the records come from this genome?
        rows = windows.split(split)
        for i, (seq, _) in enumerate(itertools.islice(read_split(records_dir, split, stats), check_windows)):
            w = rows.iloc[i]
            start = int(w.start) - crop
            dna, left, right = reference.fetch_padded(w.chrom, start, start + len(seq))
            genome_idx = base_indices_padded(dna, left, right)
            known = (genome_idx < 4) & (seq < 4)
            if known.any() and (genome_idx[known] != seq[known]).mean() > 0.01:
                raise InputError(
                    f"{records_dir}: the {split} record {i} does not match {genome} at {w.chrom}:{start}-"
                    f"{start + len(seq)} ({100 * (genome_idx[known] != seq[known]).mean():.0f}% of bases differ): "
                    "wrong genome, or sequences.bed rows are not the records' target intervals")
    config = RunConfig(run_dir=Path(run_dir).absolute(), geometry=geometry)
    config.dataset.genome, config.dataset.targets = genome, folder / "targets.txt"
    config.dataset.windows, config.dataset.chrom_aliases = folder / "sequences.bed", chrom_aliases
    config.dataset.extreme_clip_percentile = None  # done by Basenji already
    files = [folder / "statistics.json", folder / "sequences.bed", folder / "targets.txt"]
    key = {"geometry": geometry.model_dump(),
           "inputs": {"genome": file_fingerprint(genome),
                      "tfrecords": [file_fingerprint(f) for f in files + sorted(records_dir.glob("*.tfr"))]}}

    def build(work: Path, state: str) -> dict:
        out = DatasetFolder(work)
        write_targets_table(tracks, out.tracks)
        write_windows_table(windows, out)
        for split in windows.splits:
            rows = windows.split(split)
            array = store.create_array(out.targets_store, split, (len(rows), geometry.n_bins, len(tracks)),
                                       (8, geometry.n_bins, len(tracks)), "float16")
            count = 0
            for i, (_, targets) in enumerate(read_split(records_dir, split, stats)):
                if i >= len(rows):
                    raise InputError(f"{records_dir}: more {split} records than sequences.bed rows ({len(rows)})")
                array[i] = targets
                count += 1
            if count != len(rows):
                raise InputError(f"{records_dir}: {count} {split} records for {len(rows)} sequences.bed rows")
        stats_out = finish_targets(out, windows, tracks, None, geometry.n_bins)
        stats_out.update({"windows": {s: len(windows.split(s)) for s in windows.splits}, "tracks": len(tracks),
                          "imported_from": str(folder)})
        return stats_out

    return run_stage(RunLayout(config.run_dir).dataset.path, key, build, config, ("geometry", "dataset"), force=force, what="tfrecords import")

"""Dataset-stage speed on bp-resolution BigWigs: the `dataset` command end to end vs the reference loop.

Synthetic data, generated once and cached in ``--tmp``: one 40-Mb chromosome (random ACGT),
24 BigWig tracks at base-pair resolution (a new value every 1-5 bases, a few uncovered
stretches), the study's targets table (mean, clip 32, scale 2) and 1,500 Enformer-style
windows (131,072-bp BED rows, 196,608-bp model input, 896 bins of 128 bp) spread evenly over
the chromosome, train / valid / test by position (80 / 10 / 10 %).

Side by side, in one run, on the same warm files:

- reference: ``enformer_transfer.data._reference.reference_build``, one track at a time, one
  window at a time, per-base float16 NumPy (Basenji's loop), one process;
- ours: ``python -m enformer_transfer.cli dataset --out RUN ...`` as a subprocess, exactly as a
  user runs it (process start, validation, default workers = all cores, zarr writes, the
  extreme-clip pass).

It prints seconds, windows/s and the ratio, the CPU seconds of each way and the peak RSS of
our largest process (of the data generation too, on the run that generates it), and checks
that the targets are identical bit for bit (uint16 views). ``--windows N`` uses the first N
windows for a quick check. On a shared machine, run it while nothing else runs: other work
slows our two workers more than the one-process reference.

    python benchmarks/dataset_speed.py --tmp /tmp/dataset_speed [--windows 200] [--skip-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CHROM, CHROM_LENGTH = "chr1", 40_000_000
N_TRACKS, N_WINDOWS = 24, 1500
ROW_BP, SEQ_LENGTH, N_BINS, BIN_SIZE = 131_072, 196_608, 896, 128
BLOCK = 1_000_000  # bases generated and written per step (bounded memory)
DATA_VERSION = 1  # bump when the generated data changes


def _write_genome(path: Path) -> None:
    rng = np.random.default_rng(0)
    width = 80
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, CHROM_LENGTH)]
    lines = bases.reshape(-1, width)  # 40,000,000 is a multiple of 80
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(f">{CHROM}\n".encode())
        block = np.concatenate([lines, np.full((len(lines), 1), ord("\n"), dtype=np.uint8)], axis=1)
        handle.write(block.tobytes())
    offset = len(f">{CHROM}\n")
    path.with_name(path.name + ".fai").write_text(f"{CHROM}\t{CHROM_LENGTH}\t{offset}\t{width}\t{width + 1}\n")
    os.replace(tmp, path)


def _records(track: int):
    """(chrom, start, end, value) of one track: runs of 1-5 bases (every base for a third of the
    tracks), count-like values over a slowly varying level, a few uncovered stretches."""
    rng = np.random.default_rng(1000 + track)
    max_run = 1 if track % 3 == 0 else 5
    gaps = np.sort(rng.integers(0, CHROM_LENGTH - 50_000, 6))
    gap_ends = gaps + rng.integers(2_000, 30_000, len(gaps))
    position = 0
    while position < CHROM_LENGTH:
        lengths = rng.integers(1, max_run + 1, BLOCK)
        ends = np.minimum(position + np.cumsum(lengths), CHROM_LENGTH)
        starts = np.concatenate([[position], ends[:-1]])
        position = int(ends[-1])
        keep = starts < ends
        for a, b in zip(gaps, gap_ends, strict=True):
            keep &= (ends <= a) | (starts >= b)
        level = 0.5 + 3 * np.abs(np.sin(starts / (5_000 + 700 * track)))
        values = rng.poisson(level * 4) / 4.0
        values[rng.random(len(values)) < 1e-5] *= 60  # rare spikes for the extreme clip
        starts, ends, values = starts[keep], ends[keep], values[keep].astype(np.float32)
        yield from zip([CHROM] * len(starts), starts.tolist(), ends.tolist(), values.tolist(), strict=True)


def _write_track(args: tuple[int, str]) -> str:
    import pybigtools

    track, path = args
    tmp = Path(path).with_name(f"{Path(path).stem}.tmp.bw")
    pybigtools.open(str(tmp), "w").write({CHROM: CHROM_LENGTH}, _records(track))
    os.replace(tmp, path)
    return path


def _write_windows(path: Path, n: int) -> None:
    """n rows of 131,072 bp, evenly spaced so that every 196,608-bp input lies on the chromosome."""
    context = (SEQ_LENGTH - ROW_BP) // 2
    first, last = context, CHROM_LENGTH - ROW_BP - context
    starts = np.linspace(first, last, N_WINDOWS).astype(np.int64)[:n]
    splits = np.where(np.arange(N_WINDOWS) < 0.8 * N_WINDOWS, "train",
                      np.where(np.arange(N_WINDOWS) < 0.9 * N_WINDOWS, "valid", "test"))[:n]
    path.write_text("".join(f"{CHROM}\t{s}\t{s + ROW_BP}\t{split}\n" for s, split in zip(starts, splits, strict=True)))


def prepare(tmp: Path, n_windows: int) -> tuple[Path, Path, Path]:
    """Genome, targets table and windows BED in ``tmp`` (made once, reused while DATA_VERSION holds)."""
    from enformer_transfer.targets.table import build_targets_table, write_targets_table

    tmp.mkdir(parents=True, exist_ok=True)
    stamp = tmp / "data.json"
    genome, targets = tmp / "genome.fa", tmp / "targets.tsv"
    bigwigs = [tmp / "bigwig" / f"{t:02d}_track.bw" for t in range(N_TRACKS)]
    if not stamp.exists() or json.loads(stamp.read_text()).get("version") != DATA_VERSION:
        started = time.time()
        (tmp / "bigwig").mkdir(exist_ok=True)
        _write_genome(genome)
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(_write_track, [(t, str(p)) for t, p in enumerate(bigwigs)]))
        write_targets_table(build_targets_table(bigwigs), targets)  # the study's: mean, clip 32, scale 2
        stamp.write_text(json.dumps({"version": DATA_VERSION}))
        print(f"generated the data in {time.time() - started:.0f} s ({tmp})", flush=True)
    windows = tmp / f"windows_{n_windows}.bed"
    _write_windows(windows, n_windows)
    return genome, targets, windows


def warm(paths: list[Path]) -> float:
    """Read every input once so that both ways start from the page cache, and hash it into the
    command's fingerprint cache (as after any earlier run on the same inputs); return the
    seconds the hashing took (a first run on new inputs pays it once)."""
    from enformer_transfer.rundir.provenance import file_fingerprint

    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    started = time.time()
    for path in paths:
        file_fingerprint(path)
    return time.time() - started


def run_ours(run_dir: Path, genome: Path, targets: Path, windows: Path, workers: int | None) -> tuple[float, float]:
    """Seconds of the dataset command, end to end, and the CPU seconds of it and its workers."""
    cmd = [sys.executable, "-m", "enformer_transfer.cli", "dataset", "--out", str(run_dir), "--genome", str(genome),
           "--targets", str(targets), "--windows", str(windows), "--quiet"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"our dataset command failed:\n{result.stderr}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", type=Path, required=True, help="folder for the generated data (kept and reused)")
    parser.add_argument("--windows", type=int, default=N_WINDOWS, help="use the first N windows (quick check)")
    parser.add_argument("--workers", type=int, default=None, help="our workers (default: the command's, all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of ours (the best is reported)")
    parser.add_argument("--skip-reference", action="store_true", help="time ours only (no ratio, no check)")
    args = parser.parse_args()
    if not 1 <= args.windows <= N_WINDOWS:
        sys.exit(f"--windows must be 1..{N_WINDOWS}")
    import pandas as pd

    from enformer_transfer import Run
    from enformer_transfer.data._reference import reference_build

    genome, targets, windows = prepare(args.tmp, args.windows)
    hashing = warm([genome, targets, windows, *sorted((args.tmp / "bigwig").glob("*.bw"))])
    n = args.windows
    load = os.getloadavg()[0]

    times, cpu = [], []
    for i in range(args.repeat):
        run_dir = args.tmp / f"run_{n}_{i}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        seconds, cpu_seconds = run_ours(run_dir, genome, targets, windows, args.workers)
        times.append(seconds)
        cpu.append(cpu_seconds)
    ours_seconds = min(times)
    ours_cpu = cpu[times.index(ours_seconds)]
    run = Run(run_dir)
    ours = np.concatenate([np.asarray(run.targets(s)) for s in run.splits])

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}; load average before: {load:.2f} "
          "(other work on the machine slows either way)")
    print(f"data: {n} windows x {N_BINS} bins x {N_TRACKS} bp-resolution BigWig tracks, one "
          f"{CHROM_LENGTH / 1e6:.0f}-Mb chromosome ({ROW_BP:,}-bp rows, {SEQ_LENGTH:,}-bp inputs)")
    print(f"input hashes (cached for later runs; not in the times below): {hashing:.2f} s")
    extra = f" (runs: {', '.join(f'{t:.2f}' for t in times)})" if len(times) > 1 else ""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # its largest process
    print(f"ours (dataset command, end to end): {ours_seconds:7.2f} s  {n / ours_seconds:7.2f} windows/s  "
          f"(CPU {ours_cpu:.1f} s, all processes; peak RSS {peak:.0f} MB){extra}")
    if args.skip_reference:
        return
    window_table = pd.concat([run.windows(s) for s in run.splits])
    started, cpu_started = time.time(), time.process_time()
    ref = reference_build(window_table, run.tracks, N_BINS, BIN_SIZE)
    ref_seconds, ref_cpu = time.time() - started, time.process_time() - cpu_started
    equal = bool(np.array_equal(ours.view(np.uint16), ref.view(np.uint16)))
    print(f"reference loop                    : {ref_seconds:7.2f} s  {n / ref_seconds:7.2f} windows/s  "
          f"(CPU {ref_cpu:.1f} s)")
    print(f"speed ratio end to end (reference / ours): {ref_seconds / ours_seconds:.2f}x")
    print(f"identical targets (bit for bit): {equal}")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()

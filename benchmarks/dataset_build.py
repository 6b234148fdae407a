"""Dataset-build benchmark: our builder vs the reference loop on the same real BigWigs.

The reference way (Basenji's ``basenji_data_read.py`` pattern): one track at a time, one
window at a time, per-base float16 NumPy (``enformer_transfer.data._reference``). Ours:
``build_dataset`` (all tracks of a window at once, histogram median, worker processes,
chunked zarr writes). Both run on the same cores, from the same files; the script checks
they agree bit for bit, then prints seconds, windows/s, the speed ratio and peak memory
(our builder at 1x and Rx the windows, to show memory does not grow with windows).

    python benchmarks/dataset_build.py [--repeat 4] [--tracks 74]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT.parent / "shared" / "data" / "basenji-tiny-hg38"


def prepare(tmp: Path, n_tracks: int, repeat: int) -> tuple[Path, Path]:
    from enformer_transfer.targets.table import build_targets_table, write_targets_table

    bigwigs = sorted((TINY / "bigwig_contig").glob("*.bw"))[:n_tracks]
    write_targets_table(build_targets_table(bigwigs), tmp / "targets.tsv")  # study: clip 32, scale 2, mean
    bed = pd.read_csv(TINY / "windows.bed", sep="\t", header=None, names=["c", "s", "e", "name", "split"])
    rows = pd.DataFrame({"c": bed["name"], "s": 0, "e": 131072, "split": bed["split"]})
    windows = tmp / f"windows_x{repeat}.bed"
    pd.concat([rows] * repeat).to_csv(windows, sep="\t", header=False, index=False)
    return tmp / "targets.tsv", windows


def run_ours(tmp: Path, targets: Path, windows: Path, tag: str) -> dict:
    """Our builder in a child process; its peak RSS (largest process) from rusage."""
    code = (
        "import json, resource, sys, time\n"
        "from enformer_transfer import RunConfig, build_dataset\n"
        "c = RunConfig(run_dir=sys.argv[1])\n"
        "c.dataset.genome, c.dataset.targets, c.dataset.windows = sys.argv[2], sys.argv[3], sys.argv[4]\n"
        "t = time.time(); build_dataset(c, progress=False); s = time.time() - t\n"
        "me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'seconds': s, 'rss_main_mb': me / 1024, 'rss_worker_mb': kids / 1024}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp / f"run_{tag}"), str(TINY / "windows.fa"), str(targets), str(windows)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=74)
    parser.add_argument("--repeat", type=int, default=4, help="windows x this for the memory check")
    args = parser.parse_args()
    if not TINY.is_dir():
        sys.exit(f"real data not found at {TINY}")
    from enformer_transfer import Run
    from enformer_transfer.data._reference import reference_build

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        targets, windows1 = prepare(tmp, args.tracks, 1)
        _, windows_r = prepare(tmp, args.tracks, args.repeat)
        ours = run_ours(tmp, targets, windows1, "x1")
        ours_r = run_ours(tmp, targets, windows_r, f"x{args.repeat}")
        run = Run(tmp / "run_x1")
        ours_targets = np.concatenate([np.asarray(run.targets(s)) for s in run.splits])
        window_table = pd.concat([run.windows(s) for s in run.splits])

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.time()
        ref = reference_build(window_table, run.tracks, 896, 128)
        ref_seconds = time.time() - start
        rss_ref = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n = len(window_table)
    equal = bool(np.array_equal(ours_targets.view(np.uint16), ref.view(np.uint16)))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"data: {n} windows x 896 bins x {args.tracks} real BigWig tracks (131,072-bp rows)")
    print(f"reference loop : {ref_seconds:7.2f} s  {n / ref_seconds:7.2f} windows/s  peak RSS {max(rss0, rss_ref):.0f} MB")
    print(f"ours           : {ours['seconds']:7.2f} s  {n / ours['seconds']:7.2f} windows/s  "
          f"peak RSS main {ours['rss_main_mb']:.0f} MB, worker {ours['rss_worker_mb']:.0f} MB")
    print(f"ours x{args.repeat} windows: {ours_r['seconds']:7.2f} s  {args.repeat * n / ours_r['seconds']:7.2f} windows/s  "
          f"peak RSS main {ours_r['rss_main_mb']:.0f} MB, worker {ours_r['rss_worker_mb']:.0f} MB")
    steady = (args.repeat - 1) * n / (ours_r["seconds"] - ours["seconds"])
    print(f"speed ratio end to end, {n} windows (reference / ours): {ref_seconds / ours['seconds']:.1f}x")
    print(f"speed ratio at steady state (ours' extra windows/s {steady:.1f} vs reference): "
          f"{steady / (n / ref_seconds):.1f}x")
    print(f"identical targets (bit for bit): {equal}")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()

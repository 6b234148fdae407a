"""Pseudobulk benchmark: our `pseudobulk` command vs the straightforward way, on the same fragments.

Synthetic 10x-style fragments at a realistic density: cells in clusters in subclasses in classes
(40 groups at three levels by default), each cluster with its own accessible peaks plus a shared
background, 10 % of fragments from barcodes that are not cells, sorted and gzipped, on a genome
shaped like hg38 (24 chromosomes in hg38's proportions) whose size keeps ~0.16 fragments per bp
(20k cells x 25k fragments on 3.1 Gb) unless ``--genome-mb`` says otherwise.

The straightforward way (``reference``, written out below): the whole file into pandas, joined to
the cells table, per group a dense per-base count array per chromosome (np.bincount), its runs as
BigWig intervals through pybigtools. Both count Tn5 insertions, CPM, base-pair resolution; the
script checks their BigWigs agree, then prints seconds, fragments/s, peak memory (sampled from
/proc: the main process, and all its worker processes together) and the speed ratio, as JSON.

    python benchmarks/pseudobulk_speed.py                 # 50 M fragments, 20k cells, 40 groups
    python benchmarks/pseudobulk_speed.py --small         # 1 M fragments, a quick run
    python benchmarks/pseudobulk_speed.py --fragments 3000000 --workers 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HG38 = [248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973, 145138636, 138394717,
        133797422, 135086622, 133275309, 114364328, 107043718, 101991189, 90338345, 83257441, 80373285,
        58617616, 64444167, 46709983, 50818468, 156040895, 57227415]
DENSITY = 20_000 * 25_000 / sum(HG38)  # fragments per bp of a typical 10x snATAC run


def make_inputs(folder: Path, n_fragments: int, n_cells: int, genome_mb: float | None, seed: int = 0) -> dict:
    """fragments.tsv.gz, cells.tsv (barcode, class, subclass, cluster), chrom.sizes."""
    rng = np.random.default_rng(seed)
    genome = int(genome_mb * 1e6) if genome_mb else int(min(sum(HG38), n_fragments / DENSITY))
    scale = genome / sum(HG38)
    sizes = {f"chr{i + 1}": max(10_000, int(s * scale)) for i, s in enumerate(HG38)}
    chroms = list(sizes)
    offsets = np.cumsum([0] + list(sizes.values()))
    genome = int(offsets[-1])
    # 4 classes > 12 subclasses > 24 clusters; cluster sizes uneven
    clusters = [(f"class{c}", f"sub{c}_{s}", f"clu{c}_{s}_{k}") for c in range(4) for s in range(3) for k in range(2)]
    share = rng.dirichlet(np.full(len(clusters), 2.0))
    cluster_of_cell = rng.choice(len(clusters), size=n_cells, p=share)
    barcodes = np.array([f"{''.join(rng.choice(list('ACGT'), 16))}-1" for _ in range(n_cells + n_cells // 10)])
    pd.DataFrame({"barcode": barcodes[:n_cells],
                  "class": [clusters[c][0] for c in cluster_of_cell],
                  "subclass": [clusters[c][1] for c in cluster_of_cell],
                  "cluster": [clusters[c][2] for c in cluster_of_cell]}).to_csv(folder / "cells.tsv", sep="\t",
                                                                                 index=False)
    (folder / "chrom.sizes").write_text("".join(f"{c}\t{s}\n" for c, s in sizes.items()))
    # peaks: 2 per 10 kb; each cluster opens a third of them
    peaks = rng.integers(0, genome, size=max(100, genome // 5000))
    opened = rng.random((len(clusters), len(peaks))) < 0.33
    cell = rng.integers(0, len(barcodes), size=n_fragments)  # the last 10 % of barcodes: not cells
    in_peak = rng.random(n_fragments) < 0.5
    centre = rng.integers(0, genome, size=n_fragments)
    cluster = np.where(cell < n_cells, cluster_of_cell[np.minimum(cell, n_cells - 1)], 0)
    for c in range(len(clusters)):
        chosen = in_peak & (cluster == c)
        own = np.flatnonzero(opened[c])
        centre[chosen] = peaks[own[rng.integers(0, len(own), chosen.sum())]] + rng.normal(0, 150, chosen.sum()).astype(int)
    centre = np.clip(centre, 0, genome - 1)
    chrom = np.searchsorted(offsets, centre, side="right") - 1
    length = 40 + rng.geometric(1 / 150, size=n_fragments)
    start = np.clip(centre - offsets[chrom] - length // 2, 0, None)
    end = np.minimum(start + length, offsets[chrom + 1] - offsets[chrom])
    order = np.lexsort((start, chrom))
    table = pd.DataFrame({"chrom": np.array(chroms)[chrom[order]], "start": start[order], "end": end[order],
                          "barcode": barcodes[cell[order]], "reads": rng.integers(1, 5, n_fragments)})
    table = table[table["end"] > table["start"]]
    with gzip.open(folder / "fragments.tsv.gz", "wt", compresslevel=3) as handle:
        handle.write("# synthetic fragments, 10x layout\n")
        table.to_csv(handle, sep="\t", header=False, index=False)
    return {"fragments": folder / "fragments.tsv.gz", "cells": folder / "cells.tsv", "sizes": folder / "chrom.sizes",
            "n_fragments": len(table), "genome_bp": genome, "groups": 4 + 12 + 24}


def reference(fragments: Path, cells: Path, sizes_path: Path, out: Path, levels: list[str]) -> None:
    """The straightforward way: everything in memory, dense per-base counts per group and chromosome."""
    import pybigtools

    sizes = dict(pd.read_csv(sizes_path, sep="\t", header=None).itertuples(index=False))
    frags = pd.read_csv(fragments, sep="\t", header=None, comment="#", names=["chrom", "start", "end", "barcode", "reads"])
    table = frags.merge(pd.read_csv(cells, sep="\t"), on="barcode")
    out.mkdir(parents=True, exist_ok=True)
    for level in levels:
        for label, part in table.groupby(level):
            scale = 1e6 / (2 * len(part))
            by_chrom = dict(tuple(part.groupby("chrom")))

            def intervals(by_chrom=by_chrom, scale=scale):
                for chrom, size in sizes.items():
                    sub = by_chrom.get(chrom)
                    counts = np.zeros(size, dtype=np.int64)
                    if sub is not None:
                        counts = np.bincount(np.r_[sub["start"].to_numpy(), sub["end"].to_numpy() - 1], minlength=size)
                    change = np.flatnonzero(np.diff(counts)) + 1
                    starts = np.r_[0, change]
                    yield from zip([chrom] * len(starts), starts.tolist(), np.r_[change, size].tolist(),
                                   (counts[starts] * scale).astype(np.float32).tolist(), strict=True)

            pybigtools.open(str(out / f"{label}.bw"), "w").write(sizes, intervals())


def ours(fragments: Path, cells: Path, sizes: Path, out: Path, levels: list[str], workers: int) -> None:
    from enformer_transfer import pseudobulk
    from enformer_transfer.rundir.config import PseudobulkConfig

    pseudobulk(out, [fragments], cells, chrom_sizes=sizes, settings=PseudobulkConfig(levels=levels, min_cells=1,
                                                                                       workers=workers), progress=False)


def _child(which: str, args: list[str]) -> None:
    """Run one implementation in this process; print its seconds as JSON."""
    fragments, cells, sizes, out, workers = Path(args[0]), Path(args[1]), Path(args[2]), Path(args[3]), int(args[4])
    levels = ["class", "subclass", "cluster"]
    started = time.time()
    if which == "ours":
        ours(fragments, cells, sizes, out, levels, workers)
    else:
        reference(fragments, cells, sizes, out, levels)
    print(json.dumps({"seconds": time.time() - started}))


def _tree_rss_mb(pid: int) -> tuple[float, float]:
    """(RSS of ``pid``, RSS of ``pid`` and all its descendants), MB, from /proc. (rusage's maxrss
    would count the benchmark's own memory: Linux keeps it across fork + exec.)"""
    def rss(p: int) -> float:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def children(p: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    own, total, stack = rss(pid), 0.0, [pid]
    while stack:
        p = stack.pop()
        total += rss(p)
        stack += children(p)
    return own, total


def _measure(which: str, inputs: dict, out: Path, workers: int) -> dict:
    """One implementation in a child process; its seconds, and its peak memory sampled every
    0.1 s: the main process, and all its processes together."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src") + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen([sys.executable, __file__, "--_child", which, str(inputs["fragments"]),
                                 str(inputs["cells"]), str(inputs["sizes"]), str(out), str(workers)],
                                stdout=stdout, stderr=stderr, text=True, env=env)
        peak_main = peak_total = 0.0
        while proc.poll() is None:
            main_mb, total_mb = _tree_rss_mb(proc.pid)
            peak_main, peak_total = max(peak_main, main_mb), max(peak_total, total_mb)
            time.sleep(0.1)
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode:
            raise SystemExit(f"{which} failed:\n{stderr.read()[-3000:]}")
        result = json.loads(stdout.read().strip().splitlines()[-1])
    return {**result, "peak_main_mb": round(peak_main), "peak_all_processes_mb": round(peak_total)}


def _agree(ours_dir: Path, reference_dir: Path, names: list[str]) -> float:
    """The largest relative difference between the two implementations' BigWigs of ``names``."""
    import pybigtools

    worst = 0.0
    for name in names:
        a, b = pybigtools.open(str(ours_dir / "bigwigs" / f"{name}.bw")), pybigtools.open(str(reference_dir / f"{name}.bw"))
        for chrom, size in list(a.chroms().items())[:3]:
            x, y = a.values(chrom, 0, size, fillna=0), b.values(chrom, 0, size, fillna=0)
            worst = max(worst, float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-9)))
    return worst


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--_child":
        _child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fragments", type=int, default=50_000_000, help="fragments to generate")
    parser.add_argument("--cells", type=int, default=20_000, help="cells")
    parser.add_argument("--genome-mb", type=float, default=None, help="genome size (default: realistic density)")
    parser.add_argument("--workers", type=int, default=0, help="our worker processes (0: all cores)")
    parser.add_argument("--small", action="store_true", help="1 M fragments, 5k cells: a quick run")
    parser.add_argument("--no-reference", action="store_true", help="only our command (the reference needs the "
                                                                     "whole file in memory)")
    args = parser.parse_args()
    if args.small:
        args.fragments, args.cells = 1_000_000, 5_000
    with tempfile.TemporaryDirectory(prefix="pseudobulk-bench-") as tmp:
        tmp = Path(tmp)
        started = time.time()
        inputs = make_inputs(tmp, args.fragments, args.cells, args.genome_mb)
        generated = time.time() - started
        result = {"machine": f"{platform.node()} {os.cpu_count()} cores", "fragments": inputs["n_fragments"],
                  "cells": args.cells, "groups": inputs["groups"], "genome_mb": inputs["genome_bp"] / 1e6,
                  "file_mb": inputs["fragments"].stat().st_size / 1e6, "generate_s": round(generated, 1)}
        mine = _measure("ours", inputs, tmp / "ours", args.workers)
        result["ours"] = {**mine, "fragments_per_s": inputs["n_fragments"] / mine["seconds"]}
        if not args.no_reference:
            ref = _measure("reference", inputs, tmp / "reference", 1)
            result["reference"] = {**ref, "fragments_per_s": inputs["n_fragments"] / ref["seconds"]}
            result["speedup"] = ref["seconds"] / mine["seconds"]
            result["max_relative_difference"] = _agree(tmp / "ours", tmp / "reference",
                                                       ["class0", "sub1_2", "clu3_0_1"])
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

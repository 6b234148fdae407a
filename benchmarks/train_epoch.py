"""Head-training epoch benchmark: our embeddings loader vs the reference way, same data, one run.

Data: a synthetic embeddings store of realistic shape (windows x 896 x 3072 float16, one
uncompressed zarr chunk per window, as ``embed`` writes it) with targets (windows x 896 x 66).
Reference way (the study): one float32 ``.pt`` file per window (and one for its targets),
``torch.load`` per item, batch 64. Both use the same DataLoader worker count and the same
head step (Linear 3072 -> 66 + Softplus, Poisson loss, Adam). Prints seconds per epoch
for the loader alone and for a full training epoch, the ratios, and the raw read speed of
the store files (is the loader limited by reading, or by Python?).

    python benchmarks/train_epoch.py [--windows 128] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


class PtFiles(torch.utils.data.Dataset):
    def __init__(self, folder: Path, n: int):
        self.folder, self.n = folder, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.load(self.folder / f"{i}.pt"), "y": torch.load(self.folder / f"{i}.y.pt")}


def drop_caches() -> bool:
    """Empty the page cache (root on Linux), so reads come from the disk."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def raw_read(folder: Path) -> tuple[float, int]:
    start, nbytes = time.time(), 0
    for path in folder.rglob("*"):
        if path.is_file():
            nbytes += len(path.read_bytes())
    return time.time() - start, nbytes


def epoch(loader, head=None, optimizer=None) -> float:
    """One pass; without a head, batches are only delivered (as to a GPU, which converts
    float16 on the device); with a head, a CPU training step including the conversion."""
    start = time.time()
    for batch in loader:
        if head is not None:
            x = batch["x"].float()
            pred = head(x)
            loss = (pred - batch["y"] * torch.log(pred + 1e-7)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=128)
    parser.add_argument("--bins", type=int, default=896)
    parser.add_argument("--dim", type=int, default=3072)
    parser.add_argument("--tracks", type=int, default=66)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import zarr

    from enformer_transfer.heads.data import WindowSource, make_loader
    from enformer_transfer.heads.models import LinearHead

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as name:
        tmp = Path(name)
        group = zarr.open_group(str(tmp / "store.zarr"), mode="w")
        emb = group.create_array("x", shape=(args.windows, args.bins, args.dim), chunks=(1, args.bins, args.dim),
                                 dtype="float16", compressors=None, fill_value=0)
        kept = args.bins // 8  # what embed --train-bin-fraction 0.125 stores
        sub = group.create_array("x8", shape=(args.windows, kept, args.dim), chunks=(1, kept, args.dim),
                                 dtype="float16", compressors=None, fill_value=0)
        bins = group.create_array("x8.bins", shape=(args.windows, kept), chunks=(1, kept), dtype="int16", fill_value=0)
        tgt = group.create_array("y", shape=(args.windows, args.bins, args.tracks), chunks=(8, args.bins, args.tracks),
                                 dtype="float16", fill_value=0)
        (tmp / "pt").mkdir()
        for i in range(args.windows):
            x = rng.standard_normal((args.bins, args.dim), dtype=np.float32)
            y = rng.poisson(2.0, size=(args.bins, args.tracks)).astype(np.float32)
            emb[i] = x.astype(np.float16)
            keep = np.sort(rng.choice(args.bins, kept, replace=False))
            sub[i] = x[keep].astype(np.float16)
            bins[i] = keep
            tgt[i] = y.astype(np.float16)
            torch.save(torch.from_numpy(x), tmp / "pt" / f"{i}.pt")
            torch.save(torch.from_numpy(y), tmp / "pt" / f"{i}.y.pt")

        ours = make_loader(WindowSource(emb, tgt, np.arange(args.tracks),
                                        paths={"embeddings": (str(tmp / "store.zarr"), "x"),
                                               "targets": (str(tmp / "store.zarr"), "y")}),
                           args.batch_size, args.workers, seed=0, shuffle=True)
        eighth = make_loader(WindowSource(sub, tgt, np.arange(args.tracks), bins=bins,
                                          paths={"embeddings": (str(tmp / "store.zarr"), "x8"),
                                                 "targets": (str(tmp / "store.zarr"), "y"),
                                                 "bins": (str(tmp / "store.zarr"), "x8.bins")}),
                             args.batch_size, args.workers, seed=0, shuffle=True)
        ref = torch.utils.data.DataLoader(PtFiles(tmp / "pt", args.windows), batch_size=args.batch_size,
                                          shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0)
        epoch(ours)  # warm-up: worker start, page cache
        epoch(ref)
        epoch(eighth)
        loader_ours, loader_ref, loader_eighth = epoch(ours), epoch(ref), epoch(eighth)
        head = LinearHead(args.dim, args.tracks)
        opt = torch.optim.Adam(head.parameters(), lr=1e-4)
        epoch(eighth, head, opt)  # warm-up: optimizer state, allocator, thread pool
        train_ours = epoch(ours, head, opt)
        train_ref = epoch(ref, head, opt)
        train_eighth = epoch(eighth, head, opt)
        raw, nbytes = raw_read(tmp / "store.zarr" / "x")
        cold = None
        if drop_caches():  # reads from the disk: is our loader limited by the disk?
            cold_raw, _ = raw_read(tmp / "store.zarr" / "x")
            drop_caches()
            cold_ours = epoch(ours)
            drop_caches()
            cold_ref = epoch(ref)
            drop_caches()
            cold_eighth = epoch(eighth)
            cold = (cold_raw, cold_ours, cold_ref, cold_eighth)

    gb = args.windows * args.bins * args.dim * 2 / 1e9
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{args.windows} windows x {args.bins} x {args.dim}, {args.tracks} tracks, batch {args.batch_size}, "
          f"{args.workers} loader workers")
    print(f"raw read of our store's files: {raw:.2f} s ({nbytes / 1e9 / raw:.2f} GB/s)")
    print(f"batches delivered : ours {loader_ours:.2f} s ({gb / loader_ours:.2f} GB/s of float16) | "
          f"reference .pt {loader_ref:.2f} s | ratio {loader_ref / loader_ours:.1f}x | "
          f"ours, 1/8 of bins stored {loader_eighth:.2f} s | ratio {loader_ref / loader_eighth:.1f}x")
    if cold is None:
        print("cold cache: not measured (cannot drop the page cache here)")
    else:
        cold_raw, cold_ours, cold_ref, cold_eighth = cold
        print(f"cold cache, batches delivered: raw read of our store {cold_raw:.2f} s "
              f"({gb / cold_raw:.2f} GB/s) | ours {cold_ours:.2f} s | reference .pt {cold_ref:.2f} s | "
              f"ratio {cold_ref / cold_ours:.1f}x | ours, 1/8 of bins {cold_eighth:.2f} s | "
              f"ratio {cold_ref / cold_eighth:.1f}x")
    print(f"CPU training epoch: ours {train_ours:.2f} s | reference .pt {train_ref:.2f} s | "
          f"ratio {train_ref / train_ours:.1f}x | ours, 1/8 of bins {train_eighth:.2f} s | "
          f"ratio {train_ref / train_eighth:.1f}x")


if __name__ == "__main__":
    main()

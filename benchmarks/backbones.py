"""Per-backbone speed and memory: embedding (windows/s, peak memory, float16 store size per window)
and fine-tuning (training windows/s and peak memory per trainable mode) of one backbone family,
random weights written by the family's own ``init`` and read back by its ``load``.

Embed: the family's trunk (``family.trunk(model, bins)``) over random one-hot windows at its
geometry, under bf16 autocast on GPU (fp32 on CPU), in batches; the reference way (fp32, one
window at a time) runs on a few windows for the ratio. Fine-tune: the tool's end-to-end model
(trunk + a linear 66-track head, Poisson loss, AdamW, BatchNorm statistics frozen, activation
checkpointing over the family's checkpoint segments and bf16 autocast on GPU) per mode
(lora, last:2 (last:1 for a one-block trunk), all). Peak memory: torch.cuda.max_memory_allocated
on GPU; on CPU the growth of the peak RSS over the RSS at the phase's start (the high-water mark
reset per phase through /proc/self/clear_refs where Linux allows it, ru_maxrss otherwise).

On a GPU (full presets: Enformer 196,608 bp, Borzoi 524,288 bp, AlphaGenome 1,048,576 bp):
    python benchmarks/backbones.py --kind borzoi --windows 8 --steps 3
On CPU (tiny presets, a check of the script):
    python benchmarks/backbones.py --kind alphagenome --device cpu --windows 4 --steps 2
``--kind flashzoi`` needs flash-attn on a CUDA GPU; elsewhere it prints one line saying why it
was skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import allow_missing_polars  # noqa: E402

allow_missing_polars()


def allow_missing_intervaltree() -> None:
    """borzoi_pytorch's __init__ imports its gene utilities, which import intervaltree (an sdist
    only, not in the carried wheels); no benchmark uses them."""
    if importlib.util.find_spec("intervaltree") is None:
        stub = types.ModuleType("intervaltree")
        stub.IntervalTree = type("IntervalTree", (), {})
        sys.modules["intervaltree"] = stub


allow_missing_intervaltree()

KINDS = ("enformer", "borzoi", "flashzoi", "alphagenome")


# --- memory --------------------------------------------------------------------------------

def _rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Peak:
    """Peak memory over a phase: CUDA allocator peak on GPU, peak RSS growth on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
            except OSError:
                pass
            self.start = _rss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.bytes = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.start)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


# --- the benchmark -------------------------------------------------------------------------

def skip_reason(kind: str, device: torch.device) -> str | None:
    if kind != "flashzoi":
        return None
    missing = [what for what, absent in (("a CUDA device (this run is on the CPU)", device.type != "cuda"),
                                         ("flash-attn (not installed)", importlib.util.find_spec("flash_attn") is None))
               if absent]
    if missing:
        return (f"Flashzoi needs flash-attn on a CUDA GPU; missing here: {' and '.join(missing)} "
                "(pip install flash-attn --no-build-isolation on a CUDA machine; --kind borzoi runs without it)")
    return None


def free(device: torch.device) -> None:
    """Return what the last phase's (now unreferenced) tensors held, so the next starts clean."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def init_backbone(family, out: Path, preset: str) -> Path:
    options = {"calibrate_batches": 0} if family.kind in ("borzoi", "flashzoi") else {}  # speed only
    return family.init(out, preset, **options)


def load(family, folder: Path, device: torch.device):
    return family.load(str(folder)).to(device).eval()


def onehot(batch: int, length: int, device: torch.device) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length)), 4).float().to(device)


def embed(args, family, folder: Path, device: torch.device) -> dict:
    from enformer_transfer.devices import autocast

    model = load(family, folder, device)
    g = family.geometry(model)
    trunk = family.trunk(model, g.target_bins).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batches = [onehot(min(args.batch_size, args.windows - i), g.seq_length, device)
               for i in range(0, args.windows, args.batch_size)]

    def timed(xs, precision):
        with torch.inference_mode(), autocast(device, precision):
            trunk(xs[0][:1])  # warm-up
            sync()
            start = time.time()
            for x in xs:
                out = trunk(x)
            sync()
        return time.time() - start, out

    with Peak(device) as peak:
        seconds, out = timed(batches, args.precision)
    result = {"geometry": g, "depth": len(family.blocks(model)), "params": sum(p.numel() for p in trunk.parameters()),
              "windows_per_s": args.windows / seconds, "peak": peak.bytes,
              "store_bytes": out[0].numel() * 2, "out_shape": tuple(out.shape[1:])}
    if args.ref_windows:
        ref = [onehot(1, g.seq_length, device) for _ in range(args.ref_windows)]
        try:
            ref_seconds, _ = timed(ref, "fp32")
            result["ref_windows_per_s"] = args.ref_windows / ref_seconds
        except torch.cuda.OutOfMemoryError:
            result["ref_windows_per_s"] = None
    return result


def finetune(args, family, folder: Path, device: torch.device, mode: str) -> dict:
    from enformer_transfer.backbone.model import SequenceModel
    from enformer_transfer.finetune.adapt import adapt
    from enformer_transfer.heads.losses import poisson
    from enformer_transfer.heads.models import make_head

    torch.manual_seed(0)
    model = adapt(family.load(str(folder)), family, mode)
    g = family.geometry(model)
    trunk = family.trunk(model, g.target_bins)
    head = make_head("linear", g.embedding_dim, args.tracks)
    net = SequenceModel(trunk, head, args.precision, checkpointing=args.checkpointing, family=family).to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = onehot(args.ft_batch_size, g.seq_length, device)
    y = torch.poisson(torch.rand(args.ft_batch_size, g.target_bins, args.tracks)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = poisson(net(x), y)
        loss.backward()
        optimizer.step()

    with Peak(device) as peak:
        for _ in range(args.warmup):
            step()
        sync()
        start = time.time()
        for _ in range(args.steps):
            step()
        sync()
        seconds = time.time() - start
    trainable = sum(p.numel() for p in params)
    return {"mode": mode, "windows_per_s": args.steps * args.ft_batch_size / seconds, "peak": peak.bytes,
            "trainable": trainable}


def modes_for(args, depth: int) -> list[str]:
    return args.modes.split(",") if args.modes else ["lora", f"last:{min(2, depth)}", "all"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--preset", choices=("tiny", "full"), default=None, help="default: full on GPU, tiny on CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--windows", type=int, default=8, help="embedded windows (timed)")
    parser.add_argument("--batch-size", type=int, default=1, help="embedding batch")
    parser.add_argument("--ref-windows", type=int, default=None,
                        help="windows the reference way (fp32, batch 1); default 2 on GPU, 0 (none) on CPU")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per mode")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ft-batch-size", type=int, default=1)
    parser.add_argument("--tracks", type=int, default=66)
    parser.add_argument("--modes", default=None, help="default: lora,last:2,all (last:1 for a one-block trunk)")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--precision", default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="activation checkpointing over the family's segments (default: on GPU only)")
    parser.add_argument("--tmp", default=None, help="scratch folder for the backbone (default: a temporary one)")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.preset = args.preset or ("full" if on_gpu else "tiny")
    args.precision = args.precision or ("bf16" if on_gpu else "fp32")
    args.checkpointing = on_gpu if args.checkpointing is None else args.checkpointing
    args.ref_windows = (2 if on_gpu else 0) if args.ref_windows is None else args.ref_windows

    reason = skip_reason(args.kind, device)
    if reason:
        print(f"{args.kind}: skipped: {reason}", flush=True)
        return
    from enformer_transfer.backbone.families import get_family

    family = get_family(args.kind)
    name = torch.cuda.get_device_name(device) if on_gpu else f"cpu ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.time()
        folder = init_backbone(family, Path(tmp) / "backbone", args.preset)
        setup = time.time() - start
        e = embed(args, family, folder, device)
        free(device)
        g = e["geometry"]
        print(f"{args.kind} ({args.preset} preset, random weights): {e['params'] / 1e6:.1f} M trunk parameters; "
              f"input {g.seq_length:,} bp, {g.target_bins:,} bins of {g.bin_size} bp x {g.embedding_dim:,} channels; "
              f"device {name}; torch {torch.__version__}; {args.precision}; init + save {setup:.1f} s", flush=True)
        ratio = ""
        if "ref_windows_per_s" in e and e["ref_windows_per_s"] is None:
            ratio = "   reference (fp32, batch 1): out of memory"
        elif "ref_windows_per_s" in e:
            ratio = (f"   reference (fp32, batch 1, {args.ref_windows} windows) {e['ref_windows_per_s']:.3f}/s, "
                     f"ratio {e['windows_per_s'] / e['ref_windows_per_s']:.1f}x")
        print(f"| embed    | {e['windows_per_s']:8.3f} windows/s | peak {_gb(e['peak']):>9s} | batch {args.batch_size}, "
              f"{args.windows} windows | store {_mb(e['store_bytes'])}/window (float16 "
              f"{e['out_shape'][0]:,} x {e['out_shape'][1]:,}){ratio}", flush=True)
        if args.skip_finetune:
            return
        for mode in modes_for(args, e["depth"]):
            try:
                r = finetune(args, family, folder, device, mode)
                free(device)
                print(f"| {mode:8s} | {r['windows_per_s']:8.3f} training windows/s | peak {_gb(r['peak']):>9s} | "
                      f"batch {args.ft_batch_size}, {args.steps} steps | trainable {r['trainable']:,} | "
                      f"checkpointing {args.checkpointing}", flush=True)
            except torch.cuda.OutOfMemoryError:
                print(f"| {mode:8s} | out of memory at batch {args.ft_batch_size}", flush=True)
                free(device)


if __name__ == "__main__":
    main()

"""Contributions benchmark: regions/s for grad-input and ISM, batched over tracks vs a loop over tracks.

Four ways to the same numbers, one random-weight Enformer + a linear head on random DNA:

- grad-input, ours: ``interpret.attribution.input_gradients`` with all K tracks at once (one
  forward pass; the backward passes batched across tracks, through the transformer for the
  whole input and through the convolution tower only over the window plus its receptive field);
- loop over tracks: the same function called once per track (K forward passes);
- reference: plain autograd through ``model(x)``, one forward and backward per track (what a
  script would do), the oracle the other two are compared with;
- ISM, ours (crop of the tower per mutant, spliced) vs the reference (the whole model per
  mutant), on a few positions.

Prints regions/s for each, the speed-ups, and the largest differences (float rounding).

CPU, tiny backbone:  python benchmarks/contributions_speed.py
GPU, full size:      python benchmarks/contributions_speed.py --full --device cuda --precision bf16 \\
                         --regions 8 --ism-width 20
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import allow_missing_polars  # noqa: E402

allow_missing_polars()


def build_model(args, device):
    import torch
    from enformer_pytorch import Enformer, EnformerConfig

    from enformer_transfer.backbone.model import SequenceModel
    from enformer_transfer.heads.models import LinearHead

    torch.manual_seed(0)
    config = EnformerConfig(dim=args.dim, depth=args.depth, heads=args.heads, attn_dim_key=args.attn_dim_key,
                            num_downsamples=7, target_length=args.n_bins,
                            dim_divisible_by=128 if args.dim % 128 == 0 else args.dim // 4,
                            output_heads={"human": 8})
    enformer = Enformer(config)
    for module in enformer.modules():  # random attention outputs (enformer-pytorch zeroes them at init)
        if isinstance(module, torch.nn.Linear) and module.weight.abs().sum() == 0:
            torch.nn.init.normal_(module.weight, std=0.02)
    enformer.to(device)
    calibrate_batchnorm(enformer, args.seq_length, device)
    head = LinearHead(2 * args.dim, args.tracks)
    return SequenceModel(enformer.trunk, head, args.precision).to(device).eval()


def calibrate_batchnorm(enformer, seq_length: int, device, batches: int = 2) -> None:
    """BatchNorm statistics set on random DNA, as ``backbone init`` does: a freshly initialised
    Enformer's activations otherwise collapse and its gradients are ~1e-7 (nothing to compare)."""
    import torch

    norms = [m for m in enformer.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for _ in range(batches):
            dna = torch.nn.functional.one_hot(torch.randint(0, 4, (1, seq_length), device=device), 4).float()
            enformer.trunk(dna)
    for norm in norms:
        norm.momentum = 0.1
    enformer.eval()


def timed(fn, repeats: int, device) -> tuple[float, object]:
    import torch

    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full-size architecture (196,608 bp, dim 1536, depth 11)")
    parser.add_argument("--seq-length", type=int, default=16_384)
    parser.add_argument("--n-bins", type=int, default=64)
    parser.add_argument("--dim", type=int, default=48)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--attn-dim-key", type=int, default=16)
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--width", type=int, default=500, help="bp of contributions per region")
    parser.add_argument("--region-bins", type=int, default=4, help="output bins summed per track")
    parser.add_argument("--ism-width", type=int, default=50, help="bp mutated per region (3 mutants each)")
    parser.add_argument("--ism-batch-size", type=int, default=64)
    parser.add_argument("--reference-ism-positions", type=int, default=4)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.full:
        args.seq_length, args.n_bins, args.dim, args.depth, args.heads, args.attn_dim_key = 196_608, 896, 1536, 11, 8, 64

    import numpy as np
    import torch

    from enformer_transfer.devices import resolve_device
    from enformer_transfer.interpret.attribution import (
        TrunkSplit,
        attributed_scalars,
        in_silico_mutagenesis,
        input_gradients,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = build_model(args, device)
    split = TrunkSplit.of(model)
    rng = np.random.default_rng(0)
    L, K = args.seq_length, args.tracks
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (args.regions, L))]
    bins = np.zeros((args.regions, args.n_bins), dtype=np.float32)
    first = args.n_bins // 2 - args.region_bins // 2
    bins[:, first : first + args.region_bins] = 1.0
    weights = np.eye(K, dtype=np.float32)
    window = (L // 2 - args.width // 2, L // 2 - args.width // 2 + args.width)

    def ours():
        return np.concatenate([input_gradients(model, x[i : i + args.batch_size], bins[i : i + args.batch_size],
                                               weights, window)[0] for i in range(0, args.regions, args.batch_size)])

    def loop():
        return np.concatenate([np.concatenate([input_gradients(model, x[i : i + args.batch_size],
                                                               bins[i : i + args.batch_size], weights[k : k + 1],
                                                               window)[0] for k in range(K)], axis=1)
                               for i in range(0, args.regions, args.batch_size)])

    def reference():
        from enformer_transfer.interpret.attribution import frozen

        out = []
        with frozen(model):
            for i in range(0, args.regions, args.batch_size):
                xb = torch.from_numpy(x[i : i + args.batch_size]).to(device)
                bw = torch.from_numpy(bins[i : i + args.batch_size]).to(device)
                per_track = []
                for k in range(K):
                    inp = xb.clone().requires_grad_()
                    scalar = attributed_scalars(model(inp), bw, torch.from_numpy(weights[k : k + 1]).to(device))
                    per_track.append(torch.autograd.grad(scalar.sum(), inp)[0][:, window[0] : window[1]].float().cpu())
                out.append(torch.stack(per_track, 1).numpy())
        return np.concatenate(out)

    ours(), loop() if args.repeats > 1 else None  # warm-up
    results = {}
    t_ours, g_ours = timed(ours, args.repeats, device)
    t_loop, g_loop = timed(loop, args.repeats, device)
    t_ref, g_ref = timed(reference, 1, device)
    results["grad_input"] = {
        "regions_per_s_batched": args.regions / t_ours, "regions_per_s_loop_over_tracks": args.regions / t_loop,
        "regions_per_s_reference_loop": args.regions / t_ref,
        "speedup_vs_loop_over_tracks": t_loop / t_ours, "speedup_vs_reference_loop": t_ref / t_ours,
        "max_abs_diff_batched_vs_loop": float(np.abs(g_ours - g_loop).max()),
        "max_abs_diff_batched_vs_reference": float(np.abs(g_ours - g_ref).max()),
        "max_abs_gradient": float(np.abs(g_ref).max()),
    }

    ism_window = (L // 2 - args.ism_width // 2, L // 2 - args.ism_width // 2 + args.ism_width)
    n_ism = min(args.regions, 2)
    t_ism, (deltas, scalars) = timed(lambda: in_silico_mutagenesis(model, x[:n_ism], bins[:n_ism], weights,
                                                                   ism_window, args.ism_batch_size), 1, device)
    positions = np.linspace(ism_window[0], ism_window[1] - 1, args.reference_ism_positions).astype(int)

    def reference_ism():
        out = np.zeros((n_ism, len(positions), 4, K), dtype=np.float32)
        with torch.inference_mode():
            for r in range(n_ism):
                base = torch.from_numpy(x[r : r + 1]).to(device)
                mutants = base.repeat(4 * len(positions), 1, 1)
                for j, p in enumerate(positions):
                    for b in range(4):
                        mutants[4 * j + b, p] = 0.0
                        mutants[4 * j + b, p, b] = 1.0
                bw = torch.from_numpy(bins[r : r + 1]).to(device).expand(len(mutants), -1)
                s = attributed_scalars(model(mutants), bw, torch.from_numpy(weights).to(device)).cpu().numpy()
                reference_scalar = attributed_scalars(model(base), bw[:1], torch.from_numpy(weights).to(device))
                out[r] = (s - reference_scalar.cpu().numpy()).reshape(len(positions), 4, K)
        return out

    t_ref_ism, ref_deltas = timed(reference_ism, 1, device)
    ours_at = deltas[:, :, positions - ism_window[0], :].transpose(0, 2, 3, 1)
    mutants_ours = n_ism * 3 * args.ism_width
    mutants_ref = n_ism * 4 * len(positions)
    results["ism"] = {
        "width_bp": args.ism_width, "regions_per_s": n_ism / t_ism, "mutants_per_s": mutants_ours / t_ism,
        "mutants_per_s_reference": mutants_ref / t_ref_ism,
        "speedup_per_mutant_vs_reference": (mutants_ours / t_ism) / (mutants_ref / t_ref_ism),
        "max_abs_diff_vs_reference": float(np.abs(ours_at - ref_deltas).max()),
        "max_abs_delta": float(np.abs(ref_deltas).max()),
    }
    setup = {"device": str(device), "precision": args.precision, "seq_length": L, "n_bins": args.n_bins,
             "dim": args.dim, "depth": args.depth, "tracks": K, "regions": args.regions, "width": args.width,
             "batch_size": args.batch_size, "trunk_split": split is not None,
             "receptive_half_width_bp": split.half_width if split else None, "torch_threads": torch.get_num_threads(),
             "machine": platform.processor() or platform.machine(),
             "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    g = results["grad_input"]
    print(f"grad-input, {K} tracks: batched {g['regions_per_s_batched']:.2f} regions/s | loop over tracks "
          f"{g['regions_per_s_loop_over_tracks']:.2f} ({g['speedup_vs_loop_over_tracks']:.1f}x) | reference loop "
          f"{g['regions_per_s_reference_loop']:.2f} ({g['speedup_vs_reference_loop']:.1f}x); max |diff| "
          f"{g['max_abs_diff_batched_vs_loop']:.2g} (loop), {g['max_abs_diff_batched_vs_reference']:.2g} (reference) "
          f"of max |gradient| {g['max_abs_gradient']:.2g}")
    i = results["ism"]
    print(f"ism, {args.ism_width} bp: {i['regions_per_s']:.3f} regions/s, {i['mutants_per_s']:.1f} mutants/s "
          f"(reference {i['mutants_per_s_reference']:.1f}, {i['speedup_per_mutant_vs_reference']:.1f}x); max |diff| "
          f"{i['max_abs_diff_vs_reference']:.2g} of max |delta| {i['max_abs_delta']:.2g}")
    print(json.dumps({"setup": setup, **results}))


if __name__ == "__main__":
    main()

"""The contributions stage's work (``stages/contributions.py`` runs it):
which bases of each region drive a head's tracks, per track or contrast.

For each region the model input (``seq_length`` bp) is centred on the region's centre
(``(start + end) // 2``). The attributed scalar of a track is the sum of its predictions over
the output bins overlapping the region (``target_bins``: that many bins centred on the region
instead); a contrast ``A,B`` attributes track A's scalar minus track B's. Contributions are
stored over ``width`` bp centred on the region (default: the longest region):

- grad-input: hypothetical = the input gradient mean-centred over the four bases at each
  position; actual = hypothetical x one-hot (the centred gradient at the base present);
- ism: every single-base change of the window (3 x width mutants); hypothetical = the changes
  mean-centred over the four bases (0 for the base present before centring); actual =
  hypothetical x one-hot, i.e. minus the mean change when the base is mutated; the raw changes
  are kept as ``ism``;
- deepliftshap: DeepLIFT/SHAP against ``shuffles`` dinucleotide shuffles of the window (the
  flanks kept); hypothetical as tangermeme computes it, actual = hypothetical x one-hot, which
  sums to the scalar minus its mean over the references (measured per region: summation_error).

Regions are computed in chunks of ``CHUNK_REGIONS``, each logged when written, so an
interrupted run resumes at the first unfinished chunk.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..devices import resolve_device
from ..errors import EnformerTransferError, InputError
from ..fs import atomic_path, safe_filename, write_json_atomic
from ..genome.chroms import mismatch_message
from ..genome.regions import find_region, has_header, read_regions
from ..progress import Progress
from ..results import Run
from ..rundir import store
from ..rundir.config import RunConfig
from ..rundir.layout import ContributionsFolder
from ..targets.table import select_tracks

log = logging.getLogger("enformer_transfer")

CHUNK_REGIONS = 8
ISM_MAX_WIDTH = 10_000  # 3 x width forward passes per region: beyond a few kb, use grad-input
METHOD_ARRAYS = {"grad-input": (), "ism": ("ism",), "deepliftshap": ("reference_scalars", "summation_error")}


@dataclass
class ContributionsPlan:
    config: RunConfig
    run: Run
    name: str
    regions: pd.DataFrame  # name, chrom, start, end, label, centre, input_start, window_start, first_bin, last_bin
    targets: pd.DataFrame  # name, label, kind, tracks
    track_weights: np.ndarray  # (K, head tracks)
    width: int
    precision: str

    @property
    def settings(self):
        return self.config.contributions

    @property
    def window(self) -> tuple[int, int]:
        """The stored window as input positions (the same for every region)."""
        start = self.run.geometry.seq_length // 2 - self.width // 2
        return start, start + self.width


def plan_contributions(config: RunConfig) -> ContributionsPlan:
    """Check the head, the regions, the tracks and the settings before any work."""
    c = config.contributions
    run = Run.of(config, "contributions")
    if c.regions is None:
        raise InputError("contributions: pass --regions BED (or a DAR table, e.g. the dars.csv of call-dars)")
    head = run.head(c.head)
    if c.method == "deepliftshap" and not head.family.exact_deeplift:
        raise InputError(f"deepliftshap: the {head.family.display_name or head.family.kind} backbone of head "
                         f"{c.head!r} has no exact DeepLIFT rules; use --method grad-input or --method ism "
                         "(they work with every backbone)")
    head_tracks = run.tracks.iloc[head.check_compatible(run)].reset_index(drop=True)
    targets, weights = _targets(head_tracks, c.tracks_where, c.contrast, c.label_column)
    regions = read_regions(c.regions, c.label_column if c.label_column and has_header(c.regions) else None)
    genome, g = run.genome(c.chrom_aliases), run.geometry
    length = (regions["end"] - regions["start"]).to_numpy()
    too_long = np.flatnonzero(length > g.target_interval_bp)
    if len(too_long):
        row = int(too_long[0])
        raise InputError(f"{c.regions} row {row + 1}: region {regions['name'].iloc[row]} is {length[row]} bp, longer "
                         f"than the model's output ({g.target_interval_bp} bp); split it")
    width = c.width or int(length.max())
    if width > g.seq_length:
        raise InputError(f"--width {width} is longer than the model input ({g.seq_length} bp)")
    if c.method == "ism" and width > ISM_MAX_WIDTH:
        raise InputError(f"ism over {width} bp is {3 * width:,} forward passes per region; use --width <= "
                         f"{ISM_MAX_WIDTH} or --method grad-input")
    if c.target_bins is not None and c.target_bins > g.n_bins:
        raise InputError(f"--target-bins {c.target_bins} exceeds the model's {g.n_bins} output bins")
    regions = _place(regions, genome, g, width, c.target_bins, str(c.regions), c.method)
    for text in c.plot_regions:
        if find_region(regions, text) < 0:
            raise InputError(f"--plot-regions {text!r}: no such region in {c.regions} (give a name, chrom:start-end "
                             "or a row number)")
    name = c.name or f"{c.head}-{c.method}"
    device = resolve_device(c.device)
    precision = c.precision if c.precision != "auto" else (
        "bf16" if device.type == "cuda" and c.method == "grad-input" else "fp32")
    return ContributionsPlan(config, run, name, regions, targets, weights, width, precision)


def _targets(head_tracks: pd.DataFrame, where: str | None, contrast: list[str],
             label_column: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The attributed scalars: the chosen tracks, then the contrast; their weights over the head's tracks."""
    labels = (head_tracks[label_column].astype(str).replace({"nan": ""}) if label_column
              and label_column in head_tracks.columns else pd.Series([""] * len(head_tracks)))
    ids = head_tracks["identifier"].astype(str)
    chosen = select_tracks(head_tracks, where) if where or not contrast else np.array([], dtype=int)
    rows, weights = [], []
    for i in chosen:
        rows.append({"name": ids[i], "label": labels[i], "kind": "track", "tracks": ids[i]})
        weights.append(np.eye(len(head_tracks), dtype=np.float32)[i])
    if contrast:
        if len(contrast) != 2:
            raise InputError(f"--contrast {','.join(contrast)!r}: give two tracks, A,B (attributes A minus B)")
        picked = []
        for item in contrast:
            hits = np.flatnonzero((ids == item).to_numpy() | (labels == item).to_numpy())
            if len(hits) > 1 and len(chosen):  # among the chosen tracks first
                hits = np.intersect1d(hits, chosen)
            if len(hits) != 1:
                raise InputError(f"--contrast: {item!r} matches {len(hits)} of the head's tracks (identifiers or "
                                 f"{label_column or 'label'} values); it must match one"
                                 + ("; narrow it with --tracks-where" if len(hits) > 1 else ""))
            picked.append(int(hits[0]))
        a, b = picked
        if a == b:
            raise InputError("--contrast: A and B are the same track")
        w = np.zeros(len(head_tracks), dtype=np.float32)
        w[a], w[b] = 1.0, -1.0
        display = f"{labels[a]}-{labels[b]}" if labels[a] and labels[b] else f"{ids[a]}-{ids[b]}"
        rows.append({"name": f"{ids[a]}-{ids[b]}", "label": labels[a], "kind": "contrast",
                     "tracks": f"{ids[a]},{ids[b]}", "display": display})
        weights.append(w)
    table = pd.DataFrame(rows)
    shown = table["label"].where(table["label"] != "", table["name"])
    if "display" in table.columns:
        shown = table["display"].where(table["kind"] == "contrast", shown)
    # the cell type (label) matches regions' labels; figures show it, or the name where it is not unique
    table["display"] = shown.where(~shown.duplicated(keep=False), table["name"])
    return table, np.stack(weights)


def _place(regions: pd.DataFrame, genome, geometry, width: int, target_bins: int | None, source: str,
           method: str) -> pd.DataFrame:
    """Input, window and attributed bins of each region; refuses regions the model cannot centre."""
    regions = regions.copy()
    resolved = {chrom: genome.names.resolve(chrom) for chrom in dict.fromkeys(regions["chrom"])}
    missing = [chrom for chrom, name in resolved.items() if name is None]
    if missing:
        row = int(np.flatnonzero(regions["chrom"].isin(missing).to_numpy())[0])
        raise InputError(f"{source} row {row + 1}: "
                         + mismatch_message("the genome", missing, genome.sizes, genome.names.mode))
    regions["chrom"] = regions["chrom"].map(resolved)
    centre = (regions["start"] + regions["end"]) // 2
    regions["centre"] = centre
    regions["input_start"] = centre - geometry.seq_length // 2
    regions["window_start"] = centre - width // 2
    regions["window_end"] = regions["window_start"] + width
    target_start = regions["input_start"] + geometry.context
    if target_bins is None:
        regions["first_bin"] = (regions["start"] - target_start) // geometry.bin_size
        regions["last_bin"] = -(-(regions["end"] - target_start) // geometry.bin_size) - 1
    else:
        regions["first_bin"] = geometry.n_bins // 2 - target_bins // 2
        regions["last_bin"] = regions["first_bin"] + target_bins - 1
    if method == "deepliftshap":
        sizes = regions["chrom"].map(genome.sizes)
        outside = np.flatnonzero(((regions["window_start"] < 0) | (regions["window_end"] > sizes)).to_numpy())
        if len(outside):
            raise InputError(f"{source} row {outside[0] + 1}: the {width}-bp window of region "
                             f"{regions['name'].iloc[outside[0]]} reaches past the chromosome end; deepliftshap "
                             "shuffles the window's bases (use --width smaller, or another method)")
    return regions


def bin_weights(plan: ContributionsPlan, rows: np.ndarray) -> np.ndarray:
    """(regions, n_bins) 1 on each region's attributed bins."""
    n_bins = plan.run.geometry.n_bins
    weights = np.zeros((len(rows), n_bins), dtype=np.float32)
    for i, r in enumerate(rows):
        weights[i, plan.regions["first_bin"].iloc[r] : plan.regions["last_bin"].iloc[r] + 1] = 1.0
    return weights


def _arrays(plan: ContributionsPlan) -> dict[str, tuple[tuple, str]]:
    n, k, w = len(plan.regions), len(plan.targets), plan.width
    arrays = {"hypothetical": ((n, k, w, 4), "float32"), "actual": ((n, k, w, 4), "float32"),
              "onehot": ((n, w, 4), "float16"), "scalars": ((n, k), "float32")}
    for name in METHOD_ARRAYS[plan.settings.method]:
        arrays[name] = ((n, k, w, 4), "float32") if name == "ism" else ((n, k), "float32")
    return arrays


def build_contributions(plan: ContributionsPlan, out: ContributionsFolder, state: str, progress: bool) -> dict:
    from ..backbone.model import load_sequence_model

    arrays = _arrays(plan)
    if state == "fresh":
        for key, (shape, dtype) in arrays.items():
            store.create_array(out.store, key, shape, (CHUNK_REGIONS,) + shape[1:], dtype)
        plan.regions.to_csv(out.regions, sep="\t", index=False)
        plan.targets.to_csv(out.targets, sep="\t", index=False)
    progress_log = store.ProgressLog(out.progress / "chunks.txt")
    done = progress_log.done()
    chunks = [c for c in range(math.ceil(len(plan.regions) / CHUNK_REGIONS)) if c not in done]
    c = plan.settings
    model, _ = load_sequence_model(plan.run, c.head, c.device)
    model.precision = plan.precision
    genome, pad_value = plan.run.genome(), plan.run.embed_config.pad_value
    opened = {key: store.open_array(out.store, key, "r+") for key in arrays}
    bar = Progress(len(chunks) * CHUNK_REGIONS, f"contributions ({c.method})", unit="regions", enabled=progress)
    started, computed = time.time(), 0
    for chunk in chunks:
        rows = np.arange(chunk * CHUNK_REGIONS, min(len(plan.regions), (chunk + 1) * CHUNK_REGIONS))
        values = compute_chunk(plan, model, genome, pad_value, rows)
        sums = []
        for key in arrays:
            opened[key][rows[0] : rows[-1] + 1] = values[key]
            sums.append(store.checksum(values[key]))
        progress_log.add(chunk, sums)  # written, then logged: a logged chunk is complete
        computed += len(rows)
        bar.update(len(rows))
    seconds = time.time() - started
    return _finish(plan, out, arrays, computed, seconds)


def compute_chunk(plan: ContributionsPlan, model, genome, pad_value: float, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every stored array of the regions ``rows``."""
    from .attribution import (
        actual_from_hypothetical,
        hypothetical_from_gradients,
        in_silico_mutagenesis,
        input_gradients,
    )

    c, g, window = plan.settings, plan.run.geometry, plan.window
    table = plan.regions.iloc[rows]
    onehot = np.stack([genome.one_hot(r.chrom, int(r.input_start), int(r.input_start) + g.seq_length, pad_value)
                       for r in table.itertuples(index=False)])
    weights = bin_weights(plan, rows)
    out: dict[str, list] = {}
    for i in range(0, len(rows), c.batch_size):
        x, bins = onehot[i : i + c.batch_size], weights[i : i + c.batch_size]
        part: dict[str, np.ndarray] = {}
        if c.method == "grad-input":
            gradients, part["scalars"] = input_gradients(model, x, bins, plan.track_weights, window)
            part["hypothetical"] = hypothetical_from_gradients(gradients)
        elif c.method == "ism":
            part["ism"], part["scalars"] = in_silico_mutagenesis(model, x, bins, plan.track_weights, window,
                                                                 c.ism_batch_size)
            part["hypothetical"] = hypothetical_from_gradients(part["ism"])
        else:
            from .deeplift import deep_lift_shap

            result = deep_lift_shap(model, x, bins, plan.track_weights, window, c.shuffles,
                                    plan.config.seed + int(rows[i]), c.batch_size * c.shuffles)
            part.update(hypothetical=result.hypothetical, scalars=result.scalars,
                        reference_scalars=result.reference_scalars, summation_error=result.summation_error)
        part["onehot"] = x[:, window[0] : window[1]]
        part["actual"] = actual_from_hypothetical(part["hypothetical"], part["onehot"])
        for key, value in part.items():
            out.setdefault(key, []).append(value)
    arrays = _arrays(plan)
    return {key: np.concatenate(out[key]).astype(arrays[key][1]) for key in arrays}


def _finish(plan: ContributionsPlan, out: ContributionsFolder, arrays: dict, computed: int, seconds: float) -> dict:
    entries = store.ProgressLog(out.progress / "chunks.txt").entries()
    n_chunks = math.ceil(len(plan.regions) / CHUNK_REGIONS)
    if len(entries) != n_chunks:
        raise EnformerTransferError(f"contributions: {n_chunks - len(entries)} chunk(s) missing; rerun to resume")
    write_json_atomic(out.checksums, {f"{out.store.name}/{key}": [entries[c][k] for c in range(n_chunks)]
                                      for k, key in enumerate(arrays)})
    c = plan.settings
    summary = {"method": c.method, "head": c.head, "regions": len(plan.regions), "targets": list(plan.targets["name"]),
               "width": plan.width, "window": "centred on each region", "precision": plan.precision,
               "target_bins": c.target_bins or "overlapping the region", "regions_computed": computed,
               "seconds": round(seconds, 2), "regions_per_second": round(computed / seconds, 3) if seconds else None}
    if c.method == "deepliftshap":
        summary["summation"] = summation_summary(out)
    if c.bigwigs:
        summary["bigwigs"] = len(write_bigwigs(plan, out))
    summary["figures"] = len(draw_logos(plan, out))
    write_json_atomic(out.summary, summary)
    rate = f", {summary['regions_per_second']} regions/s" if computed else ""
    print(f"contributions: {len(plan.regions)} regions x {len(plan.targets)} scalars ({c.method}, {plan.width} bp"
          f"{rate}) -> {plan.run.layout.contributions(plan.name).path}")
    return summary


def summation_summary(out: ContributionsFolder) -> dict:
    """DeepLIFT/SHAP's summation-to-delta: |sum of actual contributions - (scalar - reference mean)|,
    relative to |scalar - reference mean| where that is at least 1e-3 of |scalar|."""
    scalars = np.asarray(store.open_array(out.store, "scalars"))
    references = np.asarray(store.open_array(out.store, "reference_scalars"))
    error = np.asarray(store.open_array(out.store, "summation_error"))
    delta = np.abs(scalars - references)
    measurable = delta >= 1e-3 * np.abs(scalars)
    relative = error[measurable] / delta[measurable]
    summary = {"max_abs_error": float(error.max()), "pairs": int(error.size), "pairs_measured": int(measurable.sum()),
               "median_relative_error": float(np.median(relative)) if relative.size else None,
               "max_relative_error": float(relative.max()) if relative.size else None}
    if relative.size and relative.max() > 1e-3:
        log.warning("contributions: DeepLIFT/SHAP contributions miss the output difference by up to %.2g "
                    "(relative); a layer may lack an exact rule", relative.max())
    return summary


def write_bigwigs(plan: ContributionsPlan, out: ContributionsFolder) -> list[Path]:
    """One BigWig per attributed scalar: the actual contribution of each base (summed over the
    four channels). Where windows overlap, each base comes from the region whose centre is nearest."""
    import pybigtools

    regions = plan.regions
    actual = store.open_array(out.store, "actual")
    genome = plan.run.genome()
    sizes = {chrom: genome.chrom_size(chrom) for chrom in sorted(set(regions["chrom"]))}
    spans = _bigwig_spans(regions, sizes)
    order = sorted(range(len(regions)), key=lambda r: (regions["chrom"].iloc[r], spans[r][0]))
    paths = []
    out.bigwigs.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(plan.targets["name"]):
        values = np.asarray(actual[:, k]).sum(axis=-1)  # (regions, width)

        def entries(values=values):
            for row in order:
                a, b = spans[row]
                offset = a - int(regions["window_start"].iloc[row])
                chrom = regions["chrom"].iloc[row]
                for p, v in zip(range(a, b), values[row, offset : offset + b - a].tolist(), strict=True):
                    yield chrom, p, p + 1, v

        path = out.bigwig(safe_filename(name))
        with atomic_path(path) as tmp:
            pybigtools.open(str(tmp), "w").write(sizes, entries())
        paths.append(path)
    return paths


def _bigwig_spans(regions: pd.DataFrame, sizes: dict[str, int]) -> list[tuple[int, int]]:
    """Per region, the bases [a, b) of its window it writes: within the chromosome, and, where
    windows overlap, the bases nearer its centre than the neighbouring windows' centres (equal
    widths: the midpoints between consecutive centres)."""
    spans = [(0, 0)] * len(regions)
    for chrom, part in regions.groupby("chrom", sort=False):
        order = part.sort_values(["centre"], kind="stable").index.to_numpy()
        centres = regions.loc[order, "centre"].to_numpy()
        for j, row in enumerate(order):
            a = max(0, int(regions.at[row, "window_start"]))
            b = min(sizes[chrom], int(regions.at[row, "window_end"]))
            if j > 0:
                a = max(a, (int(centres[j - 1]) + int(centres[j]) + 1) // 2, spans[order[j - 1]][1])
            if j + 1 < len(order):
                b = min(b, (int(centres[j]) + int(centres[j + 1]) + 1) // 2)
            spans[row] = (a, max(a, b))
    return spans


def draw_logos(plan: ContributionsPlan, out: ContributionsFolder) -> list[dict]:
    """Logos of the chosen regions (default: the 3 with the largest total |actual contribution|),
    every attributed scalar stacked, ``plot_width`` bp around the centre."""
    from ..plots import figures as draw
    from ..plots.figures import FigureIndex

    c, regions = plan.settings, plan.regions
    actual = store.open_array(out.store, "actual")
    if c.plot_regions:
        rows = [find_region(regions, text) for text in c.plot_regions]
    else:
        totals = np.concatenate([np.abs(np.asarray(actual[i : i + CHUNK_REGIONS])).sum(axis=(1, 2, 3))
                                 for i in range(0, len(regions), CHUNK_REGIONS)])
        rows = list(np.argsort(-totals, kind="stable")[:3])
    shown = min(c.plot_width, plan.width)
    a = plan.width // 2 - shown // 2
    index = FigureIndex(out.figures)
    for row in rows:
        region = regions.iloc[row]
        values = np.asarray(actual[int(row)])[:, a : a + shown]
        title = (f"{region['name']} ({region['chrom']}:{region['start']}-{region['end']}"
                 + (f", {region['label']}" if region["label"] else "") + f"): actual contributions, {c.method}")
        paths = draw.contribution_logos(values, list(plan.targets["display"]), title,
                                        -(shown // 2), out.figures / f"logos_{safe_filename(str(region['name']))}")
        index.add(f"logos_{row}", title, paths, kind="region", region=str(region["name"]))
    return index.write()

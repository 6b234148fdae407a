"""Stage predict: a head's predictions for new regions (one BigWig per track) or given sequences
(a table) -> RUN_DIR/predictions/HEAD (``evaluation.predict``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..evaluation.predict import predict_fasta, predict_regions, tile_region
from ..genome.regions import read_bed_and_chroms
from ..results import Run
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import PredictionsFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def predict(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """BigWigs of ``predict.regions`` / ``predict.chroms``, or a table for ``predict.fasta``,
    in ``predict.out`` (default RUN_DIR/predictions/HEAD)."""
    config = as_config(config)
    p = config.predict
    run = Run.of(config, "predict")
    if p.fasta is None and p.regions is None and not p.chroms:
        raise InputError("predict: give --regions BED, --chroms NAME or --fasta FASTA")
    genome = run.genome(p.chrom_aliases)
    regions = None if p.fasta is not None else read_bed_and_chroms(p.regions, p.chroms, genome)
    n_tracks = len(run.head(p.head).metadata["tracks"])
    if p.stride is not None:
        tile_region(0, 1, run.geometry.target_interval_bp, run.geometry.bin_size, p.stride, 1)  # checks the stride
    key = {"head": run.head_record(p.head).digest, "embeddings": run.embeddings_record.digest,
           "regions": file_fingerprint(p.regions) if p.regions else None, "chroms": p.chroms,
           "fasta": file_fingerprint(p.fasta) if p.fasta else None, "stride": p.stride}
    folder = p.out or run.layout.predictions(p.head).path

    def build(work: Path, state: str) -> dict:
        out = PredictionsFolder(work)
        if p.fasta is not None:
            return predict_fasta(run, p.head, p.fasta, out.table, p.batch_size, p.device)
        paths = predict_regions(run, p.head, out, regions, p.stride, p.batch_size, p.device, p.chrom_aliases)
        return {"bigwigs": len(paths), "regions": len(regions)}

    done = run_stage(folder, key, build, config, ("predict",), force=force, what=f"predict {p.head!r}", run=run)
    what = f"{n_tracks} tracks of each sequence in one table" if p.fasta is not None else (
        f"{n_tracks} BigWigs ({len(regions)} regions, {run.geometry.bin_size}-bp bins)")
    print(f"predict: head {p.head!r}, {what} -> {done}")
    return done

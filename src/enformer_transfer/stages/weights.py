"""Stage weights: a head's weights vs the backbone's own output head -> RUN_DIR/weights/HEAD
(``evaluation.weights``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..evaluation.weights import backbone_tracks, write_weight_similarity
from ..results import Run
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import WeightsFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def weight_similarity(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/weights/NAME/: top_matches.csv, similarity_by_assay.csv, a heatmap."""
    config = as_config(config)
    w = config.weights
    run = Run.of(config, "weights")
    head = run.head(w.head)
    if head.metadata["model"] not in ("linear", "ridge"):
        raise InputError(f"weights: head {w.head!r} is a {head.metadata['model']} head; only linear heads have "
                         "one weight vector per track")
    backbone = run.backbone()
    theirs = backbone.family.output_weights(backbone.model)
    if theirs is None:
        raise InputError(f"weights: backbone {backbone.source} ({backbone.kind}) has no linear output head to "
                         "compare with")
    theirs = theirs.detach().double()  # (backbone tracks, dim)
    names = backbone_tracks(w.enformer_targets, theirs.shape[0])
    key = {"head": run.head_record(w.head).digest, "backbone": run.embeddings_record.key["backbone"],
           "enformer_targets": file_fingerprint(w.enformer_targets) if w.enformer_targets else None, "top": w.top}

    def build(work: Path, state: str) -> dict:
        return write_weight_similarity(WeightsFolder(work), head, theirs, names, w.top)

    done = run_stage(run.layout.weights(w.head).path, key, build, config, ("weights",), force=force,
                     what=f"weights {w.head!r}", run=run)
    print(f"weights: head {w.head!r}, {len(head.metadata['tracks'])} tracks vs {theirs.shape[0]} backbone tracks, "
          f"top {w.top} each -> {done}")
    return done

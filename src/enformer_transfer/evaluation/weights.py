"""Stage weights: head weights vs the backbone's own human head. Which existing Enformer tracks
does each new track look like? (cosine similarity of weight vectors, the study's weight figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig, as_config
from ..errors import InputError
from ..layout import WeightsFolder
from ..plots import figures as draw
from ..plots.figures import FigureIndex
from ..provenance import file_fingerprint
from ..run import Run
from ..stage import run_stage


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
    if "human" not in backbone.model.heads:
        raise InputError(f"weights: backbone {backbone.source} has no human head")
    theirs = backbone.model.heads["human"][0].weight.detach().double()  # (backbone tracks, dim)
    names = _backbone_tracks(w.enformer_targets, theirs.shape[0])
    key = {"head": run.head_record(w.head).digest, "backbone": run.embeddings_record.key["backbone"],
           "enformer_targets": file_fingerprint(w.enformer_targets) if w.enformer_targets else None, "top": w.top}

    def build(work: Path, state: str) -> dict:
        out = WeightsFolder(work)
        ours = head.module.linear.weight.detach().double()  # (new tracks, dim)
        cosine = (torch.nn.functional.normalize(ours, dim=1) @ torch.nn.functional.normalize(theirs, dim=1).T).numpy()
        new = [t["identifier"] for t in head.metadata["tracks"]]
        rows = []
        for i, ident in enumerate(new):
            for rank, j in enumerate(np.argsort(-cosine[i])[: w.top], 1):
                rows.append({"identifier": ident, "rank": rank, "backbone_index": int(j),
                             "backbone_identifier": names.loc[j, "identifier"],
                             "description": names.loc[j, "description"], "assay": names.loc[j, "assay"],
                             "cosine": float(cosine[i, j])})
        assays = list(dict.fromkeys(names["assay"]))
        by_assay = np.stack([cosine[:, (names["assay"] == a).to_numpy()].max(axis=1) for a in assays], axis=1)
        pd.DataFrame(rows).to_csv(out.top_matches, index=False)
        pd.DataFrame(by_assay, index=pd.Index(new, name="identifier"), columns=assays).to_csv(out.by_assay)
        index = FigureIndex(out.figures)
        index.add("similarity_by_assay", "Best cosine similarity of each new track's weights to the backbone's "
                  "tracks, per assay", draw.weight_similarity_heatmap(by_assay, new, assays,
                                                                      out.figures / "similarity_by_assay"))
        index.write()
        return {"tracks": len(new), "assays": assays}

    done = run_stage(run.layout.weights(w.head).path, key, build, config, ("weights",), force=force,
                     what=f"weights {w.head!r}", run=run)
    print(f"weights: head {w.head!r}, {len(head.metadata['tracks'])} tracks vs {theirs.shape[0]} backbone tracks, "
          f"top {w.top} each -> {done}")
    return done


def _backbone_tracks(path, n: int) -> pd.DataFrame:
    """identifier, description, assay (description prefix: DNASE, CHIP, CAGE, ATAC) per backbone track."""
    if path is None:
        return pd.DataFrame({"identifier": [f"track_{i}" for i in range(n)], "description": [""] * n,
                             "assay": ["all"] * n})
    if not Path(path).is_file():
        raise InputError(f"{path}: --enformer-targets file not found")
    table = pd.read_csv(path, sep="\t")
    if len(table) != n:
        raise InputError(f"{path}: {len(table)} tracks, but the backbone's human head has {n}")
    table["assay"] = table["description"].astype(str).str.split(":").str[0]
    return table[["identifier", "description", "assay"]].reset_index(drop=True)

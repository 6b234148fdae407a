"""Head weights vs the backbone's own human head: which existing Enformer tracks does each
new track look like? (cosine similarity of weight vectors, the study's weight figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..plots import figures as draw


def weight_similarity(run, head_name: str, enformer_targets: Path | str | None = None, top: int = 5,
                      out_dir: Path | str | None = None) -> Path:
    """Write RUN_DIR/weights/NAME/: top_matches.csv, similarity_by_assay.csv, a heatmap."""
    from ..backbone.load import load_backbone
    from ..config import RunConfig

    head = run.head(head_name)
    if head.metadata["model"] not in ("linear", "ridge"):
        raise InputError(f"weights: head {head_name!r} is a {head.metadata['model']} head; only linear heads have "
                         "one weight vector per track")
    record = run.stage_record("embeddings")
    embed = record["config"]["embed"]
    geometry = RunConfig.model_validate(run.stage_record("dataset")["config"]).geometry
    backbone = load_backbone(embed["backbone"], geometry, embed["tf_gamma"], embed["allow_download"])
    if "human" not in backbone.model.heads:
        raise InputError(f"weights: backbone {embed['backbone']} has no human head")
    theirs = backbone.model.heads["human"][0].weight.detach().double()  # (backbone tracks, dim)
    ours = head.module.linear.weight.detach().double()  # (new tracks, dim)
    cosine = (torch.nn.functional.normalize(ours, dim=1) @ torch.nn.functional.normalize(theirs, dim=1).T).numpy()
    names = _backbone_tracks(enformer_targets, theirs.shape[0])
    new = [t["identifier"] for t in head.metadata["tracks"]]
    rows = []
    for i, ident in enumerate(new):
        for rank, j in enumerate(np.argsort(-cosine[i])[:top], 1):
            rows.append({"identifier": ident, "rank": rank, "backbone_index": int(j),
                         "backbone_identifier": names.loc[j, "identifier"], "description": names.loc[j, "description"],
                         "assay": names.loc[j, "assay"], "cosine": float(cosine[i, j])})
    assays = list(dict.fromkeys(names["assay"]))
    by_assay = np.stack([cosine[:, (names["assay"] == a).to_numpy()].max(axis=1) for a in assays], axis=1)
    out = Path(out_dir) if out_dir else run.path / "weights" / head_name
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "top_matches.csv", index=False)
    pd.DataFrame(by_assay, index=pd.Index(new, name="identifier"), columns=assays).to_csv(out / "similarity_by_assay.csv")
    draw.weight_similarity_heatmap(by_assay, new, assays, out / "similarity_by_assay")
    return out


def _backbone_tracks(path, n: int) -> pd.DataFrame:
    """identifier, description, assay (description prefix: DNASE, CHIP, CAGE, ATAC) per backbone track."""
    if path is None:
        return pd.DataFrame({"identifier": [f"track_{i}" for i in range(n)], "description": [""] * n,
                             "assay": ["all"] * n})
    table = pd.read_csv(path, sep="\t")
    if len(table) != n:
        raise InputError(f"{path}: {len(table)} tracks, but the backbone's human head has {n}")
    table["assay"] = table["description"].astype(str).str.split(":").str[0]
    return table[["identifier", "description", "assay"]].reset_index(drop=True)

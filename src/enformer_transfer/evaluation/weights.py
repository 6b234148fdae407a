"""The weights stage's work (``stages/weights.py`` runs it):
head weights vs the backbone's own output head. Which of the backbone's tracks
does each new track look like? (cosine similarity of weight vectors, the study's weight figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..plots import figures as draw
from ..plots.figures import FigureIndex
from ..rundir.layout import WeightsFolder


def write_weight_similarity(out: WeightsFolder, head, theirs: torch.Tensor, names: pd.DataFrame, top: int) -> dict:
    """The weights stage's build: cosine similarity of each new track's weight vector to the
    backbone's tracks ``theirs`` (named by ``names``): the ``top`` matches of each, the best per
    assay, a heatmap; the stats."""
    ours = head.module.linear.weight.detach().double()  # (new tracks, dim)
    cosine = (torch.nn.functional.normalize(ours, dim=1) @ torch.nn.functional.normalize(theirs, dim=1).T).numpy()
    new = [t["identifier"] for t in head.metadata["tracks"]]
    rows = []
    for i, ident in enumerate(new):
        for rank, j in enumerate(np.argsort(-cosine[i])[:top], 1):
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


def backbone_tracks(path, n: int) -> pd.DataFrame:
    """identifier, description, assay (description prefix: DNASE, CHIP, CAGE, ATAC) per backbone track."""
    if path is None:
        return pd.DataFrame({"identifier": [f"track_{i}" for i in range(n)], "description": [""] * n,
                             "assay": ["all"] * n})
    if not Path(path).is_file():
        raise InputError(f"{path}: --enformer-targets file not found")
    table = pd.read_csv(path, sep="\t")
    if len(table) != n:
        raise InputError(f"{path}: {len(table)} tracks, but the backbone's own output head has {n}")
    table["assay"] = table["description"].astype(str).str.split(":").str[0]
    return table[["identifier", "description", "assay"]].reset_index(drop=True)

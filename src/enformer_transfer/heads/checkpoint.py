"""Self-describing heads: weights plus the tracks, backbone, geometry, loss and config they belong to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..errors import InputError
from ..fs import atomic_path, write_text_atomic
from ..layout import HeadFolder
from .models import make_head


@dataclass
class Head:
    """A trained head: ``module`` (torch), ``metadata`` (dict), ``predict(embeddings)``."""

    module: torch.nn.Module
    metadata: dict
    folder: HeadFolder | None = None

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def finetuned(self) -> bool:
        """True for a model whose trunk was fine-tuned with it: it runs from sequence, and the
        run's stored embeddings are stale for it."""
        return self.metadata.get("finetune") is not None

    def load_trunk(self, device: str = "cpu"):
        """The fine-tuned Enformer (trunk weights recorded with the model), checked against the
        fingerprints recorded when it was saved."""
        from ..provenance import verify_fingerprint

        if not self.finetuned or self.folder is None:
            raise InputError(f"head {self.name!r} has no trunk of its own; it uses the run's backbone")
        for recorded in self.metadata["finetune"]["trunk_files"]:
            verify_fingerprint({**recorded, "path": str(self.folder.trunk / recorded["path"])},
                               "a fine-tuned trunk file", f"fine-tune head {self.name!r} again")
        from enformer_pytorch import Enformer
        from enformer_pytorch.modeling_enformer import Attention

        model = Enformer.from_pretrained(str(self.folder.trunk))
        for module in model.modules():
            if isinstance(module, Attention):
                module.use_tf_gamma = self.metadata["backbone"].get("tf_gamma", False)
        model.set_target_length(self.metadata["geometry"]["n_bins"])
        return model.eval().to(device)

    @property
    def tracks(self) -> pd.DataFrame:
        return pd.DataFrame(self.metadata["tracks"])

    @torch.inference_mode()
    def predict(self, embeddings, batch_windows: int = 8) -> np.ndarray:
        """(..., dim) embeddings (NumPy, torch or a zarr array of windows) -> (..., tracks) float32."""
        if self.finetuned:
            raise InputError(f"head {self.name!r} was fine-tuned with its trunk: the stored embeddings are stale "
                             "for it; predict from sequence (enformer_transfer.load_sequence_model)")
        self.module.eval()
        device = next(self.module.parameters()).device
        shape = embeddings.shape
        if len(shape) == 3:  # windows: stream in groups, never the whole store at once
            out = np.empty(shape[:2] + (self.metadata["n_tracks"],), dtype=np.float32)
            for start in range(0, shape[0], batch_windows):
                block = np.asarray(embeddings[start : start + batch_windows])
                x = torch.from_numpy(block.astype(np.float32)).to(device)
                out[start : start + len(block)] = self.module(x).float().cpu().numpy()
            return out
        x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)).to(device)
        return self.module(x).float().cpu().numpy()

    def check_compatible(self, run) -> np.ndarray:
        """Refuse a run whose tracks, geometry or embedding size differ; return the head's
        track positions in the run's targets table."""
        meta = self.metadata
        geometry = run.geometry.model_dump()
        if geometry != meta["geometry"]:
            raise InputError(
                f"head {self.name!r} was trained on geometry {meta['geometry']} but {run.path} has {geometry}"
            )
        dim = run.embedding_dim
        if dim != meta["dim"]:
            raise InputError(f"head {self.name!r} expects {meta['dim']}-dim embeddings, {run.path} has {dim}")
        ids = list(run.tracks["identifier"])
        wanted = [t["identifier"] for t in meta["tracks"]]
        missing = [t for t in wanted if t not in ids]
        if missing:
            raise InputError(
                f"head {self.name!r} predicts tracks {', '.join(missing[:5])} that {run.path} does not have "
                "(a head only applies to the tracks it was trained on)"
            )
        return np.array([ids.index(t) for t in wanted])


def save_head(folder: HeadFolder | Path, module: torch.nn.Module, metadata: dict) -> None:
    """head.pt (weights + metadata), head.json (metadata), head.safetensors (plain weights)."""
    from safetensors.torch import save_file

    folder = folder if isinstance(folder, HeadFolder) else HeadFolder(Path(folder))
    folder.path.mkdir(parents=True, exist_ok=True)
    metadata = {**metadata, "tool_version": __version__}
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder.model) as tmp:
        torch.save({"state_dict": state, "metadata": metadata}, tmp)
    if metadata["model"] in ("linear", "ridge"):
        plain = {"weight": state["linear.weight"], "bias": state["linear.bias"]}
    else:
        plain = state
    with atomic_path(folder.safetensors) as tmp:
        save_file(plain, str(tmp),
                  metadata={"tracks": json.dumps([t["identifier"] for t in metadata["tracks"]]),
                            "model": metadata["model"],
                            "output": "softplus" if metadata["model"] != "ridge" else "identity"})
    write_text_atomic(folder.metadata, json.dumps(metadata, indent=2, default=str))


def load_head(folder: HeadFolder | Path | str, device: str = "cpu") -> Head:
    folder = folder if isinstance(folder, HeadFolder) else HeadFolder(Path(folder))
    path = folder.model
    if not path.is_file():
        raise InputError(f"{folder.path}: no trained head here ({path.name} missing)")
    saved = torch.load(path, map_location=device, weights_only=False)
    meta = saved["metadata"]
    module = make_head(meta["model"], meta["dim"], meta["n_tracks"], meta.get("hidden", 256))
    module.load_state_dict(saved["state_dict"])
    return Head(module.to(device).eval(), meta, folder)

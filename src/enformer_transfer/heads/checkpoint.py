"""Self-describing heads: weights plus the tracks, backbone, geometry, loss and config they belong to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..errors import InputError, IntegrityError
from ..fs import atomic_path, write_text_atomic
from ..rundir.layout import HeadFolder
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

    @property
    def backbone_kind(self) -> str:
        """The family of the backbone whose embeddings the head reads (Enformer for heads
        recorded before families had names)."""
        return (self.metadata.get("backbone") or {}).get("kind", "enformer")

    @property
    def family(self):
        """The backbone family (``backbone.base.Family``) of the head's trunk."""
        from ..backbone.families import get_family

        return get_family(self.backbone_kind)

    def load_trunk(self, device: str = "cpu"):
        """The fine-tuned backbone model (trunk weights recorded with the head, loaded by its
        family), checked against the fingerprints recorded when it was saved."""
        from ..rundir.provenance import verify_fingerprint

        if not self.finetuned or self.folder is None:
            raise InputError(f"head {self.name!r} has no trunk of its own; it uses the run's backbone")
        for recorded in self.metadata["finetune"]["trunk_files"]:
            verify_fingerprint({**recorded, "path": str(self.folder.trunk / recorded["path"])},
                               "a fine-tuned trunk file", f"fine-tune head {self.name!r} again")
        family = self.family
        options = {"tf_gamma": True} if (self.metadata.get("backbone") or {}).get("tf_gamma") else {}
        try:
            model = family.load(str(self.folder.trunk), **options)
        except IntegrityError as err:
            raise IntegrityError(f"{err} (or fine-tune head {self.name!r} again with --force)") from None
        family.trunk(model, self.metadata["geometry"]["n_bins"])
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
    """head.safetensors (the weights) and head.json (what they are: tracks, backbone, geometry,
    loss, config, metrics). Nothing pickled: loading a head never runs code from the run directory."""
    from safetensors.torch import save_file

    folder = folder if isinstance(folder, HeadFolder) else HeadFolder(Path(folder))
    folder.path.mkdir(parents=True, exist_ok=True)
    metadata = {**metadata, "tool_version": __version__}
    text = json.dumps(metadata, indent=2, default=_plain)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder.safetensors) as tmp:
        save_file(_plain_weights(metadata["model"], state), str(tmp),
                  metadata={"tracks": json.dumps([t["identifier"] for t in metadata["tracks"]]),
                            "model": metadata["model"],
                            "output": "softplus" if metadata["model"] != "ridge" else "identity"})
    write_text_atomic(folder.metadata, text)


def load_head(folder: HeadFolder | Path | str, device: str = "cpu") -> Head:
    """A head from head.json + head.safetensors (never from a pickle: a head.pt of older
    versions is ignored)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = folder if isinstance(folder, HeadFolder) else HeadFolder(Path(folder))
    fix = f"retrain it: enformer-transfer train RUN_DIR --head {folder.path.name} --force"
    for path in (folder.metadata, folder.safetensors):
        if not path.is_file():
            raise InputError(f"{folder.path}: no trained head here ({path.name} missing)")
    try:
        meta = json.loads(folder.metadata.read_text())
        module = make_head(meta["model"], meta["dim"], meta["n_tracks"], meta.get("hidden", 256))
    except (ValueError, KeyError, TypeError) as err:
        raise IntegrityError(f"{folder.metadata}: not a head's metadata ({type(err).__name__}: {err}); {fix}") from None
    if meta.get("finetune"):
        fix = f"fine-tune it again: enformer-transfer finetune RUN_DIR --head {folder.path.name} --force"
    try:
        plain = load_file(str(folder.safetensors))
        module.load_state_dict(_module_weights(meta["model"], plain))
    except (SafetensorError, RuntimeError, OSError, KeyError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise IntegrityError(f"{folder.safetensors}: weights unreadable or not those head.json describes "
                             f"({reason}); {fix}") from None
    return Head(module.to(device).eval(), meta, folder)


def _plain_weights(model: str, state: dict) -> dict:
    """The head's state dict as head.safetensors stores it: a linear head as plain weight / bias."""
    if model in ("linear", "ridge"):
        return {"weight": state["linear.weight"], "bias": state["linear.bias"]}
    return state


def _module_weights(model: str, plain: dict) -> dict:
    if model in ("linear", "ridge"):
        return {"linear.weight": plain["weight"], "linear.bias": plain["bias"]}
    return plain


def _plain(value):
    """JSON for what metadata may hold besides JSON types: NumPy numbers and arrays, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def load_training_checkpoint(path: Path | str) -> dict:
    """A Lightning checkpoint of ours, loaded with ``weights_only=True``: tensors and plain data
    only. One that needs arbitrary code to load (a pickle payload) is refused, never run."""
    import pickle
    import re

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise IntegrityError(f"{path}: refused, loading it would run code ({found.group(1) if found else 'a pickle'}"
                             ", not a checkpoint this tool wrote); delete it, or rerun the command with --force") from None

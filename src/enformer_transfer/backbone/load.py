"""Backbones: load one from a local directory (or, explicitly, the hub) through its family;
create random ones.

A backbone directory has ``config.json`` + ``pytorch_model.bin`` (or ``model.safetensors``);
its family (``families.detect_family``) is read from config.json. Weights never come from the
network unless ``allow_download`` is set, and never run code: safetensors, or a ``.bin`` read
with ``weights_only=True`` (a pickle payload is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..genome.geometry import Geometry
from ..rundir.layout import WEIGHT_FILES, BackboneFolder
from ..rundir.provenance import file_fingerprint
from .base import Family
from .families import DEFAULT_KIND, detect_family, get_family


@dataclass
class Backbone:
    model: object  # the family package's own model, in eval mode
    source: str
    tf_gamma: bool
    embedding_dim: int
    fingerprint: dict
    family: Family
    n_bins: int  # the bins its trunk is cropped to (the dataset's)

    @property
    def kind(self) -> str:
        return self.family.kind

    @property
    def trunk(self):
        """One-hot (B, L, 4) -> embeddings (B, n_bins, dim), sharing the model's parameters."""
        return self.family.trunk(self.model, self.n_bins)

    @property
    def output_head(self):
        """Embeddings -> the backbone's own tracks, or None."""
        return self.family.output_head(self.model)

    @property
    def output_tracks(self) -> int:
        return self.family.output_tracks(self.model)


def _download_hint(name: str) -> str:
    return (
        f"backbone {name!r} is not a local directory and downloads are off; on a machine with "
        f"internet run `huggingface-cli download {name} --local-dir enformer-weights` "
        "(config.json + pytorch_model.bin, about 1 GB), copy the folder here and pass "
        "--backbone enformer-weights (or pass --allow-download to fetch it from the hub)"
    )


def resolve_backbone(name_or_dir: str | Path, allow_download: bool = False) -> tuple[str, Path | None]:
    """('dir', path) for a local backbone, ('hub', None) for a hub name; InputError otherwise."""
    path = Path(name_or_dir)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: a backbone is a directory with config.json and pytorch_model.bin")
        if not BackboneFolder(path).config.is_file():
            raise InputError(f"{path}: no config.json; a backbone directory needs config.json and pytorch_model.bin")
        if not any((path / w).is_file() for w in WEIGHT_FILES):
            raise InputError(f"{path}: no weights ({' or '.join(WEIGHT_FILES)}) next to config.json")
        return "dir", path
    text = str(name_or_dir)
    if text.count("/") == 1 and not text.startswith((".", "/")):
        if not allow_download:
            raise InputError(_download_hint(text))
        return "hub", None
    raise InputError(f"{path}: backbone directory not found")


def backbone_family(name_or_dir: str | Path, allow_download: bool = False, kind: str | None = None) -> Family:
    """The family of a backbone folder (read from its config.json), or of a hub name (``kind``,
    default Enformer); a folder of another kind than ``kind`` is refused."""
    return family_of(resolve_backbone(name_or_dir, allow_download)[1], kind)


def family_of(path: Path | None, kind: str | None = None) -> Family:
    """``backbone_family`` of a resolved backbone: a folder (``path``) or a hub name (None)."""
    if path is None:
        return get_family(kind or DEFAULT_KIND)
    family = detect_family(path)
    if kind is not None and kind != family.kind:
        raise InputError(f"{path}: a {family.kind} backbone, not {kind} (drop --backbone-kind or pass {family.kind})")
    return family


def load_backbone(
    name_or_dir: str | Path,
    geometry: Geometry,
    tf_gamma: bool = False,
    allow_download: bool = False,
    device: str = "cpu",
    kind: str | None = None,
) -> Backbone:
    """Load a backbone through its family, check it can embed ``geometry``'s windows, crop its
    trunk to n_bins. ``tf_gamma``: Enformer's TensorFlow positional features (the study ran without)."""
    _, path = resolve_backbone(name_or_dir, allow_download)
    family = family_of(path, kind)
    if tf_gamma and "tf_gamma" not in family.load_options:
        raise InputError(f"backbone {name_or_dir}: tf_gamma is an option of Enformer, not of {family.kind}; "
                         "drop --tf-gamma")
    options = {"tf_gamma": True} if tf_gamma else {}
    model = family.load(str(name_or_dir), **options)
    family.check_geometry(model, geometry.seq_length, geometry.bin_size, geometry.n_bins, str(name_or_dir))
    family.trunk(model, geometry.n_bins)  # the crop, set once: the trunk shares the model's modules
    model.eval().to(device)
    if path is not None:
        files = [BackboneFolder(path).config] + BackboneFolder(path).weight_files
        fingerprint = {"source": str(path.resolve()), "files": [file_fingerprint(f) for f in files]}
    else:
        fingerprint = {"source": str(name_or_dir), "hub": True}
    dim = family.geometry(model).embedding_dim
    return Backbone(model, str(name_or_dir), tf_gamma, dim, fingerprint, family, geometry.n_bins)


def init_backbone(
    out: Path | str,
    dim: int = 1536,
    depth: int = 11,
    heads: int = 8,
    attn_dim_key: int = 64,
    num_downsamples: int = 7,
    n_bins: int = 896,
    human_tracks: int = 5313,
    seed: int = 0,
    calibrate_batches: int = 2,
    stem_motifs: list[str] | None = None,
) -> Path:
    """Write a randomly initialised Enformer in the real weights' format (config.json +
    pytorch_model.bin): ``EnformerFamily.init`` with the published architecture unless told
    otherwise (see ``EnformerFamily.build`` for ``calibrate_batches`` and ``stem_motifs``)."""
    return get_family("enformer").init(
        Path(out), "full", seed, dim=dim, depth=depth, heads=heads, attn_dim_key=attn_dim_key,
        num_downsamples=num_downsamples, n_bins=n_bins, human_tracks=human_tracks,
        calibrate_batches=calibrate_batches, stem_motifs=stem_motifs)

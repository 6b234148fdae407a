"""Enformer backbones: load from a local directory (or, explicitly, the hub); create random ones.

A backbone directory has ``config.json`` + ``pytorch_model.bin`` (or ``model.safetensors``),
the format of ``EleutherAI/enformer-official-rough``. Weights never come from the network
unless ``allow_download`` is set, and never run code: safetensors, or a ``.bin`` read with
``weights_only=True`` (a pickle payload is refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, IntegrityError
from ..fs import atomic_folder
from ..genome.geometry import Geometry
from ..rundir.layout import WEIGHT_FILES, BackboneFolder
from ..rundir.provenance import file_fingerprint


@dataclass
class Backbone:
    model: object  # enformer_pytorch.Enformer, in eval mode
    source: str
    tf_gamma: bool
    embedding_dim: int
    fingerprint: dict

    @property
    def head_sizes(self) -> dict[str, int]:
        return dict(self.model.config.output_heads)


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


def load_backbone(
    name_or_dir: str | Path,
    geometry: Geometry,
    tf_gamma: bool = False,
    allow_download: bool = False,
    device: str = "cpu",
) -> Backbone:
    """Load Enformer, check it produces ``geometry``'s bins, set its output crop to n_bins.

    ``tf_gamma`` is explicit (enformer-pytorch turns it on only for the literal hub name);
    the reference study ran without it.
    """
    kind, path = resolve_backbone(name_or_dir, allow_download)
    if path is not None:
        check_geometry(json.loads(BackboneFolder(path).config.read_text()), geometry, str(path))
    from enformer_pytorch.modeling_enformer import Attention

    model = load_enformer(str(path) if path is not None else str(name_or_dir))
    config = model.config.to_dict()
    check_geometry(config, geometry, str(name_or_dir))
    if tf_gamma and geometry.seq_length // geometry.bin_size != 1536:
        raise InputError("tf_gamma needs 1,536 trunk positions (seq_length 196,608 with 128-bp bins)")
    for module in model.modules():
        if isinstance(module, Attention):
            module.use_tf_gamma = tf_gamma
    model.set_target_length(geometry.n_bins)
    model.eval().to(device)
    if path is not None:
        files = [BackboneFolder(path).config] + BackboneFolder(path).weight_files
        fingerprint = {"source": str(path.resolve()), "files": [file_fingerprint(f) for f in files]}
    else:
        fingerprint = {"source": str(name_or_dir), "hub": True}
    return Backbone(model, str(name_or_dir), tf_gamma, 2 * int(config["dim"]), fingerprint)


def load_enformer(source: str, fix: str = "use the backbone's original weights"):
    """``Enformer.from_pretrained`` of a folder (or a hub name) with ``weights_only=True``:
    transformers reads safetensors directly and a ``pytorch_model.bin`` with
    ``torch.load(weights_only=True)``; weights that would run code on load are refused."""
    from enformer_pytorch import Enformer

    try:
        return Enformer.from_pretrained(source, weights_only=True)
    except Exception as err:
        if _needs_code(err):
            raise IntegrityError(f"{source}: refused, loading its weights would run code (a pickle payload, not "
                                 f"plain tensors); {fix}") from None
        reason = str(err).splitlines()[0] if str(err) else ""
        raise InputError(f"{source}: cannot load Enformer weights ({type(err).__name__}: {reason})") from None


def _needs_code(err: BaseException | None) -> bool:
    """True when ``err`` (or what caused it: transformers re-raises torch's error as an OSError)
    is torch refusing a pickle that weights_only loading does not allow."""
    import pickle

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False


def check_geometry(config: dict, geometry: Geometry, source: str) -> None:
    """Refuse, before any compute, a backbone whose output bins do not match the dataset."""
    pool = 2 ** int(config.get("num_downsamples", 7))
    if pool != geometry.bin_size:
        raise InputError(
            f"backbone {source} pools the sequence by {pool} bp per output position but the "
            f"dataset's bin_size is {geometry.bin_size}; rebuild the dataset with --bin-size {pool} "
            "or use a matching backbone"
        )
    if geometry.seq_length % pool:
        raise InputError(f"seq_length {geometry.seq_length} is not a multiple of the backbone's {pool}-bp pooling")
    positions = geometry.seq_length // pool
    if geometry.n_bins > positions or (positions - geometry.n_bins) % 2:
        raise InputError(
            f"backbone {source}: {positions} trunk positions cannot be cropped symmetrically to "
            f"{geometry.n_bins} bins; check --seq-length / --n-bins"
        )


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
    """Write a randomly initialised Enformer in the real weights' format (config.json + pytorch_model.bin).

    A freshly initialised Enformer's activations collapse through its many layers (the
    embeddings of different bins then differ by ~1e-6, below float16 resolution). With
    ``calibrate_batches`` > 0 the BatchNorm running statistics are set on that many batches
    of random DNA (two sequences each), as a data-dependent initialisation, so that the
    random embeddings keep their variance and carry sequence information.

    ``stem_motifs`` (demos): the first filters of the stem convolution become detectors of
    these sequences (+1 on the motif's base, -1 elsewhere, firing on a full match), a
    stand-in for the motif detectors a real Enformer learns in pretraining.
    """
    import torch
    from enformer_pytorch import Enformer, EnformerConfig

    if (dim // heads) % 6 or dim % heads:
        raise InputError(f"dim / heads must be a whole multiple of 6 (got dim {dim}, heads {heads})")
    if dim % 4:
        raise InputError(f"dim must be a multiple of 4 (got {dim})")
    out = Path(out)
    divisible = 128 if dim % 128 == 0 else dim // 4  # tiny backbones: keep the tower's widths whole
    torch.manual_seed(seed)
    config = EnformerConfig(
        dim=dim, depth=depth, heads=heads, attn_dim_key=attn_dim_key, num_downsamples=num_downsamples,
        target_length=n_bins, dim_divisible_by=divisible, output_heads={"human": human_tracks},
    )
    model = Enformer(config)
    if stem_motifs:
        _seed_stem(model, stem_motifs)
    if calibrate_batches:
        calibrate_batchnorm(model, n_bins, num_downsamples, calibrate_batches)
    with atomic_folder(out, force=True) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=False)  # safetensors fails: shared trunk tensors
    return out


def _seed_stem(model, motifs: list[str]) -> None:
    import torch

    conv = model.stem[0]  # Conv1d(4, dim / 2, 15)
    width = conv.weight.shape[-1]
    if len(motifs) > conv.weight.shape[0]:
        raise InputError(f"{len(motifs)} stem motifs but the stem has {conv.weight.shape[0]} filters")
    with torch.no_grad():
        for j, motif in enumerate(motifs):
            unit = motif[:width].upper()
            weight = torch.full((4, width), -1.0)
            for position, base in enumerate(unit):
                weight["ACGT".index(base), position] = 1.0
            conv.weight[j] = weight
            conv.bias[j] = -(len(unit) - 2.0)


def calibrate_batchnorm(model, n_bins: int, num_downsamples: int, batches: int) -> None:
    import torch

    positions = n_bins + 2 * round(n_bins * 320 / 896)  # 896 -> 1536, as Enformer
    length = positions * 2**num_downsamples
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    with torch.no_grad():
        for _ in range(batches):
            dna = torch.nn.functional.one_hot(torch.randint(0, 4, (2, length)), 4).float()
            model(dna, return_only_embeddings=True)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()

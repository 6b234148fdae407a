"""The run configuration as typed models; defaults equal the reference study (reference.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUM_STATS = ("mean", "sum", "max", "sum_sqrt", "mean_sqrt", "peak")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Geometry(_Section):
    """Model input length and output bins; the target interval is the central n_bins x bin_size."""

    seq_length: int = Field(196_608, gt=0, description="model input length in bp")
    bin_size: int = Field(128, gt=0, description="bp per output bin")
    n_bins: int = Field(896, gt=0, description="output bins per window")

    @property
    def target_length(self) -> int:
        return self.n_bins * self.bin_size

    @property
    def context(self) -> int:
        """bp of input on each side of the target interval."""
        return (self.seq_length - self.target_length) // 2

    @model_validator(mode="after")
    def _check(self) -> Geometry:
        excess = self.seq_length - self.target_length
        if excess < 0 or excess % 2:
            raise ValueError(
                f"seq_length {self.seq_length} must exceed n_bins x bin_size "
                f"({self.target_length}) by an even number of bp"
            )
        return self


class DatasetConfig(_Section):
    """Stage 2: BigWigs + genome + windows -> binned targets (Basenji semantics)."""

    genome: Path | None = Field(None, description="genome FASTA (plain or bgzip) or 2bit")
    targets: Path | None = Field(None, description="targets table (TSV)")
    windows: Path | None = Field(None, description="windows BED: chrom start end split")
    blacklist: Path | None = Field(None, description="blacklist BED; regions clipped to baseline")
    blacklist_pad: int = Field(20, ge=0, description="bp added on each side of blacklist regions")
    blacklist_quirk: bool = Field(
        False,
        description="reproduce Basenji: a blacklist region starting left of the window is not masked",
    )
    baseline_percentile: float = Field(50.0, ge=0, le=100, description="percentile of the baseline")
    unmappable: Path | None = Field(None, description="unmappable regions BED; mostly-unmappable windows are dropped")
    unmappable_max_fraction: float = Field(
        0.5, gt=0, le=1, description="drop windows with at least this fraction of unmappable bins"
    )
    transform_order: Literal["old", "new"] = Field(
        "old", description="old = the study (stat, soft clip, clip, scale); new = Basenji since 2023-03"
    )
    clip_floor_zero: bool = Field(False, description="hard clip to [0, clip] (Basenji2 era) instead of [-clip, clip]")
    extreme_clip_percentile: float | None = Field(
        99.99999, gt=0, le=100, description="per-track clip to +/- this percentile over all windows"
    )
    uncovered: Literal["fill", "mask"] = Field(
        "fill", description="fill = uncovered bases get the baseline (Basenji); mask = also store a mask of bins with uncovered bases"
    )
    beyond_chrom_end: Literal["pad", "error"] = Field(
        "pad", description="model input past a chromosome end: pad (and warn) or error"
    )
    chrom_aliases: Literal["none", "auto"] = Field(
        "none", description="auto = match chr1/1 and chrM/MT between genome, BigWigs, windows and blacklist"
    )
    allow_missing_chroms: bool = Field(
        False, description="a BigWig lacking a window's chromosome gives uncovered bases instead of an error"
    )
    chunk_windows: int = Field(8, gt=0, description="windows per store chunk")
    workers: int = Field(0, ge=0, description="worker processes (0 = all cores)")
    free_space_limit: int | None = Field(
        None, ge=0, description="treat at most this many bytes as free on the run disk"
    )


class EmbedConfig(_Section):
    """Stage 3: Enformer's trunk over every window -> embeddings store."""

    backbone: str | None = Field(None, description="backbone directory (config.json + pytorch_model.bin) or hub name")
    tf_gamma: bool = Field(False, description="TensorFlow gamma positional features (the study ran without)")
    allow_download: bool = Field(False, description="allow fetching a hub backbone from the network")
    splits: list[str] = Field(default_factory=lambda: ["train", "valid", "test"], description="splits to embed (comma-separated)")
    batch_size: int = Field(4, gt=0, description="windows per forward pass")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="compute precision (auto: bf16 on GPU, fp32 on CPU)")
    storage_dtype: Literal["float16", "float32"] = Field("float16", description="stored precision; float16 overflow is an error")
    compile: bool = Field(False, description="torch.compile the trunk")
    loader_workers: int = Field(2, ge=0, description="DataLoader worker processes preparing one-hot inputs")
    train_bin_fraction: float = Field(1.0, gt=0, le=1, description="store this seeded fraction of each train window's bins")
    store_backbone_heads: bool = Field(False, description="also store the backbone's own human-head predictions")
    pad_value: float = Field(0.25, ge=0, le=1, description="one-hot value of positions beyond a chromosome end")
    device: str = Field("auto", description="torch device (auto: cuda if available, with LOCAL_RANK)")


class TrainConfig(_Section):
    """Stage 4: a head trained on stored embeddings (defaults = the study, loss = ours)."""

    head: str = Field("default", description="name of the head (folder RUN_DIR/heads/NAME)")
    model: Literal["linear", "mlp", "ridge"] = Field("linear", description="linear + softplus (the study's), a small MLP, or closed-form ridge")
    loss: Literal["poisson", "poisson-log-input", "mse", "poisson-multinomial"] = Field(
        "poisson", description="poisson = rate form (Enformer's; ours); poisson-log-input = the study's PoissonNLLLoss(log_input=True) quirk"
    )
    tracks_where: str | None = Field(None, description="train on tracks matching this pandas query, e.g. \"level == 'Class'\"")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    batch_size: int = Field(64, gt=0, description="windows per batch per device")
    max_epochs: int = Field(20, gt=0, description="maximum epochs")
    min_delta: float = Field(0.001, ge=0, description="early stopping: minimum val-loss improvement")
    patience: int = Field(2, ge=0, description="early stopping: epochs without improvement")
    mlp_hidden: int = Field(256, gt=0, description="hidden width of the mlp head")
    init: Literal["random", "ridge"] = Field("random", description="initialise a linear head from the ridge solution")
    ridge_lambdas: list[float] = Field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        description="ridge strengths (relative to the mean embedding variance), chosen on valid",
    )
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = Field("auto", description="auto: 16-mixed on GPU (the study), 32 on CPU")
    accelerator: str = Field("auto", description="lightning accelerator")
    devices: int = Field(1, gt=0, description="devices per node (DDP when more than one in all)")
    num_nodes: int = Field(1, gt=0, description="nodes")
    loader_workers: int = Field(2, ge=0, description="DataLoader workers reading the embeddings store")


class RunConfig(_Section):
    """All stages of one run; each key can also be given as a command-line flag."""

    run_dir: Path | None = Field(None, description="the run directory")
    seed: int = Field(0, description="random seed of every stage")
    geometry: Geometry = Field(default_factory=Geometry)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def load_config(path: Path | str) -> RunConfig:
    """Read a TOML run config; relative paths are relative to the config file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    try:
        config = RunConfig.model_validate(data)
    except ValueError as err:
        raise InputError(f"{path}: {_first_error(err)}") from None
    return resolve_paths(config, path.parent)


def resolve_paths(config: RunConfig, base: Path) -> RunConfig:
    """Make every relative path of the config relative to ``base``."""
    if config.run_dir is not None and not config.run_dir.is_absolute():
        config.run_dir = base / config.run_dir
    for section in (config.dataset,):
        for name, value in section:
            if isinstance(value, Path) and not value.is_absolute():
                setattr(section, name, base / value)
    backbone = config.embed.backbone
    # a relative folder is relative to the config file; 'Org/name' (not a folder there) is a hub name
    if backbone is not None and not Path(backbone).is_absolute():
        if (base / backbone).exists() or "/" not in backbone:
            config.embed.backbone = str(base / backbone)
    return config


def config_to_toml(config: RunConfig) -> str:
    import tomli_w

    data = config.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)


def _first_error(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(err)

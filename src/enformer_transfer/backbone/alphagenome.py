"""AlphaGenome backbones (alphagenome-pt): geometry, trunk, own tracks, adapters and folders.

The embedding is what AlphaGenome's own track heads read: by default the 128-bp one
(``output_t``, 3,072 channels in the published model), or with ``resolution=1`` the 1-bp one
(``output_x``, 1,536 channels, through the U-Net decoder), for one organism (human, index 0 of
the published metadata, by default). The 128-bp trunk skips the decoder, the 1-bp and pair
outputs (they do not feed the 128-bp embedding).

A backbone folder is the package's own ``AlphaGenome.save`` layout (``config.json``,
``metadata.json``, ``model.safetensors``; ``AlphaGenome.load`` reads it) with our keys added to
``config.json``: ``model_type`` "alphagenome", ``seq_length``, ``resolution``, ``organism``.
A folder written by ``alphagenome-pt download --local-dir DIR`` (the converted published
weights) is read as it is.

The package computes under a dtype policy (a context variable, bfloat16 by default); the
trunk follows the caller's autocast instead: float32 without one, its dtype with one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import InputError, IntegrityError
from ..rundir.layout import BACKBONE_CONFIG, WEIGHT_FILES
from .base import BackboneGeometry, Family, TrunkSplit

MARKER = "alphagenome"
CONFIG = BACKBONE_CONFIG
METADATA = "metadata.json"
WEIGHTS = (WEIGHT_FILES[1], "model.pt", WEIGHT_FILES[0])  # safetensors first; the others weights_only
DOWNLOADED_METADATA = "alphagenome_metadata.json"  # alphagenome-pt download's layout
DEFAULT_HUB = "RylieWeaver/alphagenome-pytorch"
PUBLISHED_SEQ_LENGTH = 1_048_576
SEQ_MULTIPLE = 2048  # 2^7 encoder pooling x 16 (pair downsampling): AlphaGenome's input unit
RESOLUTIONS = (128, 1)
GENOME_TRACK_HEADS = ("atac", "dnase", "procap", "cage", "rna_seq", "chip_tf", "chip_histone")
# the published genome-track heads' widths (tracks per organism, padded), for the "full" preset
PUBLISHED_TRACKS = {"atac": 256, "dnase": 384, "procap": 128, "cage": 640, "rna_seq": 768,
                    "chip_tf": 1664, "chip_histone": 1152}

# preset -> AlphaGenomeConfig keywords. tiny: every part of the architecture (7 pooling stages,
# pair updates on even blocks, multi-query attention) at small widths; 16,384 bp = 128 bins.
PRESETS = {
    "tiny": dict(max_seq_len=16_384, num_channels=48, channel_increment=8, transformer_layers=2,
                 num_q_heads=4, num_kv_heads=1, pair_heads=4, pos_channels=16),
    "full": dict(max_seq_len=PUBLISHED_SEQ_LENGTH, num_channels=768, channel_increment=128,
                 transformer_layers=9, num_q_heads=8, num_kv_heads=1, qk_head_dim=128, v_head_dim=192,
                 pair_channels=128, pair_heads=32, pos_channels=64, transformer_mlp_ratio=2,
                 init_scale=0.1, embedder_mlp_ratio=2, num_splice_sites=512, splice_site_channels=768,
                 min_zero_multinomial_loss=False),
}
TINY_TRACKS = {"dnase": (4, 3), "rna_seq": (3, 2), "chip_histone": (2, 2)}  # (human, mouse)


@dataclass(frozen=True)
class Options:
    """What a loaded model embeds: input length, embedding resolution, organism."""

    seq_length: int
    resolution: int
    organism: str


# --- precision -----------------------------------------------------------------------------

def _policy(device_type: str):
    """The package's dtype policy matching the caller's autocast (float32 without one)."""
    from alphagenome_pt.precision import FLOAT32_DTYPE_POLICY, DtypePolicy

    if not torch.is_autocast_enabled(device_type):
        return FLOAT32_DTYPE_POLICY
    dtype = torch.get_autocast_dtype(device_type)
    return DtypePolicy(name=f"autocast-{dtype}", parameter_dtype=torch.float32, input_dtype=torch.float32,
                       compute_dtype=dtype, compute_uptype=torch.float32, output_dtype=torch.float32)


@contextlib.contextmanager
def _computing(x: torch.Tensor):
    from alphagenome_pt.precision import dtype_policy_context

    with dtype_policy_context(_policy(x.device.type), x.device.type):
        yield


def _freeze_norms(module: nn.Module) -> None:
    """alphagenome-pt's BatchNorm is its own class (not torch's): keep its statistics frozen."""
    from alphagenome_pt.layers import BatchNorm

    for m in module.modules():
        if isinstance(m, BatchNorm):
            m.eval()


def _organism_index(model: nn.Module, n: int, device) -> torch.Tensor:
    index = model.metadata.get_organism_index(model._et_options.organism)
    return torch.full((n,), index, dtype=torch.long, device=device)


def _crop(x: torch.Tensor, n_bins: int) -> torch.Tensor:
    if n_bins > x.shape[1]:
        raise InputError(f"AlphaGenome: {x.shape[1]} output positions cannot be cropped to {n_bins} bins; "
                         "check the dataset's --seq-length / --n-bins")
    start = (x.shape[1] - n_bins) // 2
    return x[:, start : start + n_bins]


# --- the trunk -----------------------------------------------------------------------------

class _Segment(nn.Module):
    """A trunk piece that computes under the caller's precision; BatchNorm stays frozen."""

    def train(self, mode: bool = True):
        super().train(mode)
        _freeze_norms(self)
        return self


class _Encoder(_Segment):
    """One-hot (B, L, 4) -> (B, channels, L / 128): the convolutional encoder plus the organism
    embedding (position-independent), as ``AlphaGenome._embed_batch`` does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.sequence_encoder = model.sequence_encoder
        self.org_embedder = model.org_embedder
        self._model = [model]  # not a submodule: only for the organism

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        with _computing(onehot):
            x, _ = self.sequence_encoder(onehot.float().transpose(1, 2))
            organism = _organism_index(self._model[0], x.shape[0], x.device)
            return x + self.org_embedder(organism)[:, :, None].to(x.dtype)


class _TowerBlock(_Segment):
    """(sequence (B, S, C), pair or None) -> the same after one transformer tower block; the
    first takes the encoder's (B, C, S)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, state):
        x, pair = (state.transpose(1, 2), None) if isinstance(state, torch.Tensor) else state
        with _computing(x):
            return self.block(x, pair)


class _Output128(_Segment):
    """(sequence, pair) -> the 128-bp embeddings (B, n_bins, 2C), centre-cropped."""

    def __init__(self, model: nn.Module, n_bins: int):
        super().__init__()
        self.output_t = model.output_t
        self.n_bins = n_bins
        self._model = [model]

    def forward(self, state):
        x, _ = state
        with _computing(x):
            organism = _organism_index(self._model[0], x.shape[0], x.device)
            return _crop(self.output_t(x, organism), self.n_bins)


class Trunk128(nn.Sequential):
    """One-hot (B, L, 4) -> 128-bp embeddings (B, n_bins, dim): encoder, tower blocks, output
    embedder, applied one after another (inside the tower the boundary is the (sequence, pair)
    pair of tensors)."""

    def train(self, mode: bool = True):
        super().train(mode)
        _freeze_norms(self)
        return self


class Trunk1(_Segment):
    """One-hot (B, L, 4) -> 1-bp embeddings (B, n_bins, dim): the whole U-Net (its skip
    connections make it one piece)."""

    def __init__(self, model: nn.Module, n_bins: int):
        super().__init__()
        self.encoder = _Encoder(model)
        self.blocks = nn.ModuleList(list(model.transformer_tower.blocks))
        self.sequence_decoder = model.sequence_decoder
        self.output_t = model.output_t
        self.output_x = model.output_x
        self.n_bins = n_bins
        self._model = [model]

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        with _computing(onehot):
            x, intermediates = self.encoder.sequence_encoder(onehot.float().transpose(1, 2))
            organism = _organism_index(self._model[0], x.shape[0], x.device)
            x = (x + self.encoder.org_embedder(organism)[:, :, None].to(x.dtype)).transpose(1, 2)
            pair = None
            for block in self.blocks:
                x, pair = block(x, pair)
            decoded = self.sequence_decoder(x.transpose(1, 2), intermediates).transpose(1, 2)
            embeddings_128 = self.output_t(x, organism)
            return _crop(self.output_x(decoded, organism, skip_x=embeddings_128), self.n_bins)


class OwnTracks(_Segment):
    """Embeddings (B, bins, dim) -> the organism's tracks of every genome-track head at the
    embedding's resolution (B, bins, tracks), on the data scale (``predictions_{res}bp``),
    padded tracks dropped."""

    def __init__(self, model: nn.Module, resolution: int):
        super().__init__()
        organism = model._et_options.organism
        self.heads = nn.ModuleDict({name: head for name, head in model._heads.items()
                                    if name in GENOME_TRACK_HEADS and str(resolution) in head.multiorg_linear})
        self.valid = {name: torch.as_tensor(model.metadata.get_track_mask_organism(organism, name), dtype=torch.bool)
                      for name in self.heads}  # the organism's tracks (the rest pad other organisms')
        self.resolution = resolution
        self._model = [model]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        with _computing(embeddings):
            organism = _organism_index(self._model[0], embeddings.shape[0], embeddings.device)
            out = []
            for name, head in self.heads.items():
                key, valid = str(self.resolution), self.valid[name]
                x = head.multiorg_linear[key](embeddings, organism)
                scale = head.residual_scales[key][organism]
                scaled = (F.softplus(x) * F.softplus(scale[:, None, :])).float()
                out.append(head.unscale(scaled, organism, self.resolution)[..., valid.to(x.device)])
            return torch.cat(out, dim=-1)


# --- folders -------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not readable JSON ({err}); write the folder again with "
                         "`backbone init --kind alphagenome` or use the published download") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or torch.load with weights_only=True (a pickle that would run
    code is refused)."""
    import pickle

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise IntegrityError(f"{path}: refused, loading these weights would run code (a pickle payload, "
                                 "not plain tensors); use the backbone's original weights") from None
        raise InputError(f"{path}: unreadable weights ({err})") from None
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: unreadable weights ({type(err).__name__}: {reason})") from None


def _metadata(preset: str) -> dict:
    """Organisms human and mouse; genome-track heads (tiny: a few tracks; full: the published
    heads' widths) with unit means."""
    tracks = ({name: (n, n) for name, n in PUBLISHED_TRACKS.items()} if preset == "full" else TINY_TRACKS)
    heads = {}
    for name, counts in tracks.items():
        width = max(counts)
        heads[name] = {"num_tracks": list(counts), "means": [[1.0] * width for _ in counts],
                       "track_mask": [[i < n for i in range(width)] for n in counts]}
    return {"organisms": ["human", "mouse"], "heads": heads}


def preset_config(preset: str, seq_length: int | None = None) -> dict:
    """The AlphaGenomeConfig keywords of a preset (plain data; no model built)."""
    if preset not in PRESETS:
        raise InputError(f"--preset {preset!r}: use tiny or full")
    config = dict(PRESETS[preset], dtype_policy="float32")
    if seq_length is not None:
        if seq_length % SEQ_MULTIPLE or seq_length <= 0:
            raise InputError(f"seq_length {seq_length}: AlphaGenome takes a positive multiple of {SEQ_MULTIPLE:,} bp")
        config["max_seq_len"] = seq_length
    return config


def _check_options(resolution: int, organism: str, organisms: list[str], where: str) -> None:
    if resolution not in RESOLUTIONS:
        raise InputError(f"{where}: resolution {resolution} is not 128 or 1 (AlphaGenome's embeddings)")
    if organism not in organisms:
        raise InputError(f"{where}: organism {organism!r} is not one of the model's ({', '.join(organisms)})")


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with any LoRA adapters merged into their base weights (peft's names
    removed), as the package's own ``AlphaGenome`` expects it."""
    import sys

    state = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    # adapters exist only if peft was imported (importing it costs seconds: transformers)
    lora_layer = getattr(sys.modules.get("peft.tuners.lora"), "LoraLayer", None)
    for name, module in model.named_modules():
        if lora_layer is not None and isinstance(module, lora_layer) and not module.merged:
            if any(module.use_dora.get(a, False) for a in module.active_adapters):
                raise InputError(f"{name}: DoRA adapters cannot be merged here; merge them before saving")
            key = f"{name}.base_layer.weight"
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            state[key] = state[key] + delta
    return {k.replace(".base_layer.", "."): v.detach().cpu().contiguous() for k, v in state.items()}


# --- the family ----------------------------------------------------------------------------

class AlphaGenomeFamily(Family):
    """AlphaGenome through alphagenome-pt (Rylie Weaver's PyTorch port of DeepMind's model)."""

    kind: ClassVar[str] = "alphagenome"
    display_name: ClassVar[str] = "AlphaGenome"
    package: ClassVar[str] = "alphagenome-pt"
    weights_hint: ClassVar[str] = (
        "published weights: Hugging Face RylieWeaver/alphagenome-pytorch (DeepMind's AlphaGenome converted "
        "to PyTorch; folder v1.0.0, alphagenome_all_folds.safetensors about 1.8 GB, or one of four folds, plus "
        "alphagenome_metadata.json); on a machine with internet run `alphagenome-pt download --local-dir "
        "alphagenome-weights --fold all_folds`, copy the folder here and pass it as the backbone. The weights "
        "are under the AlphaGenome Model Terms (https://deepmind.google.com/science/alphagenome/model-terms): "
        "non-commercial use only; the alphagenome-pt code is Apache-2.0")

    # --- folders -------------------------------------------------------------------------
    @classmethod
    def detects(cls, folder: Path) -> bool:
        folder = Path(folder)
        if (folder / CONFIG).is_file():
            try:
                config = json.loads((folder / CONFIG).read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return False
            return isinstance(config, dict) and (
                config.get("model_type") == MARKER or config.get("model_name") == "AlphaGenome")
        return (folder / DOWNLOADED_METADATA).is_file() and any(folder.glob("alphagenome_*.safetensors"))

    def init(self, out: Path, preset: str = "tiny", seed: int = 0, **options) -> Path:
        """A random AlphaGenome folder. Options: ``resolution`` (128 or 1), ``organism``
        ("human" or "mouse"), ``seq_length`` (the input length, a multiple of 2,048)."""
        from alphagenome_pt import AlphaGenome, AlphaGenomeConfig, Metadata

        resolution = int(options.pop("resolution", 128))
        organism = str(options.pop("organism", "human"))
        seq_length = options.pop("seq_length", None)
        if "n_bins" in options:
            raise InputError("backbone init --kind alphagenome: its bins follow from --seq-length (seq_length / 128 "
                             "at 128 bp); drop --n-bins")
        if options:
            raise InputError(f"backbone init --kind alphagenome: no option {', '.join(sorted(options))} "
                             "(it takes --seq-length, --resolution, --organism)")
        metadata = Metadata(_metadata(preset))
        config = AlphaGenomeConfig(**preset_config(preset, seq_length), metadata=metadata)
        _check_options(resolution, organism, metadata.get_organisms(), f"backbone init {out}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AlphaGenome(config).eval()
        model._et_options = Options(config.max_seq_len, resolution, organism)
        from ..fs import atomic_folder

        with atomic_folder(Path(out), force=True) as tmp:
            self.save(model, tmp)
        return Path(out)

    def load(self, source: str, **options) -> nn.Module:
        """From our folder, an ``alphagenome-pt download`` folder, or (downloads allowed by the
        caller) a Hugging Face repository of converted weights. Options: ``resolution``,
        ``organism``, ``fold`` (published weights: all_folds, fold_0 ... fold_3)."""
        path = Path(source)
        if path.is_dir():
            model, saved = self._load_folder(path, options.pop("fold", "all_folds"))
        elif path.exists():
            raise InputError(f"{path}: an AlphaGenome backbone is a folder (config.json, metadata.json, "
                             "model.safetensors)")
        elif str(source).count("/") == 1 and not str(source).startswith((".", "/")):
            model, saved = self._load_hub(str(source), options.pop("fold", "all_folds")), {}
        else:
            raise InputError(f"{path}: backbone folder not found")
        resolution = int(options.pop("resolution", saved.get("resolution", 128)))
        organisms = model.metadata.get_organisms()
        organism = str(options.pop("organism", saved.get("organism", "human" if "human" in organisms else organisms[0])))
        if options:
            raise InputError(f"backbone {source}: unknown options {sorted(options)} (use resolution, organism, fold)")
        _check_options(resolution, organism, organisms, f"backbone {source}")
        model._et_options = Options(int(saved.get("seq_length", model.max_seq_len)), resolution, organism)
        return model.eval()

    def _load_folder(self, path: Path, fold: str) -> tuple[nn.Module, dict]:
        from alphagenome_pt import AlphaGenome, AlphaGenomeConfig, Metadata

        if not (path / CONFIG).is_file():
            if (path / DOWNLOADED_METADATA).is_file():
                return self._load_downloaded(path, fold), {}
            raise InputError(f"{path}: no config.json; an AlphaGenome backbone folder has config.json, "
                             "metadata.json and model.safetensors (or is an `alphagenome-pt download` folder)")
        saved = _read_json(path / CONFIG)
        if not (path / METADATA).is_file():
            raise InputError(f"{path}: no metadata.json (organisms and heads) next to config.json")
        weights = next((path / w for w in WEIGHTS if (path / w).is_file()), None)
        if weights is None:
            raise InputError(f"{path}: no weights ({' or '.join(WEIGHTS)}) next to config.json")
        package_keys = {k: v for k, v in saved.items() if k not in ("model_type", "seq_length", "resolution",
                                                                    "organism", "package_version")}
        package_keys["dtype_policy"] = "float32"  # float32 parameters; the trunk follows the caller's autocast
        try:
            config = AlphaGenomeConfig(**package_keys, metadata=Metadata(_read_json(path / METADATA)))
            model = AlphaGenome(config)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{path / CONFIG}: not an AlphaGenome configuration ({type(err).__name__}: {err})") from None
        state = _read_weights(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            reason = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise InputError(f"{weights}: weights do not fit config.json ({reason})") from None
        return model, saved

    def _load_downloaded(self, path: Path, fold: str) -> nn.Module:
        """The published model from an ``alphagenome-pt download --local-dir`` folder, offline."""
        from alphagenome_pt import AlphaGenome, deepmind_config, fold_filename, load_deepmind_state

        weights = path / fold_filename(fold)
        if not weights.is_file():
            raise InputError(f"{path}: no {weights.name}; download it with `alphagenome-pt download "
                             f"--local-dir {path} --fold {fold}` (or pass another fold)")
        model = AlphaGenome(deepmind_config(metadata=_read_json(path / DOWNLOADED_METADATA), dtype_policy="float32"))
        try:  # the file exists, so this reads it (safetensors: tensors only) and downloads nothing
            result = load_deepmind_state(model, local_dir=path, local_filename=weights.name)
        except Exception as err:
            reason = str(err).splitlines()[0] if str(err) else ""
            raise InputError(f"{weights}: unreadable weights ({type(err).__name__}: {reason})") from None
        if result.missing_keys or result.unexpected_keys:
            raise InputError(f"{weights}: weights do not fit the published architecture (missing "
                             f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
        return model

    def _load_hub(self, repo_id: str, fold: str) -> nn.Module:
        from alphagenome_pt import deepmind_model

        try:
            return deepmind_model(load_state=True, repo_id=repo_id, fold=fold, dtype_policy="float32")
        except Exception as err:
            raise InputError(f"backbone {repo_id}: cannot download AlphaGenome weights ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); {self.weights_hint}") from None

    def save(self, model: nn.Module, folder: Path) -> None:
        """The package's layout (``AlphaGenome.load`` reads it) plus our keys in config.json;
        LoRA adapters, if any, merged into the weights."""
        from alphagenome_pt import package_version
        from safetensors.torch import save_file

        options = _options(model)
        state = _plain_state(model)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model.cfg.save(cfg_path=folder / CONFIG, metadata_path=folder / METADATA)
        config = json.loads((folder / CONFIG).read_text())
        config.update(model_type=MARKER, seq_length=options.seq_length, resolution=options.resolution,
                      organism=options.organism, package_version=package_version())
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(folder / WEIGHTS[0]), metadata={"format": "pt"})

    # --- geometry and forward ------------------------------------------------------------
    def geometry(self, model: nn.Module) -> BackboneGeometry:
        options = _options(model)
        dim = model.channels.channels_128bp if options.resolution == 128 else model.channels.channels_1bp
        return BackboneGeometry(options.seq_length, options.resolution, options.seq_length // options.resolution, dim)

    def check_geometry(self, model: nn.Module, seq_length: int, bin_size: int, n_bins: int, source: str) -> None:
        g = self.geometry(model)
        fix = f"rebuild the dataset with --seq-length {g.seq_length} --bin-size {g.bin_size} --n-bins {g.target_bins}"
        if seq_length % SEQ_MULTIPLE or not 0 < seq_length <= model.max_seq_len:
            raise InputError(f"backbone {source} (alphagenome) takes a multiple of {SEQ_MULTIPLE:,} bp up to "
                             f"{model.max_seq_len:,} bp but the dataset's seq_length is {seq_length}; {fix}")
        super().check_geometry(model, seq_length, bin_size, n_bins, source)

    def trunk(self, model: nn.Module, n_bins: int) -> nn.Module:
        if _options(model).resolution == 1:
            return Trunk1(model, n_bins)
        blocks = [_TowerBlock(block) for block in model.transformer_tower.blocks]
        return Trunk128(_Encoder(model), *blocks, _Output128(model, n_bins))

    def output_head(self, model: nn.Module) -> nn.Module | None:
        head = OwnTracks(model, _options(model).resolution)
        return head if len(head.heads) else None

    def output_weights(self, model: nn.Module):
        """(tracks, dim): the organism's rows of each genome-track head's linear layer, in
        ``output_head``'s order."""
        head = OwnTracks(model, _options(model).resolution)
        if not len(head.heads):
            return None
        index = model.metadata.get_organism_index(_options(model).organism)
        key = str(head.resolution)
        weights = [h.multiorg_linear[key].weight[index].detach() for h in head.heads.values()]
        return torch.cat([w[:, head.valid[name].to(w.device)].T for name, w in zip(head.heads, weights, strict=True)])

    def output_track_names(self, model: nn.Module) -> list[str]:
        """Names of ``output_head``'s tracks, "head:index" (extra to the protocol)."""
        head = OwnTracks(model, _options(model).resolution)
        return [f"{name}:{i}" for name, valid in head.valid.items() for i in valid.nonzero().flatten().tolist()]

    # --- fine-tuning ---------------------------------------------------------------------
    def lora_targets(self, model: nn.Module) -> list[str]:
        """Sequence attention q/k/v/output and feed-forward linears, the pair stream's attention
        and feed-forward linears, the first (plain) convolution and the output embedders'
        linears. The encoder's other convolutions are weight-standardised (their own module,
        which peft cannot adapt): they train with ``last:K``/``all`` only."""
        wanted = ("mha.q_layer", "mha.k_layer", "mha.v_layer", "mha.linear_embedding", "mlp.fc1", "mlp.fc2",
                  "row_attention_block.linear_q", "row_attention_block.linear_k", "row_attention_block.linear_v",
                  "pair_mlp_block.fc1", "pair_mlp_block.fc2")
        used = self._used_prefixes(model)
        names = []
        for name, module in model.named_modules():
            if not name.startswith(used) or name.startswith("_heads"):
                continue
            if isinstance(module, nn.Conv1d) or (isinstance(module, nn.Linear) and (
                    name.endswith(wanted) or name.startswith(("output_t.", "output_x.", "sequence_decoder.")))):
                names.append(name)
        return names

    @staticmethod
    def _used_prefixes(model: nn.Module) -> tuple[str, ...]:
        used = ("sequence_encoder.", "transformer_tower.", "output_t.")
        return used + ("sequence_decoder.", "output_x.") if _options(model).resolution == 1 else used

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.transformer_tower.blocks)

    def after_blocks(self, model: nn.Module) -> list[nn.Module]:
        if _options(model).resolution == 1:
            return [model.output_t, model.sequence_decoder, model.output_x]
        return [model.output_t]

    def head_modules(self, model: nn.Module) -> list[str]:
        return ["_heads"]

    def checkpoint_segments(self, trunk: nn.Module) -> list[nn.Module] | None:
        """The 128-bp trunk's encoder, tower blocks and output embedder; None for the 1-bp
        trunk (the U-Net's skip connections span it)."""
        return list(trunk) if isinstance(trunk, Trunk128) else None

    # --- attribution ---------------------------------------------------------------------
    def split(self, trunk: nn.Module) -> TrunkSplit | None:
        """The 128-bp trunk's encoder (convolutions and max pooling, local) and the rest. The
        receptive field, counted as for Enformer (a width-k convolution adds k // 2 positions,
        a pooling by 2 adds one, at the current stride): 15-wide first convolution and one
        5-wide block at 1 bp, then two 5-wide blocks at each of 2 ... 64 bp, pooling after
        each stage: 7 + 2 + 1 + 5 x (2 + 4 + ... + 64) = 640 bp."""
        if not isinstance(trunk, Trunk128):
            return None
        encoder = trunk[0].sequence_encoder
        stride, half_width = 1, 0
        for stage in range(encoder.stages):
            block = encoder.downres_blocks[f"bin_size_{encoder.bin_sizes[stage]}"]
            widths = ([block.first_conv_width, block.block_width] if stage == 0 else [block.conv_block1.width,
                                                                                     block.conv_block2.width])
            half_width += sum(w // 2 for w in widths) * stride
            half_width += (encoder.encoder_downsample_width - 1) * stride
            stride *= encoder.encoder_downsample_width
        return TrunkSplit(trunk[0], nn.Sequential(*list(trunk)[1:]), stride, half_width)

    def deeplift_rules(self, model: nn.Module):
        """None: AlphaGenome's scaled GELU, RMS normalisations, RoPE attention with pair biases
        and max pooling have no exact DeepLIFT rules here."""
        return None

    # --- description ---------------------------------------------------------------------
    def describe(self, model: nn.Module) -> dict:
        options, geometry = _options(model), self.geometry(model)
        head = OwnTracks(model, options.resolution)
        return {
            "organism": options.organism, "organisms": model.metadata.get_organisms(),
            "resolution_bp": options.resolution, "max_seq_len": model.max_seq_len,
            "transformer_blocks": len(model.transformer_tower.blocks),
            "channels_128bp": model.channels.channels_128bp, "channels_1bp": model.channels.channels_1bp,
            "own_tracks": {name: int(valid.sum()) for name, valid in head.valid.items()},
            "heads": list(model._heads.keys()),
            "embedding_bytes_per_window_float16": geometry.target_bins * geometry.embedding_dim * 2,
        }


def _options(model: nn.Module) -> Options:
    options = getattr(model, "_et_options", None)
    if options is None:  # a model built by the package itself
        options = Options(model.max_seq_len, 128, model.metadata.get_organism(0))
        model._et_options = options
    return options


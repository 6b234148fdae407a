"""The Borzoi and Flashzoi families (borzoi-pytorch): 32-bp bins, 1,920-channel embeddings.

The embedding stored is what ``Borzoi.forward(x, return_embeddings=True)`` returns: the output
of ``final_joined_convs`` (1,920 channels per 32-bp bin), centre-cropped to the dataset's bins.
Borzoi is a U-Net: a convolution tower (stride 32 at its end), two more poolings into the
transformer (stride 128), then two upsamplings back to 32 bp, each adding a skip projection of
the tower. The trunk here is a plain ``nn.Sequential`` of the package's own modules; between the
pooling into the transformer and the upsampling it carries a tuple ``(x, skip0, skip1)``, so
that activation checkpointing can keep only segment boundaries.

Flashzoi is the same network with rotary, grouped-query attention through ``flash_attn``'s
``MHA``, which runs on CUDA only and in fp16/bf16 only (the embed stage's bf16 autocast on a GPU).
Where it works: ``init`` and ``detects`` anywhere (the folder is written without flash-attn);
``load`` and everything after it only where flash-attn imports and a CUDA GPU is present, and
elsewhere a one-line InputError names the fix. The trunk, split and checkpoint segments are the
Borzoi ones (the attention module is the only difference); its LoRA targets are ``mha.Wqkv`` and
``mha.out_proj`` instead of ``to_q/to_k/to_v/to_out``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import InputError, IntegrityError
from ..fs import atomic_folder
from ..rundir.layout import WEIGHT_FILES, BackboneFolder
from . import base
from .base import BackboneGeometry, Family, TrunkSplit
from .enformer import needs_code as _needs_code

BIN_SIZE = 32  # bp per output position: the stem's pooling and four of the tower's
TRANSFORMER_STRIDE = 128  # bp per transformer position: two more poolings
EMBEDDING_DIM = 1920  # final_joined_convs' width, fixed by the package
SEQ_LENGTH_KEY = "seq_length"  # kept in config.json: the input length the backbone was built for
PUBLISHED_SEQ_LENGTH = 524_288

# dim, depth, heads, attention widths, bins and input length of each preset; the convolution
# tower's widths (512..1280) and the embedding width (1920) are fixed by borzoi-pytorch.
PRESETS: dict[str, dict] = {
    "tiny": dict(dim=256, depth=2, heads=2, attn_dim_key=32, attn_dim_value=64, bins_to_return=96,
                 **{SEQ_LENGTH_KEY: 8192}),
    "full": dict(dim=1536, depth=8, heads=8, attn_dim_key=64, attn_dim_value=192, bins_to_return=6144,
                 **{SEQ_LENGTH_KEY: PUBLISHED_SEQ_LENGTH}),
}


def _hub_hint(kind: str, name: str) -> str:
    return (f"backbone {name!r} is not a local directory and downloads are off; on a machine with internet run "
            f"`huggingface-cli download {name} --local-dir {kind}-weights` (config.json + model.safetensors or "
            f"pytorch_model.bin, about 750 MB), copy the folder here and pass --backbone {kind}-weights "
            "(or pass --allow-download to fetch it from the hub)")


class BorzoiFamily(Family):
    """Borzoi (Linder et al. 2025) through borzoi-pytorch's ``Borzoi``."""

    kind: ClassVar[str] = "borzoi"
    display_name: ClassVar[str] = "Borzoi"
    package: ClassVar[str] = "borzoi-pytorch"
    flashed: ClassVar[bool] = False
    weights_hint: ClassVar[str] = (
        "johahi/borzoi-replicate-0 .. -3 on the Hugging Face hub (config.json + pytorch_model.bin or "
        "model.safetensors, 744 MB each; CC-BY-4.0), the published Borzoi weights converted to PyTorch")

    # --- folders -------------------------------------------------------------------------
    @classmethod
    def detects(cls, folder: Path) -> bool:
        config = _read_config(Path(folder))
        return config is not None and config.get("model_type") == "borzoi" and bool(config.get("flashed")) == cls.flashed

    def init(self, out: Path, preset: str = "tiny", seed: int = 0, calibrate_batches: int = 1, **options) -> Path:
        """A random Borzoi in the published format (config.json + model.safetensors, written by
        the package's ``save_pretrained``). A random Borzoi's activations collapse (embeddings
        of different bins differ by ~1e-5); with ``calibrate_batches`` > 0 the BatchNorm
        running statistics are set on that many batches of two random sequences at the
        preset's input length, as a data-dependent initialisation."""
        from borzoi_pytorch import Borzoi

        config = self.preset_config(preset, **options)
        torch.manual_seed(seed)
        model = Borzoi(config)
        if calibrate_batches:
            calibrate_batchnorm(model, config.to_dict()[SEQ_LENGTH_KEY], calibrate_batches)
        out = Path(out)
        with atomic_folder(out, force=True) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
        return out

    def preset_config(self, preset: str, **options):
        """The BorzoiConfig of ``preset`` (options override its values), with the input length kept."""
        from borzoi_pytorch.config_borzoi import BorzoiConfig

        if preset not in PRESETS:
            raise InputError(f"--preset {preset!r}: use {' or '.join(PRESETS)}")
        if "n_bins" in options:  # the tool's name for the bins the backbone predicts
            options["bins_to_return"] = options.pop("n_bins")
        unknown = sorted(set(options) - set(PRESETS[preset]))
        if unknown:
            raise InputError(f"backbone init --kind {self.kind}: no option {', '.join(unknown)} (it takes "
                             f"{', '.join(k for k in PRESETS[preset] if k != 'bins_to_return')}, n_bins)")
        values = {**PRESETS[preset], **options}
        if values[SEQ_LENGTH_KEY] % TRANSFORMER_STRIDE:
            raise InputError(f"{self.kind}: seq_length {values[SEQ_LENGTH_KEY]} is not a multiple of "
                             f"{TRANSFORMER_STRIDE} bp (the transformer's stride)")
        return BorzoiConfig(flashed=self.flashed, return_center_bins_only=True, **values)

    def load(self, source: str, allow_download: bool = False, **options) -> nn.Module:
        from borzoi_pytorch import Borzoi

        path = Path(source)
        if path.exists():
            config = _read_config(path)
            if config is None:
                raise InputError(f"{path}: not a {self.kind} backbone (a directory with config.json and "
                                 "model.safetensors or pytorch_model.bin)")
            if config.get("model_type") != "borzoi" or bool(config.get("flashed")) != self.flashed:
                found = "flashzoi" if config.get("flashed") else config.get("model_type", "unknown")
                raise InputError(f"{path}: config.json describes a {found} backbone, not {self.kind}")
        elif str(source).count("/") == 1 and not str(source).startswith((".", "/")):
            if not allow_download:
                raise InputError(_hub_hint(self.kind, str(source)))
        else:
            raise InputError(f"{source}: backbone directory not found")
        self._check_runtime(source)
        try:
            model, info = Borzoi.from_pretrained(str(source), weights_only=True, output_loading_info=True,
                                                 local_files_only=not allow_download)
        except Exception as err:
            if _needs_code(err):
                raise IntegrityError(f"{source}: refused, loading its weights would run code (a pickle payload, "
                                     "not plain tensors); use the backbone's original weights") from None
            reason = str(err).splitlines()[0] if str(err) else ""
            raise InputError(f"{source}: cannot load {self.kind} weights ({type(err).__name__}: {reason})") from None
        missing = [k for k in info.get("missing_keys", []) if "human_head_bak" not in k]
        if missing:
            raise InputError(f"{source}: the weights lack {len(missing)} of the model's tensors "
                             f"(e.g. {missing[0]}); the folder is incomplete or of another architecture")
        return model.eval()

    def _check_runtime(self, source: str) -> None:
        """Borzoi runs anywhere torch does."""

    def save(self, model: nn.Module, folder: Path) -> None:
        lora = [name for name, _ in model.named_parameters() if "lora_" in name]
        if lora:
            raise InputError(f"{self.kind}: the model still carries LoRA adapters ({lora[0]}, ...); merge them "
                             "into the weights before saving")
        Path(folder).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(folder), safe_serialization=True)

    # --- geometry and forward ------------------------------------------------------------
    def geometry(self, model: nn.Module) -> BackboneGeometry:
        config = model.config.to_dict()
        seq_length = int(config.get(SEQ_LENGTH_KEY, PUBLISHED_SEQ_LENGTH))
        if config.get("return_center_bins_only", True):
            target_bins = int(config.get("bins_to_return", 6144))
        else:  # the package then keeps all but 16 bins on each side
            target_bins = seq_length // BIN_SIZE - 32
        return BackboneGeometry(seq_length, BIN_SIZE, target_bins, EMBEDDING_DIM)

    def check_geometry(self, model: nn.Module, seq_length: int, bin_size: int, n_bins: int, source: str) -> None:
        super().check_geometry(model, seq_length, bin_size, n_bins, source)
        if seq_length % TRANSFORMER_STRIDE:
            g = self.geometry(model)
            raise InputError(f"backbone {source} ({self.kind}): seq_length {seq_length} is not a multiple of "
                             f"{TRANSFORMER_STRIDE} bp (its transformer runs at {TRANSFORMER_STRIDE}-bp positions); "
                             f"rebuild the dataset with --seq-length {g.seq_length} --n-bins {g.target_bins}")

    def trunk(self, model: nn.Module, n_bins: int) -> nn.Module:
        return nn.Sequential(*self._local(model), *self._rest(model, n_bins))

    def _local(self, model) -> list[nn.Module]:
        return [_Stem(model.conv_dna), model.res_tower]

    def _rest(self, model, n_bins: int) -> list[nn.Module]:
        return [_Down(model), *[_Carried(block) for block in model.transformer], _Up(model),
                _Final(model.final_joined_convs, n_bins)]

    def output_head(self, model: nn.Module) -> nn.Module | None:
        head = getattr(model, "human_head", None)
        return None if head is None else _OwnTracks(head, model.final_softplus)

    def output_weights(self, model: nn.Module):
        head = getattr(model, "human_head", None)
        return None if head is None else head.weight.detach()[:, :, 0]

    # --- fine-tuning ---------------------------------------------------------------------
    def lora_targets(self, model: nn.Module) -> list[str]:
        heads = tuple(self.head_modules(model))
        names = []
        for name, module in model.named_modules():
            if name.startswith(heads):
                continue
            if isinstance(module, nn.Conv1d):
                if module.groups == 1:  # peft cannot adapt (or merge) the separable blocks' depthwise convs
                    names.append(name)
            elif isinstance(module, nn.Linear) and name.startswith("transformer."):
                if name.endswith(self._attention_projections) or ".1.fn." in name:
                    names.append(name)  # attention projections; the feed-forward block's two linears
        return names

    _attention_projections: ClassVar[tuple[str, ...]] = (".to_q", ".to_k", ".to_v", ".to_out")

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.transformer)

    def after_blocks(self, model: nn.Module) -> list[nn.Module]:
        # the skip projections (horizontal_conv0/1) run before the transformer, but their outputs
        # join the decoder only after it: they belong to the U-Net's upper half
        return [model.horizontal_conv1, model.horizontal_conv0, model.upsampling_unet1, model.separable1,
                model.upsampling_unet0, model.separable0, model.final_joined_convs]

    def head_modules(self, model: nn.Module) -> list[str]:
        return [name for name in ("human_head", "mouse_head") if getattr(model, name, None) is not None]

    def checkpoint_segments(self, trunk: nn.Module) -> list[nn.Module] | None:
        """The stem, each block of the convolution tower, the pooling into the transformer, each
        transformer block, the decoder, the crop and final convolutions. Between the pooling
        and the decoder a segment's input and output is the tuple (x, skip0, skip1)."""
        segments = []
        for module in trunk:
            segments.extend(module if isinstance(module, nn.Sequential) else [module])
        return segments

    # --- attribution ---------------------------------------------------------------------
    def split(self, trunk: nn.Module) -> TrunkSplit | None:
        """After the convolution tower (stride 32, 1,280 channels): its output ``x_unet0`` is
        the one tensor everything above it (the U-Net's skips included) is computed from."""
        local, rest = nn.Sequential(*trunk[:2]), nn.Sequential(*trunk[2:])
        stride, half_width = 1, 0
        for _, module in local.named_modules(remove_duplicate=False):  # the tower reuses one pooling module
            if isinstance(module, nn.Conv1d):
                half_width += module.dilation[0] * (module.kernel_size[0] // 2) * stride
            elif isinstance(module, nn.MaxPool1d):
                half_width += (module.kernel_size - 1) * stride
                stride *= module.kernel_size
        return TrunkSplit(local, rest, stride, half_width)

    # deeplift_rules: none (the base default). Borzoi's attention multiplies activations
    # (q.k, softmax weights times values); tangermeme has no exact DeepLIFT rule for that.

    # --- description ---------------------------------------------------------------------
    def describe(self, model: nn.Module) -> dict:
        config = model.config
        heads = {name: getattr(model, name).out_channels for name in self.head_modules(model)}
        return {"dim": config.dim, "depth": config.depth, "heads": config.heads, "flashed": self.flashed,
                "own_tracks": heads, "parameters": sum(p.numel() for p in model.parameters())}


class FlashzoiFamily(BorzoiFamily):
    """Flashzoi (Hingerl et al. 2025): Borzoi with rotary attention through flash-attn's MHA
    (grouped query/key/value ``mha.Wqkv``, ``mha.out_proj``). flash-attn runs on CUDA only."""

    kind: ClassVar[str] = "flashzoi"
    display_name: ClassVar[str] = "Flashzoi"
    flashed: ClassVar[bool] = True
    weights_hint: ClassVar[str] = (
        "johahi/flashzoi-replicate-0 .. -3 on the Hugging Face hub (config.json + model.safetensors, "
        "the Borzoi trunk with rotary attention and both the human and mouse heads, about 0.75 GB each; MIT); "
        "loading needs flash-attn on a CUDA GPU")
    _attention_projections: ClassVar[tuple[str, ...]] = (".mha.Wqkv", ".mha.out_proj")

    def init(self, out: Path, preset: str = "tiny", seed: int = 0, calibrate_batches: int = 1, **options) -> Path:
        """A random Flashzoi folder in the published layout, written without flash-attn (which
        needs CUDA to build the model): every tensor but the attention's comes from a random
        Borzoi; the attention is flash-attn MHA's ``Wqkv`` (Xavier-normal, bias 0, as Borzoi's
        ``_init_weights`` leaves every Linear) and ``out_proj`` (zero, as borzoi-pytorch's
        ``FlashAttention`` intends). The attention branch thus starts silent, and BatchNorm is
        calibrated through the stand-in Borzoi with its attention output silenced the same way,
        so the statistics hold for the Flashzoi written."""
        from borzoi_pytorch import Borzoi
        from safetensors.torch import save_file

        config = self.preset_config(preset, **options)
        if config.dim % config.heads or config.dim // config.heads < 128 or config.heads < 2 or config.heads % 2:
            raise InputError(f"flashzoi: dim / heads must be at least 128 (its rotary embedding's width) and heads "
                             f"even (got dim {config.dim}, heads {config.heads})")
        torch.manual_seed(seed)
        model = Borzoi(_borzoi_config(config))
        for block in model.transformer:
            nn.init.zeros_(block[0].fn[1].to_out.weight)
            nn.init.zeros_(block[0].fn[1].to_out.bias)
        if calibrate_batches:
            calibrate_batchnorm(model, config.to_dict()[SEQ_LENGTH_KEY], calibrate_batches)
        attention = re.compile(r"transformer\.\d+\.0\.fn\.1\.")  # Residual(LayerNorm, Attention, Dropout)
        state = {k: v for k, v in model.state_dict().items() if not attention.match(k)}
        for i in range(config.depth):
            state.update(flash_attention_state(model, f"transformer.{i}.0.fn.1.mha.", config.dim))
        out = Path(out)
        with atomic_folder(out, force=True) as tmp:
            config.save_pretrained(str(tmp))
            save_file({k: v.contiguous() for k, v in state.items()}, str(BackboneFolder(Path(tmp)).path / WEIGHT_FILES[1]),
                      metadata={"format": "pt"})
        return out

    @staticmethod
    def _runs_here() -> bool:
        return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()

    def _check_runtime(self, source: str) -> None:
        if not self._runs_here():
            missing = "no flash-attn" if importlib.util.find_spec("flash_attn") is None else "no CUDA GPU"
            raise InputError(f"{source}: Flashzoi needs flash-attn on a CUDA GPU (this machine has {missing}); "
                             "pip install flash-attn --no-build-isolation on a CUDA machine, or use --kind borzoi "
                             "(johahi/borzoi-replicate-*)")


def flash_attention_state(model: nn.Module, prefix: str, dim: int) -> dict[str, torch.Tensor]:
    """One block's attention tensors of a random Flashzoi: flash-attn's MHA with ``heads`` query
    heads and ``heads // 2`` key/value heads packs q, k, v into one Linear(dim, 2 * dim)
    (``Wqkv``), then ``out_proj`` Linear(dim, dim); its rotary frequencies are not stored (a
    non-persistent buffer). ``Wqkv`` is initialised by the package's own ``_init_weights``."""
    wqkv, out_proj = nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
    model._init_weights(wqkv)
    nn.init.zeros_(out_proj.weight)
    nn.init.zeros_(out_proj.bias)
    return {prefix + "Wqkv.weight": wqkv.weight.detach(), prefix + "Wqkv.bias": wqkv.bias.detach(),
            prefix + "out_proj.weight": out_proj.weight.detach(), prefix + "out_proj.bias": out_proj.bias.detach()}


def _borzoi_config(config):
    from borzoi_pytorch.config_borzoi import BorzoiConfig

    values = config.to_dict()
    values.pop("model_type", None)
    values["flashed"] = False
    return BorzoiConfig(**values)


def _read_config(folder: Path) -> dict | None:
    file = BackboneFolder(folder).config
    if not folder.is_dir() or not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def calibrate_batchnorm(model: nn.Module, seq_length: int, batches: int) -> None:
    """BatchNorm running statistics from ``batches`` batches of two random sequences (a
    cumulative average, seeded), then eval mode."""
    base.calibrate_batchnorm(  # every BatchNorm; the own heads have none
        model, lambda x: model.final_joined_convs(model.get_embs_after_crop(x.transpose(1, 2))), seq_length,
        batches, torch.Generator().manual_seed(0))


# --- the trunk's segments: the package's modules, in the order of Borzoi.get_embs_after_crop ---
class _Stem(nn.Module):
    """One-hot (B, L, 4) -> (B, 512, L / 2)."""

    def __init__(self, conv_dna: nn.Module):
        super().__init__()
        self.conv_dna = conv_dna

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.conv_dna(onehot.transpose(1, 2))


class _Down(nn.Module):
    """The tower's output x_unet0 (B, 1280, L / 32) -> (transformer input (B, L / 128, dim),
    skip0, skip1): the last pooling stages and the skip projections of the U-Net."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.unet1, self.pool = model.unet1, model._max_pool
        self.horizontal_conv1, self.horizontal_conv0 = model.horizontal_conv1, model.horizontal_conv0

    def forward(self, x_unet0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_unet1 = self.unet1(x_unet0)
        x = self.pool(x_unet1)
        return x.transpose(1, 2), self.horizontal_conv0(x_unet0), self.horizontal_conv1(x_unet1)


class _Carried(nn.Module):
    """A transformer block on the first element of the carried tuple."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, carried: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x, *skips = carried
        _reset_positions(self.block, x)
        return (self.block(x), *skips)


def _reset_positions(block: nn.Module, x: torch.Tensor) -> None:
    """borzoi-pytorch's Attention caches its relative position features at the first call's
    length and device; drop the cache when this call's differ (another input length, or a
    model moved to another device), so the package recomputes it."""
    n = x.shape[1]
    for module in block.modules():
        positions = getattr(module, "positions", None)
        if isinstance(positions, torch.Tensor) and (positions.shape[0] != 2 * n - 1 or positions.device != x.device):
            module.positions = None


class _Up(nn.Module):
    """(x, skip0, skip1) -> (B, dim, L / 32): the two upsamplings, each adding its skip."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.upsampling_unet1, self.separable1 = model.upsampling_unet1, model.separable1
        self.upsampling_unet0, self.separable0 = model.upsampling_unet0, model.separable0

    def forward(self, carried: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, skip0, skip1 = carried
        x = self.separable1(self.upsampling_unet1(x.transpose(1, 2)) + skip1)
        return self.separable0(self.upsampling_unet0(x) + skip0)


class _Final(nn.Module):
    """(B, dim, positions) -> centre n_bins -> final_joined_convs -> (B, n_bins, 1920)."""

    def __init__(self, final_joined_convs: nn.Module, n_bins: int):
        super().__init__()
        self.final_joined_convs = final_joined_convs
        self.n_bins = n_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = x.shape[-1]
        if self.n_bins > positions:
            raise InputError(f"{positions} output positions cannot be cropped to {self.n_bins} bins")
        start = (positions - self.n_bins) // 2
        return self.final_joined_convs(x[..., start : start + self.n_bins]).transpose(1, 2)


class _OwnTracks(nn.Module):
    """Embeddings (B, bins, 1920) -> softplus(human_head) (B, bins, 7611), in float32 as the
    package computes it (autocast off)."""

    def __init__(self, human_head: nn.Module, softplus: nn.Module):
        super().__init__()
        self.human_head, self.softplus = human_head, softplus

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            return self.softplus(self.human_head(embeddings.float().transpose(1, 2))).transpose(1, 2)


__all__ = ["BorzoiFamily", "FlashzoiFamily", "PRESETS", "calibrate_batchnorm", "flash_attention_state"]

"""Enformer through enformer-pytorch: the one file that knows its modules (the ``Family`` adapter).

A backbone folder is ``EleutherAI/enformer-official-rough``'s format: ``config.json`` (model_type
"enformer") + ``pytorch_model.bin`` (or ``model.safetensors``). The trunk is ``model.trunk``
(stem, convolution tower, transformer, crop, final pointwise: embeddings of width 2 x dim per
128-bp bin); the own tracks are the human head (5,313 tracks, the zero-shot baseline).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch
from einops import rearrange
from torch import nn

from ..errors import InputError, IntegrityError
from ..fs import atomic_folder
from ..rundir.layout import BackboneFolder
from . import base
from .base import BackboneGeometry, Family, TrunkSplit

PUBLISHED = {"dim": 1536, "depth": 11, "heads": 8, "attn_dim_key": 64, "num_downsamples": 7, "n_bins": 896,
             "human_tracks": 5313}
PRESETS = {
    "tiny": {"dim": 48, "depth": 1, "heads": 2, "attn_dim_key": 16, "num_downsamples": 7, "n_bins": 64,
             "human_tracks": 8},
    "full": PUBLISHED,
}
CROP_FRACTION = 320 / 896  # the published model crops 320 of its 1,536 positions on each side to 896 bins


def native_positions(n_bins: int) -> int:
    """Trunk positions of the input Enformer was built for with ``n_bins`` output bins (896 -> 1,536)."""
    return n_bins + 2 * round(n_bins * CROP_FRACTION)


class EnformerFamily(Family):
    kind = "enformer"
    display_name = "Enformer"
    exact_deeplift = True
    package = "enformer-pytorch"
    load_options: ClassVar[tuple[str, ...]] = ("tf_gamma",)
    weights_hint = ("EleutherAI/enformer-official-rough on the Hugging Face hub (config.json + pytorch_model.bin, "
                    "about 1 GB, Apache-2.0): `huggingface-cli download EleutherAI/enformer-official-rough "
                    "--local-dir enformer-weights`")

    # --- folders -------------------------------------------------------------------------
    @classmethod
    def detects(cls, folder: Path) -> bool:
        try:
            config = json.loads(BackboneFolder(Path(folder)).config.read_text())
        except (OSError, ValueError):
            return False
        return config.get("model_type") == "enformer" or "Enformer" in (config.get("architectures") or [])

    def build(self, dim: int = 1536, depth: int = 11, heads: int = 8, attn_dim_key: int = 64,
              num_downsamples: int = 7, n_bins: int = 896, human_tracks: int = 5313, calibrate_batches: int = 2,
              stem_motifs: list[str] | None = None) -> nn.Module:
        """A randomly initialised Enformer (seed torch first), BatchNorm statistics calibrated.

        A freshly initialised Enformer's activations collapse through its many layers (the
        embeddings of different bins then differ by ~1e-6, below float16 resolution). With
        ``calibrate_batches`` > 0 the BatchNorm running statistics are set on that many batches
        of random DNA (two sequences each), as a data-dependent initialisation, so that the
        random embeddings keep their variance and carry sequence information.

        ``stem_motifs`` (demos): the first filters of the stem convolution become detectors of
        these sequences (+1 on the motif's base, -1 elsewhere, firing on a full match), a
        stand-in for the motif detectors a real Enformer learns in pretraining.
        """
        from enformer_pytorch import Enformer, EnformerConfig

        if dim % heads or (dim // heads) % 6:
            raise InputError(f"dim / heads must be a whole multiple of 6 (got dim {dim}, heads {heads})")
        if dim % 4:
            raise InputError(f"dim must be a multiple of 4 (got {dim})")
        divisible = 128 if dim % 128 == 0 else dim // 4  # tiny backbones: keep the tower's widths whole
        config = EnformerConfig(
            dim=dim, depth=depth, heads=heads, attn_dim_key=attn_dim_key, num_downsamples=num_downsamples,
            target_length=n_bins, dim_divisible_by=divisible, output_heads={"human": human_tracks},
        )
        model = Enformer(config)
        if stem_motifs:
            _seed_stem(model, stem_motifs)
        if calibrate_batches:
            calibrate_batchnorm(model, n_bins, num_downsamples, calibrate_batches)
        return model.eval()

    def init(self, out: Path, preset: str = "tiny", seed: int = 0, **options) -> Path:
        """``preset`` tiny (dim 48, depth 1, 64 bins, 8 tracks) or full (the published
        architecture: dim 1536, depth 11, heads 8, 896 bins, 5,313 tracks); ``options``
        (``build``'s arguments; None keeps the preset's) override it."""
        if preset not in PRESETS:
            raise InputError(f"--preset {preset!r}: Enformer has the presets {', '.join(PRESETS)}")
        if "seq_length" in options:
            raise InputError("backbone init --kind enformer: the input length follows from --n-bins (896 bins: "
                             "196,608 bp); drop --seq-length")
        unknown = sorted(set(options) - set(PUBLISHED) - {"calibrate_batches", "stem_motifs"})
        if unknown:
            raise InputError(f"backbone init --kind enformer: no option {', '.join(unknown)}")
        settings = {**PRESETS[preset], **{k: v for k, v in options.items() if v is not None}}
        torch.manual_seed(seed)
        model = self.build(**settings)
        with atomic_folder(Path(out), force=True) as tmp:
            self.save(model, tmp)
        return Path(out)

    def load(self, source: str, tf_gamma: bool = False, fix: str = "use the backbone's original weights") -> nn.Module:
        """``Enformer.from_pretrained`` with ``weights_only=True``: transformers reads safetensors
        directly and a ``pytorch_model.bin`` with ``torch.load(weights_only=True)``; weights that
        would run code on load are refused. ``tf_gamma`` is explicit (enformer-pytorch turns it
        on only for the literal hub name); the reference study ran without it."""
        from enformer_pytorch import Enformer
        from enformer_pytorch.modeling_enformer import Attention

        try:
            model = Enformer.from_pretrained(str(source), weights_only=True)
        except Exception as err:
            if needs_code(err):
                raise IntegrityError(f"{source}: refused, loading its weights would run code (a pickle payload, not "
                                     f"plain tensors); {fix}") from None
            reason = str(err).splitlines()[0] if str(err) else ""
            raise InputError(f"{source}: cannot load Enformer weights ({type(err).__name__}: {reason})") from None
        for module in model.modules():
            if isinstance(module, Attention):
                module.use_tf_gamma = tf_gamma
        return model.eval()

    def save(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(str(folder), safe_serialization=False)  # safetensors fails: shared trunk tensors

    # --- geometry and forward ------------------------------------------------------------
    def geometry(self, model: nn.Module) -> BackboneGeometry:
        config = model.config
        bin_size = 2 ** int(config.num_downsamples)
        n_bins = int(config.target_length)
        return BackboneGeometry(native_positions(n_bins) * bin_size, bin_size, n_bins, 2 * int(config.dim))

    def check_geometry(self, model: nn.Module, seq_length: int, bin_size: int, n_bins: int, source: str) -> None:
        super().check_geometry(model, seq_length, bin_size, n_bins, source)
        if _uses_tf_gamma(model) and seq_length // bin_size != 1536:
            raise InputError(f"backbone {source}: tf_gamma needs 1,536 trunk positions (seq_length 196,608 with "
                             f"128-bp bins), the dataset has {seq_length // bin_size}; drop --tf-gamma")

    def trunk(self, model: nn.Module, n_bins: int) -> nn.Module:
        model.set_target_length(n_bins)
        return model.trunk

    def output_head(self, model: nn.Module) -> nn.Module | None:
        return model.heads["human"] if "human" in model.heads else None

    def output_tracks(self, model: nn.Module) -> int:
        return int(dict(model.config.output_heads).get("human", 0))

    def output_weights(self, model: nn.Module):
        head = self.output_head(model)
        return None if head is None else head[0].weight  # Linear(dim, tracks), Softplus

    # --- fine-tuning ---------------------------------------------------------------------
    def lora_targets(self, model: nn.Module) -> list[str]:
        """Attention q/v projections, feed-forward linears and convolutions of the trunk."""
        names = []
        for name, module in model.named_modules():
            if name.startswith("_heads"):
                continue
            if isinstance(module, nn.Conv1d) or name.endswith((".to_q", ".to_v")):
                names.append(name)
            elif isinstance(module, nn.Linear) and ".1.fn." in name and name.startswith("transformer."):
                names.append(name)  # the feed-forward block's two linears
        return names

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.transformer)

    def after_blocks(self, model: nn.Module) -> list[nn.Module]:
        return [model.final_pointwise]

    def head_modules(self, model: nn.Module) -> list[str]:
        return ["_heads"]

    def checkpoint_segments(self, trunk: nn.Module) -> list[nn.Module] | None:
        """The stem, each conv-tower block, each transformer block, the final layers."""
        if not isinstance(trunk, nn.Sequential):
            return None
        segments = []
        for module in trunk:
            stack = (isinstance(module, nn.Sequential) and len(module) > 1
                     and all(isinstance(child, nn.Sequential) for child in module))  # a tower of blocks
            segments += list(module) if stack else [module]
        return segments

    # --- attribution ---------------------------------------------------------------------
    def split(self, trunk: nn.Module) -> TrunkSplit | None:
        """Rearrange + stem + conv tower (translation-equivariant, a few hundred bp of receptive
        field) | the rest; None when the trunk is not the enformer-pytorch layout (Rearrange,
        stem, conv tower, Rearrange, transformer, crop, final pointwise) or has a layer whose
        receptive field is not known here."""
        from enformer_pytorch.modeling_enformer import GELU, AttentionPool, Residual

        if not isinstance(trunk, nn.Sequential) or len(trunk) != 7:
            return None
        local, rest = trunk[:3], trunk[3:]
        known = (nn.Sequential, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm, GELU, Residual,
                 AttentionPool, nn.Identity, nn.Dropout)
        stride, half_width = 1, 0
        for module in local.modules():
            if type(module).__name__ == "Rearrange":
                continue
            if not isinstance(module, known):
                return None
            if isinstance(module, nn.Conv1d):
                if module.stride[0] != 1 or module.padding[0] != module.dilation[0] * (module.kernel_size[0] // 2):
                    return None
                half_width += module.dilation[0] * (module.kernel_size[0] // 2) * stride
            elif isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
                return None
            elif isinstance(module, AttentionPool):
                half_width += (module.pool_size - 1) * stride
                stride *= module.pool_size
        return TrunkSplit(local, rest, stride, half_width)

    def deeplift_rules(self, model: nn.Module) -> contextlib.AbstractContextManager[dict]:
        return enformer_rules(model)

    # --- description ---------------------------------------------------------------------
    def describe(self, model: nn.Module) -> dict:
        config = model.config.to_dict()
        return {k: v for k, v in config.items()
                if k in ("dim", "depth", "heads", "num_downsamples", "output_heads", "attn_dim_key")}


def _uses_tf_gamma(model: nn.Module) -> bool:
    return any(getattr(m, "use_tf_gamma", False) for m in model.modules() if type(m).__name__ == "Attention")


def needs_code(err: BaseException | None) -> bool:
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


def _seed_stem(model: nn.Module, motifs: list[str]) -> None:
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


def calibrate_batchnorm(model: nn.Module, n_bins: int, num_downsamples: int, batches: int) -> None:
    """BatchNorm running statistics from ``batches`` batches of random DNA at the native input length."""
    length = native_positions(n_bins) * 2**num_downsamples
    base.calibrate_batchnorm(model, lambda dna: model(dna, return_only_embeddings=True), length, batches)


# --- DeepLIFT rules ------------------------------------------------------------------------
# tangermeme attaches DeepLIFT rules to ``torch.nn`` modules. Enformer computes three of its
# non-linear operations as bare function calls, which such a rule cannot see and which would
# be treated as linear (the summation-to-delta property then fails, silently):
# AttentionPool (softmax over each pair of positions, then x * attention summed), Attention
# (einsum(q, k), softmax, einsum(attention, v)) and its own GELU class (x * sigmoid(1.702 x)).
# ``enformer_rules`` swaps each AttentionPool and Attention for a module computing the same
# values with ``torch.nn.Softmax`` (tangermeme's exact softmax rule) and ``BilinearOp`` (the
# midpoint product rule, exact for products), and registers the rescale rule for the GELU.


class _AttentionPoolRule(nn.Module):
    """enformer-pytorch's AttentionPool with a hookable softmax and product."""

    def __init__(self, pool: nn.Module):
        from tangermeme.deep_lift_shap import BilinearOp

        super().__init__()
        self.pool = pool
        self.softmax = nn.Softmax(dim=-1)
        self.product = BilinearOp("...,...->...")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.pool
        b, _, n = x.shape
        remainder = n % pool.pool_size
        if remainder:
            x = nn.functional.pad(x, (0, remainder), value=0)
            mask = nn.functional.pad(torch.zeros((b, 1, n), dtype=torch.bool, device=x.device), (0, remainder),
                                     value=True)
        x = pool.pool_fn(x)
        logits = pool.to_attn_logits(x)
        if remainder:
            logits = logits.masked_fill(pool.pool_fn(mask), -torch.finfo(logits.dtype).max)
        return self.product(x, self.softmax(logits)).sum(dim=-1)


class _AttentionRule(nn.Module):
    """enformer-pytorch's Attention with hookable products and softmax (same parameters)."""

    def __init__(self, attention: nn.Module):
        from tangermeme.deep_lift_shap import BilinearOp

        super().__init__()
        self.attention = attention
        self.content = BilinearOp("b h i d, b h j d -> b h i j")
        self.softmax = nn.Softmax(dim=-1)
        self.mix = BilinearOp("b h i j, b h j d -> b h i d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from enformer_pytorch.modeling_enformer import get_positional_embed, relative_shift

        a = self.attention
        n, h = x.shape[-2], a.heads
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=h) for t in (a.to_q(x), a.to_k(x), a.to_v(x)))
        q = q * a.scale
        content_logits = self.content(q + a.rel_content_bias, k)
        positions = a.pos_dropout(get_positional_embed(n, a.num_rel_pos_features, x.device,
                                                       use_tf_gamma=a.use_tf_gamma, dtype=a.to_rel_k.weight.dtype))
        rel_k = rearrange(a.to_rel_k(positions), "n (h d) -> h n d", h=h)  # does not depend on the input: linear
        rel_logits = relative_shift(torch.einsum("b h i d, h j d -> b h i j", q + a.rel_pos_bias, rel_k))
        attention = a.attn_dropout(self.softmax(content_logits + rel_logits))
        out = rearrange(self.mix(attention, v), "b h n d -> b n (h d)")
        return a.to_out(out)


@contextlib.contextmanager
def enformer_rules(model: nn.Module) -> Iterator[dict]:
    """Within the block, ``model``'s AttentionPool and Attention modules are replaced by their
    rule-carrying twins (same parameters, same outputs); yields the extra rules for
    tangermeme's ``additional_nonlinear_ops``. The model is restored on exit."""
    from enformer_pytorch.modeling_enformer import GELU, Attention, AttentionPool
    from tangermeme.deep_lift_shap import _nonlinear as rescale_rule

    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AttentionPool):
                twin = _AttentionPoolRule(child)
            elif isinstance(child, Attention):
                twin = _AttentionRule(child)
            else:
                continue
            setattr(parent, name, twin)
            swapped.append((parent, name, child))
    try:
        yield {GELU: rescale_rule}
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)

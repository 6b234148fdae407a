"""What adapts when a trunk is fine-tuned.

- ``lora``: low-rank adapters (peft) on the modules the backbone's family names
  (``Family.lora_targets``: attention projections, feed-forward linears and the trunk's
  convolutions, as single-cell Borzoi adaptations do); the trunk's own weights stay frozen.
- ``last:K``: the last K transformer blocks (``Family.blocks``) and the layers after them
  (``Family.after_blocks``; Enformer's final pointwise layers) train.
- ``all``: every trunk weight trains (never the family's own output heads).

BatchNorm running statistics stay frozen in every mode: training them collapses Enformer
fine-tuning (an enformer-pytorch report saw Pearson fall from 0.6 to 0.1).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone.base import Family
from ..errors import InputError


def parse_trainable(text: str) -> tuple[str, int]:
    """'lora' | 'all' | 'last:K' -> (mode, K)."""
    mode, _, k = text.partition(":")
    if mode in ("lora", "all") and not k:
        return mode, 0
    if mode == "last" and k.isdigit() and int(k) > 0:
        return "last", int(k)
    raise InputError(f"--trainable {text!r}: use lora, all or last:K (K transformer blocks, e.g. last:2)")


def adapt(model: nn.Module, family: Family, trainable: str, rank: int = 8, alpha: float = 16.0) -> nn.Module:
    """Freeze the trunk, then open what ``trainable`` says; returns the (possibly peft-wrapped)
    model, whose trunk (``family.trunk``) runs adapted. The family names the LoRA targets, the
    blocks of ``last:K`` and the output heads that never train."""
    mode, k = parse_trainable(trainable)
    for p in model.parameters():
        p.requires_grad_(False)
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=family.lora_targets(model), lora_dropout=0.0)
        model = inject_adapter_in_model(config, model)  # in place: the trunk shares these modules
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    elif mode == "last":
        blocks = family.blocks(model)
        if k > len(blocks):
            raise InputError(f"--trainable last:{k}: the trunk has {len(blocks)} transformer blocks")
        for module in blocks[-k:] + family.after_blocks(model):
            for p in module.parameters():
                p.requires_grad_(True)
    else:
        heads = tuple(family.head_modules(model))
        for name, p in model.named_parameters():
            p.requires_grad_(not (heads and name.startswith(heads)))
    return model


def merge_adapters(enformer: nn.Module) -> nn.Module:
    """The model with LoRA adapters folded into its weights (plain modules again)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(enformer.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = enformer.get_submodule(parent_name) if parent_name else enformer
            setattr(parent, child, module.get_base_layer())
    return enformer


def adapter_state(enformer: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA adapter weights alone (small), by module name."""
    return {name: p.detach().cpu().contiguous() for name, p in enformer.named_parameters() if "lora_" in name}

"""What adapts when a trunk is fine-tuned.

- ``lora``: low-rank adapters (peft) on the attention query and value projections, the
  feed-forward linears and every convolution of the trunk, as single-cell Borzoi adaptations do;
  the trunk's own weights stay frozen.
- ``last:K``: the last K transformer blocks and the final pointwise layers train.
- ``all``: every trunk weight trains.

BatchNorm running statistics stay frozen in every mode: training them collapses Enformer
fine-tuning (an enformer-pytorch report saw Pearson fall from 0.6 to 0.1).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


def parse_trainable(text: str) -> tuple[str, int]:
    """'lora' | 'all' | 'last:K' -> (mode, K)."""
    mode, _, k = text.partition(":")
    if mode in ("lora", "all") and not k:
        return mode, 0
    if mode == "last" and k.isdigit() and int(k) > 0:
        return "last", int(k)
    raise InputError(f"--trainable {text!r}: use lora, all or last:K (K transformer blocks, e.g. last:2)")


def lora_targets(enformer: nn.Module) -> list[str]:
    """Attention q/v projections, feed-forward linears and convolutions of the trunk."""
    names = []
    for name, module in enformer.named_modules():
        if name.startswith("_heads"):
            continue
        if isinstance(module, nn.Conv1d) or name.endswith((".to_q", ".to_v")):
            names.append(name)
        elif isinstance(module, nn.Linear) and ".1.fn." in name and name.startswith("transformer."):
            names.append(name)  # the feed-forward block's two linears
    return names


def adapt(enformer: nn.Module, trainable: str, rank: int = 8, alpha: float = 16.0) -> nn.Module:
    """Freeze the trunk, then open what ``trainable`` says; returns the (possibly peft-wrapped)
    Enformer whose ``.trunk`` runs the adapted trunk."""
    mode, k = parse_trainable(trainable)
    for p in enformer.parameters():
        p.requires_grad_(False)
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora_targets(enformer), lora_dropout=0.0)
        enformer = inject_adapter_in_model(config, enformer)  # in place: the trunk shares these modules
        for name, p in enformer.named_parameters():
            p.requires_grad_("lora_" in name)
    elif mode == "last":
        blocks = enformer.transformer
        if k > len(blocks):
            raise InputError(f"--trainable last:{k}: the trunk has {len(blocks)} transformer blocks")
        for module in list(blocks)[-k:] + [enformer.final_pointwise]:
            for p in module.parameters():
                p.requires_grad_(True)
    else:
        for name, p in enformer.named_parameters():
            p.requires_grad_(not name.startswith("_heads"))
    return enformer


def merge_adapters(enformer: nn.Module) -> nn.Module:
    """The Enformer with LoRA adapters folded into its weights (plain modules again)."""
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

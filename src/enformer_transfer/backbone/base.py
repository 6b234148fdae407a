"""The backbone adapter: everything the tool needs to know of one family of pretrained models.

One subclass of ``Family`` per family, one file each (``enformer.py``, ``borzoi.py``,
``alphagenome.py``); ``families.py`` lists them. No module outside ``backbone/`` imports a
backbone package or names its modules: stages ask the family. Adding a fourth family is one
new file (a ``Family`` subclass) plus its tests.

Conventions every family keeps:

- The *model* is the package's own ``nn.Module`` (``enformer_pytorch.Enformer``,
  ``borzoi_pytorch.Borzoi``, ``alphagenome_pt.AlphaGenome``), in eval mode.
- The *trunk* (``Family.trunk``) is an ``nn.Module`` sharing the model's parameters that maps
  a one-hot batch ``(B, L, 4)`` float (A, C, G, T) to embeddings ``(B, n_bins, dim)``: the
  representation the family's own output heads read, centre-cropped to the dataset's bins.
  Adapting the model (LoRA, unfreezing) adapts the trunk.
- A backbone folder is what ``Family.init`` writes and ``Family.load`` reads: ``config.json``
  (with the family's marker, see ``Family.detects``) and the weights (safetensors, or a
  ``.bin`` loaded with ``weights_only=True``). Weights never run code; nothing is downloaded
  unless the user passes ``--allow-download``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import InputError


@dataclass(frozen=True)
class BackboneGeometry:
    """The numbers a dataset must match: input bp, bp per output bin, the bins the family
    predicts by default, and the channels per bin of the stored embedding."""

    seq_length: int
    bin_size: int
    target_bins: int
    embedding_dim: int


@dataclass(frozen=True)
class TrunkSplit:
    """A trunk cut where positions start to mix (for exact input gradients and ISM):
    ``local`` maps one-hot (B, L, 4) -> (B, channels, L / stride) with a receptive field of
    ``half_width`` bp on each side; ``rest`` maps that to embeddings (B, bins, dim)."""

    local: nn.Module
    rest: nn.Module
    stride: int
    half_width: int  # bp on each side of a local output position that can change it

    def crop(self, start: int, end: int, length: int) -> tuple[int, int]:
        """Input positions [a, b) around the window [start, end) whose local outputs are exact
        (as in the whole input) wherever the window can change them: twice the receptive
        field on each side, on the pooling grid, clipped to the input (whose edges the whole
        input shares)."""
        margin = 2 * self.half_width + self.stride
        a = max(0, (start - margin) // self.stride * self.stride)
        b = min(length, -(-(end + margin) // self.stride) * self.stride)
        return a, b

    def affected(self, start: int, end: int, length: int) -> tuple[int, int]:
        """Local output positions [p, q) that a change inside [start, end) can change."""
        p = max(0, (start - self.half_width) // self.stride)
        q = min(length // self.stride, -(-(end + self.half_width) // self.stride))
        return p, q


class Family(ABC):
    """One backbone family. Subclasses are stateless: every method takes the model."""

    kind: ClassVar[str]  # "enformer" | "borzoi" | "flashzoi" | "alphagenome"
    display_name: ClassVar[str] = ""  # how messages name it ("Enformer"); the kind when empty
    package: ClassVar[str]  # the distribution that implements it, e.g. "enformer-pytorch"
    presets: ClassVar[tuple[str, ...]] = ("tiny", "full")
    exact_deeplift: ClassVar[bool] = False  # deeplift_rules gives exact rules (checked when a stage is planned)
    weights_hint: ClassVar[str] = ""  # where the published weights are, how big, under what licence
    load_options: ClassVar[tuple[str, ...]] = ()  # keyword options ``load`` takes beyond source (e.g. "tf_gamma")

    # --- folders -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def detects(cls, folder: Path) -> bool:
        """True when ``folder`` (a directory with config.json) holds a backbone of this family."""

    @abstractmethod
    def init(self, out: Path, preset: str = "tiny", seed: int = 0, **options) -> Path:
        """Write a randomly initialised backbone folder (``preset`` tiny: small and fast on a
        CPU, for tests and demos; full: the published architecture) that ``load`` reads."""

    @abstractmethod
    def load(self, source: str, **options) -> nn.Module:
        """The model from a local folder (or a hub name, the caller having checked that
        downloads are allowed), in eval mode. InputError for an unreadable folder,
        IntegrityError for weights that would run code."""

    @abstractmethod
    def save(self, model: nn.Module, folder: Path) -> None:
        """Write ``model`` (e.g. a fine-tuned trunk, adapters merged) into ``folder`` (created when
        absent; other files left alone) so that ``load`` reads it. Not atomic: callers write into
        a partial folder (``fs.atomic_folder``) and rename it."""

    # --- geometry and forward ------------------------------------------------------------
    @abstractmethod
    def geometry(self, model: nn.Module) -> BackboneGeometry:
        """The model's native input length, bin size, default bins and embedding width."""

    def check_geometry(self, model: nn.Module, seq_length: int, bin_size: int, n_bins: int, source: str) -> None:
        """Refuse, in one line naming the numbers and the ``dataset`` flags that fix them, a
        dataset whose windows this model cannot embed. The default: the bin sizes agree,
        the input is a whole number of bins, and the bins crop symmetrically."""
        g = self.geometry(model)
        if bin_size != g.bin_size:
            raise InputError(
                f"backbone {source} ({self.kind}) has {g.bin_size}-bp bins but the dataset's bin_size is {bin_size}; "
                f"rebuild the dataset with --bin-size {g.bin_size} --seq-length {g.seq_length} "
                f"--n-bins {g.target_bins} (or use a matching backbone)")
        if seq_length % bin_size:
            raise InputError(f"backbone {source} ({self.kind}): seq_length {seq_length} is not a multiple of its "
                             f"{bin_size}-bp bins; rebuild the dataset with --seq-length {g.seq_length}")
        positions = seq_length // bin_size
        if n_bins > positions or (positions - n_bins) % 2:
            raise InputError(f"backbone {source} ({self.kind}): {positions} output positions cannot be cropped "
                             f"symmetrically to {n_bins} bins; rebuild the dataset with --seq-length {g.seq_length} "
                             f"--n-bins {g.target_bins}")

    @abstractmethod
    def trunk(self, model: nn.Module, n_bins: int) -> nn.Module:
        """One-hot (B, L, 4) -> embeddings (B, n_bins, dim), sharing ``model``'s parameters."""

    def output_head(self, model: nn.Module) -> nn.Module | None:
        """Embeddings (B, bins, dim) -> the backbone's own tracks (B, bins, tracks), non-negative,
        for the zero-shot baseline; None when the model has no output head."""
        return None

    def output_tracks(self, model: nn.Module) -> int:
        """How many tracks ``output_head`` predicts (0 without one). The default runs the head
        on one bin of zeros; a family that knows the number from its config says it directly."""
        head = self.output_head(model)
        if head is None:
            return 0
        import torch

        parameter = next(head.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        with torch.no_grad():
            return int(head(torch.zeros(1, 1, self.geometry(model).embedding_dim, device=device)).shape[-1])

    def output_weights(self, model: nn.Module):
        """The own head's linear weights (tracks, dim) as a tensor, or None (weight similarity)."""
        return None

    # --- fine-tuning ---------------------------------------------------------------------
    @abstractmethod
    def lora_targets(self, model: nn.Module) -> list[str]:
        """Module names (in ``model``) that get LoRA adapters: attention projections,
        feed-forward linears and the trunk's convolutions; never the output heads."""

    @abstractmethod
    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The trunk's transformer blocks, in order (``--trainable last:K`` opens the last K)."""

    def after_blocks(self, model: nn.Module) -> list[nn.Module]:
        """Trunk layers after the last block (they train with ``last:K``)."""
        return []

    def head_modules(self, model: nn.Module) -> list[str]:
        """Name prefixes of the model's own output heads (never trained, never adapted)."""
        return []

    def checkpoint_segments(self, trunk: nn.Module) -> list[nn.Module] | None:
        """The trunk as a sequence of modules applied one after another (activation
        checkpointing keeps only their boundaries), or None to checkpoint the trunk whole."""
        return None

    # --- attribution ---------------------------------------------------------------------
    def split(self, trunk: nn.Module) -> TrunkSplit | None:
        """Where the trunk's positions start to mix, or None (exact ISM / gradients then run whole)."""
        return None

    def deeplift_rules(self, model: nn.Module) -> contextlib.AbstractContextManager[dict] | None:
        """A context manager in which ``model`` carries DeepLIFT rules; yields tangermeme's
        ``additional_nonlinear_ops``. None when the family has no exact rules (DeepLIFT/SHAP
        is then refused, naming grad-input and ISM)."""
        return None

    # --- description ---------------------------------------------------------------------
    def describe(self, model: nn.Module) -> dict:
        """Facts for ``backbone info`` beyond the geometry (e.g. depth, heads, own tracks)."""
        return {}


def calibrate_batchnorm(model: nn.Module, forward: Callable[[torch.Tensor], object], length: int, batches: int,
                        generator: torch.Generator | None = None) -> None:
    """A data-dependent initialisation for a random backbone, whose activations otherwise
    collapse: every BatchNorm's running statistics become the cumulative average over
    ``batches`` batches of two random one-hot sequences (B, ``length``, 4) passed to ``forward``
    (the family's forward through every BatchNorm); the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    with torch.no_grad():
        for _ in range(batches):
            forward(nn.functional.one_hot(torch.randint(0, 4, (2, length), generator=generator), 4).float())
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


@contextlib.contextmanager
def no_rules() -> Iterator[dict]:
    yield {}

"""enformer-transfer: teach a pretrained Enformer new genomic tracks.

Public API (mirrors the CLI): ``Run`` reads a run directory; ``build_dataset``,
``run_pipeline``, ``run_demo`` run stages; ``RunConfig`` / ``load_config`` configure them.
"""

from ._version import __version__
from .config import DatasetConfig, Geometry, RunConfig, load_config
from .data.build import build_dataset, plan_dataset
from .data.targets_table import build_targets_table, read_targets_table
from .errors import EnformerTransferError, InputError, StaleStageError
from .pipeline import run_demo, run_pipeline
from .run import Run

__all__ = [
    "DatasetConfig",
    "EnformerTransferError",
    "Geometry",
    "InputError",
    "Run",
    "RunConfig",
    "StaleStageError",
    "__version__",
    "build_dataset",
    "build_targets_table",
    "load_config",
    "plan_dataset",
    "read_targets_table",
    "run_demo",
    "run_pipeline",
]

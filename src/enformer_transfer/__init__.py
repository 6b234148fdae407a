"""enformer-transfer: teach a pretrained Enformer new genomic tracks.

Public API (mirrors the CLI): ``Run`` reads a run directory; ``build_dataset``, ``embed_run``,
``train_head``, ``evaluate_head``, ``write_report``, ``predict_regions``, ``weight_similarity``,
``run_pipeline`` and ``run_demo`` run stages; ``RunConfig`` / ``load_config`` configure them.
Names are imported on first use, so worker processes and ``--help`` start fast.
"""

from __future__ import annotations

import importlib

from ._version import __version__

_EXPORTS = {
    "DatasetConfig": ".config",
    "Geometry": ".config",
    "RunConfig": ".config",
    "load_config": ".config",
    "build_dataset": ".data.build",
    "plan_dataset": ".data.build",
    "build_targets_table": ".data.targets_table",
    "read_targets_table": ".data.targets_table",
    "EnformerTransferError": ".errors",
    "InputError": ".errors",
    "StaleStageError": ".errors",
    "embed_run": ".backbone.embed",
    "init_backbone": ".backbone.load",
    "train_head": ".heads.train",
    "evaluate_head": ".evaluation.evaluate",
    "predict_regions": ".evaluation.predict",
    "weight_similarity": ".evaluation.weights",
    "write_report": ".report.html",
    "run_demo": ".pipeline",
    "run_pipeline": ".pipeline",
    "Run": ".run",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'enformer_transfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

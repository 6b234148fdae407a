"""enformer-transfer: teach a pretrained Enformer new genomic tracks.

The public API follows the workflow and the command line: ``fetch`` and ``make_targets_table``
prepare tracks (``pseudobulk`` makes them from single-cell fragments); each stage of a run is one
function taking a ``RunConfig`` (or a run directory, whose config.toml it uses): ``dataset``,
``embed``, ``train``, ``evaluate``, ``predict``, ``weights``, ``dar``, ``variants``, ``call_dars``,
``contributions``, ``motifs``, ``report`` (the list: ``stages.STAGES``); ``run_pipeline`` runs them in
order and ``run_demo`` on synthetic data. ``Run`` reads a run directory. Names are imported on first
use, so worker processes and ``--help`` start fast.
"""

from __future__ import annotations

import importlib

from . import devices as _devices
from ._version import __version__
from .stages import public_names

_devices.exit_with_spawning_parent()  # in a spawned worker, nothing of ours runs earlier

_EXPORTS = {
    # configuration
    "RunConfig": ".config", "Geometry": ".config", "DatasetConfig": ".config", "load_config": ".config",
    "as_config": ".config",
    # errors
    "EnformerTransferError": ".errors", "InputError": ".errors", "StaleStageError": ".errors",
    "IntegrityError": ".errors",
    # tracks
    "fetch": ".data.fetch", "make_targets_table": ".targets.table",
    "build_targets_table": ".targets.table", "read_targets_table": ".targets.table",
    "init_backbone": ".backbone.load", "backbone_info": ".backbone.info", "get_family": ".backbone.families",
    # genes (a GTF's genes; ``evaluate`` scores them with ``config.evaluate.genes``)
    "read_genes": ".genes.gtf", "place_genes": ".genes.gtf",
    # stages, by their descriptive and their command names (the registry: stages/__init__.py)
    **public_names(),
    "run_pipeline": ".pipeline", "run_demo": ".pipeline",
    # reading results
    "Run": ".results", "SequenceModel": ".backbone.model", "load_sequence_model": ".backbone.model",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
        value = getattr(importlib.import_module(module, __name__), attribute)
        globals()[name] = value
        return value
    try:  # a submodule, as ``enformer_transfer.run`` after any import of it (the moved names: aliases)
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'enformer_transfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

"""Every stage of a run, in pipeline order: the one list that the command line, the public API,
the pipeline and the contract test read.

A stage is one module here, ``stages/MODULE.py``, holding its plan (every input checked before
any work), its key (what its result depends on) and the ``run_stage`` call; the science it runs
is in the library packages (``data``, ``backbone``, ``heads``, ``evaluation``, ``interpret``,
``finetune``, ``report``). Adding a stage: its module, one line below, its config section.
Modules are imported on first use, so ``--help`` and worker processes start fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..rundir.layout import PRETRAINED_BACKBONE


@dataclass(frozen=True)
class Stage:
    """One stage: its command, the config sections its flags and settings come from, its entry
    function (``stages.MODULE.FUNCTION``), the group the top-level help lists it in, and the
    run-directory folder it builds (None: it builds none; ``check`` reads, ``pseudobulk`` writes
    outside any run)."""

    command: str  # the words after ``enformer-transfer``
    module: str
    function: str
    sections: tuple[str, ...]
    group: str
    folder: str | None
    help: str
    args: str = "run_dir"  # its command's arguments: RUN_DIR, --out RUN_DIR ("out", it creates it) or its "own"
    # a run has many of it (heads, evaluations, analyses, each by name): a command on a run starts its
    # sections from their defaults, never from the previous such command's settings in RUN_DIR/config.toml
    # (train --head b must not inherit --tracks-where of train --head a)
    per_command: bool = False
    api: tuple[str, ...] = ()  # public API names for the entry function (besides ``function``, when public)
    public: bool = True  # ``function`` is a name of the public API
    more: tuple[str, ...] = ()  # other public names the stage module hands on

    @property
    def name(self) -> str:
        return self.module

    def load(self) -> Callable:
        """The entry function, ``function(config, force=False, progress=True)`` for most stages."""
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), self.function)


STAGES = (
    # command, module, entry function, config sections, help group, run-directory folder, help
    Stage("pseudobulk", "pseudobulk", "pseudobulk", ("pseudobulk", "targets"), "data", None,
          "single-cell fragment files + a cells table -> one BigWig per cell type at each level and a targets table",
          args="own"),
    Stage("dataset", "dataset", "build_dataset", ("geometry", "dataset"), "data", "dataset",
          "BigWigs + genome + windows -> binned targets in RUN_DIR/dataset",
          args="out", api=("dataset",), more=("plan_dataset",)),
    Stage("tfrecords import", "tfrecords_import", "import_tfrecords", ("geometry", "dataset"), "data", "dataset",
          "a run's dataset from Basenji TFRecords (statistics.json, sequences.bed, targets.txt)",
          args="own", public=False),
    Stage("backbone pretrain", "pretrain", "pretrain_backbone", ("pretrain",), "model", PRETRAINED_BACKBONE,
          "train a small Enformer from random weights on a run's tracks -> a backbone folder",
          public=False, per_command=True),
    Stage("embed", "embed", "embed_run", ("embed",), "model", "embeddings",
          "the backbone's trunk over every window -> RUN_DIR/embeddings",
          api=("embed",)),
    Stage("train", "train", "train_head", ("train",), "model", "heads",
          "train a head on the stored embeddings -> RUN_DIR/heads/NAME",
          api=("train",), per_command=True),
    Stage("finetune", "finetune", "finetune", ("finetune",), "model", "heads",
          "fine-tune trunk + head from sequence, starting from a trained head -> RUN_DIR/heads/NAME",
          public=False, per_command=True),
    Stage("evaluate", "evaluate", "evaluate_head", ("evaluate",), "results", "evaluation",
          "predict every window of each split with a head and score it -> RUN_DIR/evaluation/NAME",
          api=("evaluate",), per_command=True),
    Stage("report", "report", "write_report", ("report",), "results", "report",
          "one self-contained HTML report of the run",
          api=("report",), per_command=True),
    Stage("predict", "predict", "predict", ("predict",), "results", "predictions",
          "predictions of a head as BigWigs (regions, chromosomes) or a table (FASTA)",
          per_command=True),
    Stage("weights", "weights", "weight_similarity", ("weights",), "results", "weights",
          "compare a head's weights with the backbone's own output tracks",
          api=("weights",), per_command=True),
    Stage("dar", "dar", "dar_analysis", ("dar",), "results", "dar",
          "do predictions recover differentially accessible regions between cell types?",
          api=("dar",), per_command=True),
    Stage("call-dars", "call_dars", "call_dars", ("call_dars",), "results", "called-dars",
          "cell-type-specific regions from the run's own tracks (observed or predicted) -> RUN_DIR/called-dars/NAME",
          per_command=True),
    Stage("variants", "variants", "variants", ("variants",), "results", "variants",
          "score variants of a VCF in every track of a head, per cell type -> RUN_DIR/variants/NAME",
          more=("score_variants",), per_command=True),
    Stage("contributions", "contributions", "contributions", ("contributions",), "results", "contributions",
          "which bases drive each track: contributions per region (grad-input, ism, deepliftshap)",
          per_command=True),
    Stage("motifs", "motifs", "motifs", ("motifs",), "results", "motifs",
          "TF-MoDISco patterns per track or contrast, matched to JASPAR -> RUN_DIR/motifs/NAME",
          per_command=True),
    Stage("check", "check", "check_command", (), "all at once", None,
          "verify every store and record of a run; report what is damaged",
          args="own", public=False),
)

BY_COMMAND = {stage.command: stage for stage in STAGES}
PER_COMMAND_SECTIONS = tuple(section for stage in STAGES if stage.per_command for section in stage.sections)
BY_NAME = {stage.name: stage for stage in STAGES}


def stage(name: str) -> Stage:
    """The stage of module (or command) ``name``."""
    return BY_NAME.get(name) or BY_COMMAND[name]


def entry(name: str) -> Callable:
    """The entry function of stage ``name``."""
    return stage(name).load()


def public_names() -> dict[str, tuple[str, str]]:
    """The public API's stage names: name -> (module, attribute), relative to the package."""
    out = {}
    for s in STAGES:
        module = f".stages.{s.module}"
        names = ((s.function,) if s.public else ()) + s.api
        out.update({name: (module, s.function) for name in names})
        out.update({name: (module, name) for name in s.more})
    return out

"""Stage evaluate: predict every window of each split with a head and score it ->
RUN_DIR/evaluation/NAME (``evaluation.evaluate``)."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.evaluate import EvaluationPlan, build_evaluation, plan_evaluation
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import EvaluationFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def evaluate_head(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Predict and score head ``config.evaluate.head`` on its splits (default: test and valid)."""
    config = as_config(config)
    plan = plan_evaluation(config)
    folder = plan.run.layout.evaluation(plan.settings.head).path
    return run_stage(folder, evaluation_key(plan), lambda work, state: build_evaluation(plan, EvaluationFolder(work), progress),
                     config, ("evaluate",), force=force, what=f"evaluate {plan.settings.head!r}", run=plan.run)


def evaluation_key(plan: EvaluationPlan) -> dict:
    """Everything the evaluation reads: the head, the targets, the baselines' inputs."""
    run, e = plan.run, plan.settings
    regions = [file_fingerprint(r) if Path(r).is_file() else r for r in e.plot_regions]
    key = {
        "head": run.head_record(e.head).digest,
        "dataset": run.dataset_record.digest,
        "embeddings": run.embeddings_record.digest,
        "splits": plan.splits,
        "plot_regions": regions,
        "ridge": run.head_record(plan.ridge).digest if plan.ridge else None,
        "compare_run": file_fingerprint(plan.compare) if plan.compare else None,
        "enformer_targets": file_fingerprint(e.enformer_targets) if e.enformer_targets else None,
    }
    if not e.figures:  # a result without its figures is another result (recorded only when off)
        key["figures"] = False
    if e.genes is not None:  # the GTF's content, so an edited GTF makes the evaluation stale
        key["genes"] = {"gtf": file_fingerprint(e.genes), "gene_types": e.gene_types, "gene_signal": e.gene_signal,
                        "tss_bins": e.tss_bins, "split": plan.genes_split,
                        "compare_run": file_fingerprint(plan.compare_genes) if plan.compare_genes else None}
    return key

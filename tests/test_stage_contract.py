"""The stage contract (docs/stages.md) and the structure that keeps it: one layout module, typed
access through Run, no import cycle; and the regressions it fixed (stale keys, relative paths,
stages that wrote no record)."""

import ast
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from _provenance import reseal

from enformer_transfer import Run, load_config
from enformer_transfer.cli import main
from enformer_transfer.config import validate_config
from enformer_transfer.stages import STAGES

SRC = Path(__file__).resolve().parents[1] / "src" / "enformer_transfer"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (path, ast.parse(path.read_text()))
    return out


def _imports(name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """Modules of the package that ``name`` imports (at any depth of its code)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            if target and target.startswith("enformer_transfer"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("enformer_transfer")}
    return found


def test_no_import_cycle():
    modules = _modules()
    graph = {n: {m for m in _imports(n, t, p.name == "__init__.py") if m in modules and m != n}
             for n, (p, t) in modules.items()}
    graph = {n: {m for m in deps if not modules[m][0].name == "__init__.py"} for n, deps in graph.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_private_name_imported_across_modules():
    offenders = []
    for path, tree in _modules().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                offenders += [f"{path.name}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_only_layout_names_run_directory_files():
    """File names of a run directory are spelled in layout.py alone; stage records are read
    through Run, never by hand."""
    layout = ast.parse((SRC / "rundir" / "layout.py").read_text())
    names = {n.value for n in ast.walk(layout) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and ("." in n.value or n.value in ("heads", "evaluation", "predictions", "weights", "dar", "report",
                                                "dataset", "embeddings", "progress", "figures", "checkpoints"))
             and " " not in n.value and len(n.value) > 2}
    offenders = []
    for path, tree in _modules().values():
        if path.name == "layout.py":
            continue
        for node in ast.walk(tree):
            # path / "name": a folder or file of a run directory joined by hand
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                    and node.right.value in names:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} / {node.right.value!r}")
            if isinstance(node, ast.Constant) and node.value in ("stage.json", "config.toml", "report.html"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr == "read" and isinstance(node.value, ast.Name) \
                    and node.value.id == "StageRecord" and path.name not in ("run.py", "provenance.py", "check.py"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} StageRecord.read")
    assert offenders == []


def test_every_stage_goes_through_run_stage():
    """Every stage of the registry that builds a run-directory folder does it through run_stage,
    in its own module of stages/; the registry is the one list of stages (cli, API, pipeline)."""
    assert {path.stem for path in (SRC / "stages").glob("*.py")} == {s.module for s in STAGES} | {"__init__"}
    for stage in STAGES:
        assert callable(stage.load()), stage.command
        if stage.folder is not None:
            assert "run_stage(" in (SRC / "stages" / f"{stage.module}.py").read_text(), stage.command


def test_old_spellings_of_renamed_settings_are_accepted():
    config = validate_config({"embed": {"store_backbone_heads": True}, "train": {"precision": "16-mixed"}})
    assert config.embed.store_backbone_outputs is True and config.train.precision == "fp16"
    assert validate_config({"train": {"precision": "bf16-mixed"}}).train.precision == "bf16"


# --- regressions ------------------------------------------------------------------------

def _copy(demo_run, tmp_path, *skip):
    return shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(*skip))


@pytest.mark.slow
def test_paths_mean_the_same_file_after_any_number_of_commands_from_any_directory(synthetic, tmp_path,
                                                                                   monkeypatch, capsys):
    from enformer_transfer.backbone.load import init_backbone

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for path in (synthetic.genome, synthetic.targets, synthetic.windows):
        shutil.copy(path, project / "data" / path.name)
    init_backbone(project / "bb", dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=64, human_tracks=8,
                  calibrate_batches=0)
    monkeypatch.chdir(project)
    assert main(["dataset", "--out", "runs/p", "--genome", "data/genome.fa", "--targets", "data/targets.tsv",
                 "--windows", "data/windows.bed", "--seq-length", "16384", "--n-bins", "64", "--workers", "1",
                 "--quiet"]) == 0
    # another folder holding a different data/genome.fa: a later stage must not read it
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "genome.fa").write_text(">chr1\n" + "ACGT" * 1000 + "\n")
    monkeypatch.chdir(elsewhere)
    run_dir = project / "runs" / "p"
    assert main(["run", str(run_dir / "config.toml"), "--quiet"]) == 0  # the snapshot runs as a config
    assert main(["embed", str(run_dir), "--backbone", str(project / "bb"), "--loader-workers", "0",
                 "--splits", "test", "--quiet"]) == 0
    for _ in range(3):
        assert main(["embed", str(run_dir), "--quiet"]) == 0  # up to date
    snapshot = load_config(run_dir / "config.toml")
    assert snapshot.dataset.genome == project / "data" / "genome.fa"
    assert snapshot.embed.backbone == str(project / "bb") and snapshot.run_dir == run_dir
    assert Run(run_dir).embed_config.backbone == str(project / "bb")
    # a genome edited after the dataset recorded it is refused by every later stage
    genome = project / "data" / "genome.fa"
    text = genome.read_text()
    genome.write_text(text[:200] + ("A" if text[200] != "A" else "C") + text[201:])
    capsys.readouterr()
    assert main(["embed", str(run_dir), "--force", "--quiet"]) == 2
    assert "changed since an earlier stage recorded it" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluation_is_stale_when_its_ridge_baseline_or_compare_run_changes(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path, "dar", "report")
    # the demo evaluated it with --compare-run (its random-backbone run): without it, it must be redone
    assert main(["evaluate", str(run_dir), "--head", "default", "--quiet"]) == 2
    assert "compare_run" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--head", "default", "--force", "--quiet"]) == 0
    assert main(["evaluate", str(run_dir), "--head", "default", "--quiet"]) == 0  # up to date
    assert main(["train", str(run_dir), "--head", "ridge", "--model", "ridge", "--ridge-lambdas", "10.0",
                 "--force", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--head", "default", "--quiet"]) == 2
    assert "ridge changed" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--head", "default", "--force", "--quiet"]) == 0
    # the same with another run to compare with: its result changing makes ours stale
    other = shutil.copytree(run_dir, tmp_path / "other")
    assert main(["evaluate", str(run_dir), "--head", "default", "--compare-run", str(other), "--force",
                 "--quiet"]) == 0
    assert main(["evaluate", str(other), "--head", "default", "--splits", "test", "--force", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--head", "default", "--compare-run", str(other), "--quiet"]) == 2
    assert "compare_run" in capsys.readouterr().err


def test_enformer_targets_without_stored_backbone_outputs_is_refused(demo_run, tmp_path, capsys):
    run_dir = _copy(demo_run, tmp_path, "backbone_outputs.zarr", "dar", "report")
    reseal(run_dir / "embeddings")  # as if embedded without --store-backbone-outputs
    assert main(["train", str(run_dir), "--head", "r", "--model", "ridge", "--quiet"]) == 0
    names = tmp_path / "targets_human.txt"
    names.write_text("index\tidentifier\tdescription\n" + "".join(f"{i}\tt{i}\tDNASE:x\n" for i in range(32)))
    assert main(["evaluate", str(run_dir), "--head", "r", "--enformer-targets", str(names), "--force"]) == 2
    err = capsys.readouterr().err
    assert "--store-backbone-outputs" in err and f"enformer-transfer embed {run_dir}" in err


def test_report_with_a_head_on_a_subset_of_tracks(demo_run, tmp_path):
    """A head of the three Class tracks has no grouping column: its per-level table is empty
    (with its header) and the report renders it."""
    run_dir = _copy(demo_run, tmp_path, "dar", "report")
    assert main(["train", str(run_dir), "--head", "class", "--tracks-where", "level == 'Class'", "--model", "ridge",
                 "--quiet"]) == 0
    assert main(["evaluate", str(run_dir), "--head", "class", "--quiet"]) == 0
    per_level = Run(run_dir).evaluation("class").per_level
    assert len(per_level) == 0 and {"split", "grouping", "group", "pearson_mean"} <= set(per_level.columns)
    assert main(["report", str(run_dir), "--quiet"]) == 0
    html = (run_dir / "report" / "report.html").read_text()
    assert "<h2>Head class</h2>" in html and "no grouping column" in html


def test_dar_and_weights_are_stages_and_an_interrupted_one_looks_unfinished(demo_run, tmp_path, monkeypatch):
    from enformer_transfer import as_config, dar_analysis
    from enformer_transfer.plots import figures

    run_dir = _copy(demo_run, tmp_path, "dar", "report")
    assert main(["weights", str(run_dir), "--head", "default", "--quiet"]) == 0
    assert json.loads((run_dir / "weights" / "default" / "stage.json").read_text())["stage"] == "default"
    config = as_config(demo_run)  # the demo's DAR settings
    config.run_dir = run_dir

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted while drawing")

    monkeypatch.setattr(figures, "dar_figures", broken)
    with pytest.raises(RuntimeError):
        dar_analysis(config, progress=False)
    assert not (run_dir / "dar" / "default").exists()  # nothing that looks complete
    assert (run_dir / "dar" / "default.partial" / "summary.json").is_file()
    monkeypatch.undo()
    dar_analysis(config, progress=False)
    dar = Run(run_dir).dar("default")
    assert dar.record.key["regions"]["path"].endswith("dar_subclass.csv") and dar.summary["regions"] > 50
    assert len(pd.read_csv(dar.folder.regions)) == dar.summary["regions"]


def test_reference_page_is_generated_from_the_code():
    """docs/reference.md lists every config key and run-directory file; it is regenerated with
    `python -m enformer_transfer.reference_doc > docs/reference.md` whenever they change."""
    from enformer_transfer.reference_doc import render

    committed = (SRC.parents[1] / "docs" / "reference.md").read_text()
    assert committed == render(), "docs/reference.md is stale: regenerate it (see its first lines)"

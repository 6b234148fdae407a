"""The direction of every import (DEVELOPERS.md, Layout): the command line and the pipeline use
the stages, the stages the library packages, these the run directory, the genome and the data
primitives; nothing imports a layer above its own, nor, among the library packages, a peer.
Read from the source with ``ast`` (imports inside functions too), package by package, so a loop
between packages that no single pair of files closes is caught as well."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "enformer_transfer"

# bottom first; a module belongs to the layer of its longest prefix here ("" = the package itself)
LAYERS = (
    ("primitives", ("_version", "errors", "devices", "console", "progress", "metrics", "fs", "genome", "genes", "targets")),
    ("run directory", ("rundir", "layout", "provenance", "config", "stage", "run")),  # the last five: old names
    ("plots", ("plots",)),
    ("data", ("data",)),
    ("backbone", ("backbone",)),
    ("heads", ("heads",)),
    ("results", ("results",)),  # Run: a run directory with its heads and backbone
    ("science", ("evaluation", "interpret", "finetune")),
    ("report", ("report",)),
    ("stages", ("stages",)),
    ("face", ("cli", "pipeline", "synthetic", "reference_doc", "")),
)
# layers whose members may import each other; in the others a module imports its own package
# and lower layers only (evaluation, interpret and finetune are peers: none uses another)
OPEN = {"primitives", "run directory", "stages", "face"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package (relative names) that module ``name`` imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = ".".join(p for p in (base, node.module or "") if p)
            elif (node.module or "").split(".")[0] == "enformer_transfer":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "enformer_transfer"}
    return {m for m in found if m in modules and m != name}


def _place(name: str) -> tuple[int | None, str]:
    """(layer, unit) of a module; the unit is its package (a top-level module is its own)."""
    best, found = None, (None, "")
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".") or prefix == "") and len(prefix) > (best or -1):
                best, found = len(prefix), (index, prefix if "." in prefix else name.split(".")[0])
    return found


def _layer(name: str) -> int | None:
    return _place(name)[0]


def _package(name: str) -> str:
    return _place(name)[1]


def test_every_module_has_a_layer():
    assert [n for n in _modules() if _layer(n) is None] == []


def test_no_import_runs_up_or_across():
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            mine, theirs = _layer(name), _layer(target)
            same = LAYERS[mine][0] in OPEN or _package(name) == _package(target)
            if theirs > mine or (theirs == mine and not same):
                offenders.append(f"{name or 'enformer_transfer'} -> {target} "
                                 f"({LAYERS[mine][0]} -> {LAYERS[theirs][0]})")
    assert sorted(offenders) == []


def test_no_loop_between_packages():
    """Package level: no two packages (or top-level modules) import each other, at any distance."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.setdefault(_package(name), set()).update(
            _package(t) for t in _imports(name, path, modules) if _package(t) != _package(name))
    graph.pop("", None)  # the package's own face hands every name on
    for package in graph:
        seen, todo = set(), list(graph[package])
        while todo:
            other = todo.pop()
            if other not in seen:
                seen.add(other)
                todo += graph.get(other, ())
        assert package not in seen, f"{package} reaches itself through {sorted(seen)}"


def _strings(path: Path) -> set[str]:
    """Every string constant of a module (f-string parts too), docstrings aside."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def test_run_directory_names_only_in_layout():
    """rundir/layout.py spells every file name of a run directory and of a backbone folder, and
    the default backbone folder of ``backbone pretrain``; no other module repeats one of them.
    (The top-level folder names, 'dataset', 'heads', ..., are also words of the command line.)"""
    layout = SRC / "rundir" / "layout.py"
    names = {s for s in _strings(layout)
             if s[:1].isalnum() and " " not in s and "{" not in s and "/" not in s and "." in s}
    names.add("pretrained-backbone")
    assert {"pretrained-backbone", "pretrain.json", "track_change.json", "index.json", "stage.json"} <= names
    offenders = sorted(f"{path.relative_to(SRC)}: {s!r}" for path in SRC.rglob("*.py") if path != layout
                       for s in _strings(path) & names)
    assert offenders == []


MODEL_PACKAGES = ("enformer_pytorch", "borzoi_pytorch", "alphagenome_pt")


def test_only_backbone_modules_import_a_model_package():
    """One adapter per backbone family (backbone/base.py): no module outside backbone/ imports
    enformer-pytorch, borzoi-pytorch or alphagenome-pt (imports inside functions too)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).parts[0] == "backbone":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(SRC)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in MODEL_PACKAGES]
    assert offenders == []

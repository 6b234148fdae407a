"""Test helper: seal a stage folder's current files into its stage.json, as the stage does when it
finishes. Tests that set up a situation by editing a finished stage (a head made to copy backbone
rows, a store left out to save disk) use it; a hand edit is otherwise refused (test_provenance)."""

import json
from pathlib import Path

from enformer_transfer.provenance import output_digests, record_digest


def reseal(folder: Path) -> None:
    """Record ``folder``'s files (and the chunk checksums of the stores still there) in its
    stage.json, with a new digest."""
    folder = Path(folder)
    sums_path = folder / "checksums.json"
    if sums_path.is_file():
        sums = json.loads(sums_path.read_text())
        kept = {name: v for name, v in sums.items() if (folder / name).is_dir()}
        sums_path.write_text(json.dumps(kept))
    record = json.loads((folder / "stage.json").read_text())
    record["outputs"] = output_digests(folder)
    record["digest"] = record_digest(record)
    (folder / "stage.json").write_text(json.dumps(record))


def reseal_run(run_dir: Path) -> None:
    """Reseal every stage of a run, upstream first, each consumer recording its upstream's new
    digest: a run set up by editing one stage's record, as if built so."""
    run_dir = Path(run_dir)
    records = {f.parent.relative_to(run_dir).as_posix(): f.parent for f in run_dir.rglob("stage.json")}
    done: dict[str, str] = {}
    while len(done) < len(records):
        ready = [rel for rel, folder in records.items() if rel not in done and all(
            up in done for up in json.loads((folder / "stage.json").read_text()).get("upstream", {}))]
        assert ready, "a cycle among the stage records"
        for rel in ready:
            path = records[rel] / "stage.json"
            record = json.loads(path.read_text())
            record["upstream"] = {up: done[up] for up in record.get("upstream", {})}
            path.write_text(json.dumps(record))
            reseal(records[rel])
            done[rel] = json.loads(path.read_text())["digest"]


def copy_run(demo_run, tmp_path, *skip):
    """A copy of the demo run to change (folders named in ``skip`` left out)."""
    import shutil

    return shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(*skip))


def one_error(capsys) -> str:
    """What a failed command printed on stderr, checked to hold exactly one 'error:' line."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return err

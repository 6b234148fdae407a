"""A quiet console: `train` prints its summary and little else (nothing but the summary with
--quiet), Lightning's start-up lines go to the run's log file only, and the progress display
draws a bar on a terminal and, elsewhere, a line at a steady interval (none for short work)."""

import io
import shutil

import pytest

from enformer_transfer.cli import main
from enformer_transfer.layout import RunLayout
from enformer_transfer.progress import Progress

NOISE = ("GPU available", "TPU available", "litlogger", "Trainer.fit", "LeafSpec", "Epoch ", "deprecated", "it/s")


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


@pytest.mark.slow
def test_train_prints_a_summary_not_a_flood(demo_run, tmp_path, capsys):
    run_dir = shutil.copytree(demo_run, tmp_path / "run",
                              ignore=shutil.ignore_patterns("dar", "report", "weights", "evaluation", "variants"))
    counts = {}
    for mode, extra in (("default", []), ("quiet", ["--quiet"])):
        assert main(["train", str(run_dir), "--head", f"tiny_{mode}", "--steps", "6", "--init", "random", *extra]) == 0
        captured = capsys.readouterr()
        printed = _lines(captured.out) + _lines(captured.err)
        counts[mode] = len(printed)
        assert not [line for line in printed if any(n in line for n in NOISE)], printed
        assert any(line.startswith(f"train: head 'tiny_{mode}'") for line in _lines(captured.out))
        if mode == "quiet":
            assert _lines(captured.err) == []  # only the final summary, on stdout
    assert counts["quiet"] <= counts["default"] <= 6, counts
    log = RunLayout(run_dir).log.read_text()
    assert "GPU available" in log and "enformer-transfer 0" in log and "finished: train" in log  # kept, in the log


def test_progress_is_silent_off_a_terminal_for_short_work(capsys):
    bar = Progress(10, "embed", "windows")  # the default interval (30 s) is far longer than this work
    for _ in range(10):
        bar.update(1)
    assert capsys.readouterr().err == ""
    assert "embed: 10/10 windows" in bar.summary()


def test_progress_prints_lines_and_a_plan_off_a_terminal(capsys, monkeypatch):
    """A batch log shows life: off a terminal, a line per interval (here 0 s: every update) with done /
    total, rate and time left, the plan with a measured estimate once warmed up, and a last line."""
    import enformer_transfer.progress as progress

    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    monkeypatch.setattr(progress, "WARMUP_SECONDS", 1e9)  # the warm-up ends on its share of the work (5 %)
    now = [0.0]
    monkeypatch.setattr(progress, "_clock", lambda: now[0])  # 2 s per update, and no test waits on a clock
    with Progress(40, "contributions", "regions") as bar:
        for _ in range(40):
            now[0] += 2
            bar.update(1)
    lines = _lines(capsys.readouterr().err)
    assert lines[0].startswith("contributions: 1/40 regions (2.5 %)") and "regions/s" in lines[0]
    plan = [line for line in lines if "about" in line and "measured on" in line]
    assert plan == ["contributions: 40 regions, about 80 s at 0.5 regions/s (measured on 2 regions)"]
    assert "left" in lines[5] and lines[-1].startswith("contributions: 40/40 regions in ")
    assert len(lines) == 39 + 1 + 1  # a line per update before the last, the plan, the last line


def test_progress_draws_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    with Progress(4, "evaluate default", "windows") as bar:
        bar.update(4)
    text = screen.getvalue()
    assert "evaluate default" in text and "4/4 windows" in text

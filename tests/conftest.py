"""Shared fixtures: real data from ../shared/data (skipped when absent) and synthetic data."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TINY = SHARED / "basenji-tiny-hg38"


@pytest.fixture(scope="session")
def tiny_hg38() -> Path:
    if not (TINY / "windows.fa").is_file():
        pytest.skip(f"real test data not found at {TINY} (see shared/data/README.md)")
    return TINY


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    from enformer_transfer.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synthetic"), seed=0)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo, run once through its command: (run directory, what it printed). Tests that
    change the run work on a copy."""
    from enformer_transfer.cli import main

    reuse = os.environ.get("ENFORMER_TRANSFER_TEST_DEMO")  # a demo built by this code, for quick reruns
    if reuse and (Path(reuse) / "run" / "report").is_dir():
        return Path(reuse) / "run", (Path(reuse) / "demo-output.txt").read_text()
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out / "run", printed.getvalue()


@pytest.fixture(scope="session")
def demo_run(demo):
    return demo[0]


@pytest.fixture(scope="session", autouse=True)
def _fingerprint_cache(tmp_path_factory):
    """Content hashes cached in the session's temporary folder, not the user's cache."""
    os.environ["ENFORMER_TRANSFER_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _propagate_logs():
    # the CLI configures the root logger; keep our logger visible to caplog
    logging.getLogger("enformer_transfer").setLevel(logging.INFO)
    yield

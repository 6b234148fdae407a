"""Shared fixtures: real data from ../shared/data (skipped when absent) and synthetic data."""

from __future__ import annotations

import logging
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
def demo_run(tmp_path_factory):
    """The whole demo pipeline, run once; tests that change it work on a copy."""
    from enformer_transfer.pipeline import run_demo

    return run_demo(tmp_path_factory.mktemp("demo"), progress=False)


@pytest.fixture(autouse=True)
def _propagate_logs():
    # the CLI configures the root logger; keep our logger visible to caplog
    logging.getLogger("enformer_transfer").setLevel(logging.INFO)
    yield

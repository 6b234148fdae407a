"""What the GPU benchmarks share on the device machine, whose image lacks polars (54 MB, left out
of the carried wheels): enformer_pytorch.data imports it at module level, and no benchmark uses it."""

import sys
import types


def allow_missing_polars() -> None:
    """Stand an empty module in for polars when it is not installed."""
    try:
        import polars  # noqa: F401
    except ImportError:
        sys.modules["polars"] = types.ModuleType("polars")

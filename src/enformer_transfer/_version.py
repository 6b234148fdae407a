"""Tool version, recorded in every stage record and head checkpoint."""

__version__ = "0.1.0"

"""Streaming metrics, per-level summaries and evaluation of heads."""

"""Genes: a GTF's genes (``gtf.read_genes``) and the windows their TSSs fall in (``gtf.place_genes``)."""

from __future__ import annotations

from .gtf import GENE_COLUMNS, place_genes, read_genes

__all__ = ["GENE_COLUMNS", "place_genes", "read_genes"]

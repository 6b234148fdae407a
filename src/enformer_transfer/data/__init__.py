"""Targets tables, BigWig -> binned targets (Basenji semantics), array stores, the dataset stage."""

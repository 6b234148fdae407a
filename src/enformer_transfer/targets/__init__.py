"""The tracks of a run: the targets table (Basenji format, ``table.py``: one row per track, with
its transform and metadata; strand pairs, selections) and the study's transform of every track,
which new targets tables take by default. Kept light: the config imports the constants."""

from __future__ import annotations

SUM_STATS = ("mean", "sum", "max", "sum_sqrt", "mean_sqrt", "peak")

# The study's transform of every track (reference.md section 2): the defaults of new targets tables.
STUDY_CLIP = 32.0
STUDY_SCALE = 2.0
STUDY_SUM_STAT = "mean"

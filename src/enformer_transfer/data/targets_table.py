"""The targets table moved to ``enformer_transfer.targets.table``; this name is kept for one release."""

from ..targets import STUDY_CLIP, STUDY_SCALE, STUDY_SUM_STAT, SUM_STATS  # noqa: F401
from ..targets.table import *  # noqa: F403

"""The model's geometry: input length, bin size and output bins of every window; the
``[geometry]`` section of a run config (``config.Geometry`` is this class)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Geometry(BaseModel):
    """Model input length and output bins; the target interval is the central n_bins x bin_size."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    seq_length: int = Field(196_608, gt=0, description="model input length in bp")
    bin_size: int = Field(128, gt=0, description="bp per output bin")
    n_bins: int = Field(896, gt=0, description="output bins per window")

    @property
    def target_interval_bp(self) -> int:
        """Length of the target interval in bp (n_bins x bin_size)."""
        return self.n_bins * self.bin_size

    @property
    def context(self) -> int:
        """bp of input on each side of the target interval."""
        return (self.seq_length - self.target_interval_bp) // 2

    @model_validator(mode="after")
    def _check(self) -> Geometry:
        excess = self.seq_length - self.target_interval_bp
        if excess < 0 or excess % 2:
            raise ValueError(
                f"seq_length {self.seq_length} must exceed n_bins x bin_size "
                f"({self.target_interval_bp}) by an even number of bp"
            )
        return self

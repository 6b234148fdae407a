"""Every figure, one function per figure; no metric is computed here."""

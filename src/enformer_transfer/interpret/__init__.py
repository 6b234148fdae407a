"""Reading the model: variant effects, contributions, motifs and cell-type-specific regions."""

"""Reading the genome with a trained model: variant effects per track and cell type."""

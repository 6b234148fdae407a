"""Head models, losses, the embeddings data loader, the ridge solver and head training."""

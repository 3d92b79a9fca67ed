"""Losses: each takes embeddings or logits (never the model)."""

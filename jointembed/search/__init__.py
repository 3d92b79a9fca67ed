"""Search an embedding space: :class:`EmbeddingIndex` (exact torch or FAISS backends), saved as one folder."""

from jointembed.search.backends import BACKENDS, create_backend, exact_top_k, faiss_available
from jointembed.search.index import EmbeddingIndex, Hit, model_info

__all__ = ["EmbeddingIndex", "Hit", "model_info", "BACKENDS", "create_backend", "exact_top_k", "faiss_available"]

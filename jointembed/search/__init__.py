"""Search an embedding space: :class:`EmbeddingIndex` (exact torch or FAISS backends), saved as one folder, and
the functions that turn manifests, files and texts into its entries."""

from jointembed.search.backends import BACKENDS, create_backend, exact_top_k, faiss_available
from jointembed.search.entries import Entries, embed_files, embed_manifest, embed_values
from jointembed.search.index import EmbeddingIndex, Hit, model_info

__all__ = [
    "EmbeddingIndex",
    "Hit",
    "model_info",
    "Entries",
    "embed_manifest",
    "embed_files",
    "embed_values",
    "BACKENDS",
    "create_backend",
    "exact_top_k",
    "faiss_available",
]

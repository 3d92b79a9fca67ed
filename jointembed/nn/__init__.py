"""Small reusable layers: the sparse embedding and the MLP tower."""

from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import SparseEmbedding, suggest_embedding_dim

__all__ = ["MLP", "SparseEmbedding", "suggest_embedding_dim"]

"""Optimisers for embedding tables with sparse gradients: LazyAdam and row-wise Adagrad.

Both update only the rows a step's sparse gradient touches, each once from the sum of its duplicate lookups, with
a numba kernel on CPU (one pass over the distinct rows) or tensor operations elsewhere; dense gradients get the
ordinary rule (AdamW, Adagrad). See :mod:`jointembed.optim.sparse_rows`.
"""

from jointembed.optim.lazy_adam import LazyAdam
from jointembed.optim.rowwise_adagrad import RowWiseAdagrad
from jointembed.optim.sparse_rows import Backend

__all__ = ["Backend", "LazyAdam", "RowWiseAdagrad"]

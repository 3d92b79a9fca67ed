"""Losses: each takes embeddings or logits (never the model).

Importing the package registers the contrastive losses with :mod:`jointembed.registry` (``info_nce``, ``siglip``).
"""

from jointembed.losses import info_nce, siglip  # noqa: F401  (registers the losses)

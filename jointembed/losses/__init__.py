"""Losses: each takes embeddings or logits (never the model).

Importing the package registers every loss with :mod:`jointembed.registry`: the contrastive losses (``info_nce``,
``siglip``) and the softmax losses over an item catalogue (``full_softmax``, ``sampled_softmax``,
``in_batch_softmax``).
"""

from jointembed.losses import info_nce, sampled_softmax, siglip  # noqa: F401  (registers the losses)

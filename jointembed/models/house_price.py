"""A trained house-price network that reads raw housing rows: the embedding network plus its fitted featurizer.

``jointembed fit --config recipes/housing.yaml`` leaves ``<log_dir>/pretrained``; load it anywhere with
:meth:`HousePricePredictor.from_pretrained` and call :meth:`~HousePricePredictor.predict` on rows as they are in
the CSV (dicts by column name, lists in the CSV's column order, or the path of a CSV file) to get dollars.

The folder (see :class:`~jointembed.models.embedding_net.PretrainedEmbeddingNet`): ``config.json``
``{"format": "jointembed.house_price", "version": 1, "network": EmbeddingNet arguments, "featurizer":
HousingFeaturizer.to_config()}`` (column names, imputation medians and policy, bucket boundaries, dense-feature and
target statistics), ``model.safetensors`` (the network's ``state_dict``) and a ``README.md`` model card.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jointembed.data.housing_features import FEATURE_COLUMNS, HousingFeaturizer, ids_to_sparse
from jointembed.errors import CheckpointError
from jointembed.models.embedding_net import EmbeddingNet, PretrainedEmbeddingNet
from jointembed.pretrained import model_card
from jointembed.sparse import SparseBatch

__all__ = ["HousePricePredictor", "FORMAT", "FORMAT_VERSION"]

FORMAT = "jointembed.house_price"
FORMAT_VERSION = 1

_USAGE = """
from jointembed.models.house_price import HousePricePredictor

model = HousePricePredictor.from_pretrained("{folder}")
row = {{"longitude": -122.23, "latitude": 37.88, "housing_median_age": 41, "total_rooms": 880,
       "total_bedrooms": 129, "population": 322, "households": 126, "median_income": 8.3252}}
model.predict([row])  # array([...]): dollars; also a list of CSV-ordered lists, or a CSV file's path
"""


class HousePricePredictor(PretrainedEmbeddingNet):
    """An :class:`~jointembed.models.embedding_net.EmbeddingNet` with one output and the
    :class:`~jointembed.data.housing_features.HousingFeaturizer` fit on its training split: raw rows in, dollars out.

    Args:
        network: The trained network; ``out_features=1``, its table as large as ``featurizer.num_ids`` and
            taking the 8 dense features.
        featurizer: The fitted featurizer; its ``target_mean`` and ``target_std`` turn the network's standardised
            output into dollars.

    Raises:
        ValueError: The network does not fit the featurizer (the message says which size to change).
    """

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION

    def __init__(self, network: EmbeddingNet, featurizer: HousingFeaturizer) -> None:
        super().__init__(network)
        if network.out_features != 1:
            raise ValueError(f"a house-price network needs out_features=1, got {network.out_features}")
        network.check_input_sizes(featurizer.num_ids, featurizer.num_dense_features)
        self.featurizer = featurizer
        # Not saved with the weights: config.json holds them, with the rest of the featurizer.
        device = next(network.parameters()).device
        for name in ("target_mean", "target_std"):
            self.register_buffer(
                name, torch.tensor(getattr(featurizer, name), dtype=torch.float32, device=device), False
            )

    def forward(self, sparse: SparseBatch, dense: torch.Tensor) -> torch.Tensor:
        """``(B,)`` predictions in dollars from featurized inputs (``B`` bags and ``(B, 8)`` dense features)."""
        return self.network(sparse, dense).squeeze(-1) * self.target_std + self.target_mean

    @torch.no_grad()
    def predict(
        self, rows: str | os.PathLike | Mapping[str, Any] | Sequence[Any] | np.ndarray, batch_size: int = 4096
    ) -> np.ndarray:
        """Predicted median house values, in dollars, for raw rows.

        Args:
            rows: One row as a dict by column name, a sequence of rows (dicts by column name, or lists of fields
                in the training CSV's column order with or without the target field), or the path of a CSV file
                with a header naming the feature columns. Fields may be numbers or text; missing values (``None``,
                ``""``, ``NaN``, ``NA``) follow the saved policy (``featurizer.on_missing``).
            batch_size: Rows per forward pass.

        Returns:
            ``(N,)`` float64 dollars, one per row.

        Raises:
            DataFormatError: A missing column, a row of the wrong length, a value that is not a number, or a
                missing value the saved policy refuses; the message names the row (or file and line) and column.
        """
        if isinstance(rows, Mapping):
            rows = [rows]
        ids, dense = self.featurizer.featurize(rows, stacklevel=4)  # the notice points at predict's caller
        device = next(self.network.parameters()).device
        ids_t, dense_t = torch.from_numpy(ids), torch.from_numpy(dense)
        out = [
            self(ids_to_sparse(ids_t[i : i + batch_size]).to(device), dense_t[i : i + batch_size].to(device))
            for i in range(0, len(ids), batch_size)
        ]
        return torch.cat(out).cpu().numpy().astype(np.float64)

    def parts_config(self) -> dict[str, Any]:
        """``{"featurizer": HousingFeaturizer.to_config()}``."""
        return {"featurizer": self.featurizer.to_config()}

    @classmethod
    def parts_from_config(cls, config: Mapping[str, Any], where: Path) -> dict[str, Any]:
        """``{"featurizer": HousingFeaturizer}`` from the folder's ``config.json``."""
        try:
            return {"featurizer": HousingFeaturizer.from_config(config["featurizer"])}
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: field 'featurizer': {error}") from error

    def model_card(self, folder: Path, metrics: Mapping[str, Any] | None) -> str:
        """The model card: what the network reads, the grid and columns, the test metrics."""
        f = self.featurizer
        details = {
            "network": self.network.get_config(),
            "grid": f"{f.num_lat_buckets} latitude x {f.num_lon_buckets} longitude buckets",
            "extra buckets": f.extra_buckets or "none",
            "columns": ", ".join(f.columns),
            "missing values": "imputed with the training medians" if f.on_missing == "impute" else "an error",
        }
        return model_card(
            "House-price embedding network (California housing)",
            "Predicts a district's median house value in dollars from a raw row of the California housing CSV: "
            "an embedding of its latitude x longitude grid cell joined with its standardised census figures "
            f"({', '.join(FEATURE_COLUMNS)}).",
            _USAGE.format(folder=folder.name),
            metrics,
            details,
        )

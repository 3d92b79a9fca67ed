"""Jagged batches of sparse IDs: the input type of every sparse embedding in jointembed.

A batch of B bags (the movies each user watched, the lit pixels of each image) is stored as one flat tensor of
IDs plus the offset at which each bag starts, exactly the layout ``torch.nn.EmbeddingBag`` consumes, so the
embedding lookup needs no padding and no copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["SparseBatch", "collate_sparse"]


@dataclass(frozen=True)
class SparseBatch:
    """A batch of bags of IDs, with optional per-ID weights.

    Attributes:
        values: ``(nnz,)`` int64 IDs of all bags, concatenated.
        offsets: ``(B,)`` int64 start of each bag in ``values``; bag ``i`` is ``values[offsets[i]:offsets[i+1]]``
            (the last bag runs to the end). Empty bags repeat the next bag's offset.
        weights: ``(nnz,)`` float weights aligned with ``values``, or ``None`` (all weights 1).

    Every way of building one checks that the offsets account for every ID exactly, IDs are non-negative and
    weights finite (see :meth:`validate`), with vectorised reductions only; a malformed batch raises
    ``ValueError`` where it is made instead of embedding the wrong IDs or NaN downstream.
    """

    values: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        """Check the layout (and that IDs are non-negative and weights finite) so no malformed batch exists.

        Raises:
            ValueError: As :meth:`validate`, or a tensor of the wrong rank or dtype.
        """
        object.__setattr__(self, "values", _integer_vector(self.values, "values", "IDs"))
        object.__setattr__(self, "offsets", _integer_vector(self.offsets, "offsets", "offsets"))
        if self.weights is not None:
            if not isinstance(self.weights, torch.Tensor):
                raise ValueError(f"weights must be a tensor or None, got {type(self.weights).__name__}")
            if self.weights.dtype == torch.bool or self.weights.is_complex():
                raise ValueError(f"weights must be real numbers, got a tensor of dtype {self.weights.dtype}")
            if self.weights.dim() != 1:
                raise ValueError(f"weights must be 1-D, got shape {tuple(self.weights.shape)}")
        self.validate()

    @classmethod
    def _from_checked_parts(
        cls, values: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None
    ) -> SparseBatch:
        """A batch from parts already known to be consistent (taken from checked batches), skipping the checks:
        moving a batch to the GPU must not cost a device synchronisation."""
        batch = object.__new__(cls)
        object.__setattr__(batch, "values", values)
        object.__setattr__(batch, "offsets", offsets)
        object.__setattr__(batch, "weights", weights)
        return batch

    @classmethod
    def from_lists(
        cls,
        bags: Sequence[Sequence[int]],
        weights: Sequence[Sequence[float]] | None = None,
        num_values: int | None = None,
    ) -> SparseBatch:
        """Build a batch from Python lists of IDs (and weights), validating every ID.

        Args:
            bags: One sequence of integer IDs per example; a bag may be empty.
            weights: One sequence of weights per bag, each as long as its bag, or ``None``.
            num_values: Size of the ID table; when given, IDs must be ``< num_values``.

        Raises:
            ValueError: A non-integer or negative ID, an ID ``>= num_values``, or weights whose length differs
                from their bag; the message names the value and the bag index.
        """
        if isinstance(bags, torch.Tensor) or isinstance(bags, (str, bytes)):
            raise ValueError(f"bags must be a sequence of sequences of IDs, got {type(bags).__name__}")
        flat: list[int] = []
        lengths: list[int] = []
        for i, bag in enumerate(bags):
            ids = _bag_ids(bag, i)
            flat.extend(ids)
            lengths.append(len(ids))
        flat_weights = None
        if weights is not None:
            if len(weights) != len(lengths):
                raise ValueError(f"got {len(weights)} weight lists for {len(lengths)} bags")
            flat_weights = []
            for i, (w, n) in enumerate(zip(weights, lengths, strict=True)):
                w = list(w)
                if len(w) != n:
                    raise ValueError(f"bag {i} has {n} IDs but {len(w)} weights")
                flat_weights.extend(float(x) for x in w)
        values = torch.tensor(flat, dtype=torch.long)
        offsets = _offsets_from_lengths(torch.tensor(lengths, dtype=torch.long))
        w_tensor = None if flat_weights is None else torch.tensor(flat_weights, dtype=torch.float32)
        batch = cls(values, offsets, w_tensor)
        if num_values is not None:
            batch.validate(num_values)
        return batch

    @classmethod
    def from_tensors(
        cls,
        values: torch.Tensor,
        offsets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        num_values: int | None = None,
    ) -> SparseBatch:
        """Build a batch from flat tensors, given either ``offsets`` or per-bag ``lengths``.

        Args:
            values: ``(nnz,)`` integer IDs.
            offsets: ``(B,)`` start of each bag (non-decreasing, first is 0).
            weights: ``(nnz,)`` per-ID weights, or ``None``.
            lengths: ``(B,)`` number of IDs per bag, instead of ``offsets``.
            num_values: Size of the ID table; when given, IDs must be ``< num_values``.

        Raises:
            ValueError: As :meth:`from_lists`, plus lengths that do not add up to the number of IDs, offsets that
                do not start at 0, decrease or run past the end, and non-integer lengths or offsets.
        """
        if (offsets is None) == (lengths is None):
            raise ValueError("give exactly one of offsets or lengths")
        values = _integer_vector(torch.as_tensor(values).flatten(), "values", "IDs")
        if lengths is not None:
            lengths = _integer_vector(torch.as_tensor(lengths).flatten(), "lengths", "lengths")
            offsets = _offsets_from_lengths(lengths)
            total = int(lengths.sum())
            if total != values.numel():
                raise ValueError(
                    f"lengths add up to {total} IDs but values holds {values.numel()}: "
                    "the lengths must account for every ID exactly"
                )
        batch = cls(values, torch.as_tensor(offsets).flatten(), weights)
        if num_values is not None:
            batch.validate(num_values)
        return batch

    def validate(self, num_values: int | None = None) -> None:
        """Check the invariants: offsets start at 0, never decrease and stay within ``values``; IDs are
        non-negative (and ``< num_values`` when given); weights, if any, are finite and aligned with ``values``.

        On success this costs a few vectorised reductions and one host synchronisation.

        Raises:
            ValueError: The first fault found, naming the bag and the offending offset, ID or weight.
        """
        n, num_bags = self.values.numel(), self.offsets.numel()
        if num_bags == 0 and n > 0:
            raise ValueError(f"{n} IDs but no bags (offsets is empty)")
        if self.weights is not None and self.weights.shape != self.values.shape:
            raise ValueError(f"weights has shape {tuple(self.weights.shape)} but values has {tuple(self.values.shape)}")
        faults = []
        if num_bags:
            faults += [self.offsets[0] != 0, (self.offsets[1:] < self.offsets[:-1]).any(), self.offsets[-1] > n]
        if n:
            low, high = torch.aminmax(self.values)
            faults.append(low < 0)
            if num_values is not None:
                faults.append(high >= num_values)
        if self.weights is not None and self.weights.is_floating_point():
            faults.append(~torch.isfinite(self.weights).all())
        if faults and bool(torch.stack(faults).any()):
            self._raise_first_fault(num_values)

    def _raise_first_fault(self, num_values: int | None) -> None:
        """Find and report what :meth:`validate` found wrong (only runs when something is)."""
        offsets, n = self.offsets, self.values.numel()
        if int(offsets[0]) != 0:
            raise ValueError(f"offsets must start at 0, got {int(offsets[0])}")
        decreasing = (offsets[1:] < offsets[:-1]).nonzero()
        if decreasing.numel():
            bag = int(decreasing[0]) + 1
            raise ValueError(
                f"offsets decrease at bag {bag}: {int(offsets[bag - 1])} then {int(offsets[bag])}; "
                "offsets must be non-decreasing"
            )
        if int(offsets[-1]) > n:
            bag = int((offsets > n).nonzero()[0])
            raise ValueError(f"offset {int(offsets[bag])} of bag {bag} is past the end of the {n} IDs")
        bad = self.values < 0
        if num_values is not None:
            bad |= self.values >= num_values
        if bool(bad.any()):
            pos = int(bad.nonzero()[0])
            value, bag = int(self.values[pos]), self.bag_of(pos)
            valid = "non-negative" if num_values is None else f"in [0, {num_values})"
            raise ValueError(f"ID {value} in bag {bag} is out of range: IDs must be {valid}")
        pos = int((~torch.isfinite(self.weights)).nonzero()[0])
        raise ValueError(
            f"weight {float(self.weights[pos])} of ID {int(self.values[pos])} in bag {self.bag_of(pos)} "
            "is not finite: weights must be finite numbers"
        )

    def bag_of(self, position: int) -> int:
        """Index of the bag holding ``values[position]``."""
        return int(torch.searchsorted(self.offsets, torch.tensor(position), right=True)) - 1

    def __len__(self) -> int:
        return self.offsets.numel()

    def lengths(self) -> torch.Tensor:
        """``(B,)`` number of IDs in each bag."""
        ends = torch.cat([self.offsets[1:], self.offsets.new_tensor([self.values.numel()])])
        return ends - self.offsets

    def bag_ids(self) -> torch.Tensor:
        """``(nnz,)`` index of the bag that each entry of ``values`` belongs to."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.values.device), self.lengths())

    def tail(self, k: int) -> SparseBatch:
        """The last ``k`` IDs of every bag (the whole bag when shorter), with their weights: the most recent
        items when bags are in time order."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        lengths = self.lengths()
        position = torch.arange(self.values.numel(), device=self.values.device) - torch.repeat_interleave(
            self.offsets, lengths
        )
        keep = position >= torch.repeat_interleave(lengths - k, lengths)
        weights = None if self.weights is None else self.weights[keep]
        return SparseBatch._from_checked_parts(self.values[keep], _offsets_from_lengths(lengths.clamp(max=k)), weights)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SparseBatch:
        """Copy of the batch on ``device``."""
        weights = None if self.weights is None else self.weights.to(device, non_blocking=non_blocking)
        return SparseBatch._from_checked_parts(
            self.values.to(device, non_blocking=non_blocking),
            self.offsets.to(device, non_blocking=non_blocking),
            weights,
        )

    def pin_memory(self) -> SparseBatch:
        """Copy in pinned memory, so DataLoader(pin_memory=True) works with this type."""
        weights = None if self.weights is None else self.weights.pin_memory()
        return SparseBatch._from_checked_parts(self.values.pin_memory(), self.offsets.pin_memory(), weights)

    def to_dense(self, num_values: int | None = None) -> torch.Tensor:
        """``(B, num_values)`` multi-hot (or weighted) matrix, for debugging and small tables.

        Repeated IDs in a bag add up.
        """
        if num_values is None:
            num_values = int(self.values.max()) + 1 if self.values.numel() else 0
        self.validate(num_values)
        dense = torch.zeros(len(self), num_values, dtype=torch.float32, device=self.values.device)
        w = torch.ones_like(self.values, dtype=torch.float32) if self.weights is None else self.weights.float()
        dense.index_put_((self.bag_ids(), self.values), w, accumulate=True)
        return dense

    def tolist(self) -> list[list[int]]:
        """The bags as Python lists of IDs."""
        return [part.tolist() for part in torch.split(self.values, self.lengths().tolist())]

    @staticmethod
    def concat(batches: Sequence[SparseBatch]) -> SparseBatch:
        """Concatenate batches along the bag dimension (all with weights or all without)."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        has_w = {b.weights is not None for b in batches}
        if len(has_w) != 1:
            raise ValueError("cannot concatenate batches with and without weights")
        values = torch.cat([b.values for b in batches])
        offsets = _offsets_from_lengths(torch.cat([b.lengths() for b in batches]))
        weights = torch.cat([b.weights for b in batches]) if has_w == {True} else None
        return SparseBatch._from_checked_parts(values, offsets, weights)


def collate_sparse(examples: Sequence, num_values: int | None = None) -> SparseBatch:
    """DataLoader ``collate_fn`` turning examples into one :class:`SparseBatch`.

    Args:
        examples: Each example is a sequence of IDs, a 1-D integer tensor, or an ``(ids, weights)`` pair.
            Either every example carries weights or none does.
        num_values: Size of the ID table, to validate IDs.
    """
    bags, weights = [], []
    for i, ex in enumerate(examples):
        if isinstance(ex, tuple) and len(ex) == 2 and not isinstance(ex[0], (int, float)):
            ids, w = ex
            bags.append(_as_list(ids))
            weights.append(_as_list(w))
        else:
            if weights:
                raise ValueError(f"example {i} has no weights but earlier examples do")
            bags.append(_as_list(ex))
    if weights and len(weights) != len(bags):
        raise ValueError("either every example carries weights or none does")
    return SparseBatch.from_lists(bags, weights or None, num_values=num_values)


def _as_list(x) -> list:
    return x.tolist() if isinstance(x, torch.Tensor) else list(x)


def _bag_ids(bag, index: int) -> list[int]:
    if isinstance(bag, (str, bytes)) or not hasattr(bag, "__iter__"):
        raise ValueError(f"bag {index} must be a sequence of integer IDs, got {bag!r}")
    ids = _as_list(bag)
    out = []
    for v in ids:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise ValueError(f"ID {v!r} in bag {index} is not an integer")
        v = int(v)
        if v < 0:
            raise ValueError(f"ID {v} in bag {index} is out of range: IDs must be non-negative")
        out.append(v)
    return out


def _integer_vector(tensor: torch.Tensor, name: str, what: str) -> torch.Tensor:
    """``tensor`` as a 1-D int64 tensor; a float would be truncated silently, so it is refused."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{what} must be integers, got a tensor of dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    return tensor.long()


def _offsets_from_lengths(lengths: torch.Tensor) -> torch.Tensor:
    negative = (lengths < 0).nonzero()
    if negative.numel():
        bag = int(negative[0])
        raise ValueError(f"bag lengths must be non-negative: length of bag {bag} is {int(lengths[bag])}")
    return torch.cumsum(lengths, 0) - lengths

"""Contract tests over every registered modality unit: raw values → load → collate → a matching encoder's
unit vectors, and save_to → load_from gives a unit that loads the same values identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jointembed.registry import create_encoder, create_modality, get_encoder_class, list_encoders, list_modalities


def _encoder_for(modality: str) -> object:
    """A tiny encoder of the unit's type (every unit has at least one: a new type must come with one)."""
    names = [n for n in list_encoders() if get_encoder_class(n).modality == modality]
    assert names, f"no registered encoder reads the {modality!r} modality"
    torch.manual_seed(0)
    return create_encoder(names[0], **get_encoder_class(names[0]).tiny_config())


def _same(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", list_modalities())
def test_unit_loads_collates_and_feeds_its_encoder(name: str) -> None:
    unit = create_modality(name)
    encoder = _encoder_for(name).eval()
    values = unit.example_values(3)
    unit.fit(values)
    unit.bind(encoder, name)
    assert unit.fitted
    batch = unit.collate([unit.load(v) for v in values])
    with torch.no_grad():
        out = encoder(batch)
    assert out.shape == (3, encoder.output_dim) and torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    empty = unit.collate([])
    with torch.no_grad():
        assert encoder(empty).shape == (0, encoder.output_dim)


@pytest.mark.parametrize("name", list_modalities())
def test_unit_round_trips_through_a_folder(name: str, tmp_path: Path) -> None:
    unit = create_modality(name)
    values = unit.example_values(3, seed=1)
    unit.fit(values)
    unit.bind(_encoder_for(name), name)
    config = unit.save_to(tmp_path)
    loaded = type(unit).load_from(config, tmp_path)
    assert loaded.get_config() == unit.get_config() and loaded.registry_name == name
    for value in values:
        _same(loaded.load(value), unit.load(value))

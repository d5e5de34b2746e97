"""Similarity calibration (core/embeddings/calibrate.py) and the rescale of cosines onto 0..1."""

from __future__ import annotations

import numpy as np
import pytest

from core.embeddings import BuiltinEmbedder, rescale
from core.embeddings.calibrate import calibrate


def test_calibrate_separates_related_from_unrelated() -> None:
    topics = {
        "painting": [
            "she painted a sunrise",
            "painting lessons on sunday",
            "oil paints and brushes",
        ],
        "taxes": ["the tax filing deadline", "quarterly taxes are due", "tax refund arrived"],
        "running": ["ran a charity race", "running shoes for the marathon", "race day training"],
    }
    groups: list[tuple[list[str], list[str]]] = [
        ([f"what about {name}?", docs[0]], docs) for name, docs in topics.items()
    ]
    result = calibrate(BuiltinEmbedder(), groups, floor_percentile=90, strong_percentile=90)
    assert result.strong > result.floor
    assert result.related_median > result.unrelated_median
    with pytest.raises(ValueError):
        calibrate(BuiltinEmbedder(), groups[:1])


def test_rescale_clips_to_unit_interval() -> None:
    out = rescale(np.array([-0.5, 0.1, 0.25, 0.4, 0.9]), 0.1, 0.4)
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])

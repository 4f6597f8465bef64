"""The torch-free view of the shipped variants equals what the model itself loads."""

from __future__ import annotations

import numpy as np

from swarm.runtime.builtin import ArithModel
from swarm.runtime.variants import VARIANT_NAMES, model_weights, variant_path


def test_model_weights_are_the_models_own_weight_operands() -> None:
    for name in VARIANT_NAMES:
        expected = ArithModel(variant_path(name)).weights
        got = model_weights(variant_path(name))
        assert sorted(got) == sorted(expected) and got
        for layer, weight in expected.items():
            assert got[layer].dtype == np.int8
            assert np.array_equal(got[layer], weight)

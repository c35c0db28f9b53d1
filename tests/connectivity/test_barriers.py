"""The three barriers against values computed by hand."""

import numpy as np
import pytest

from losslens.connectivity.barriers import NAMES, barriers
from losslens.errors import ConfigError


def test_three_definitions_on_a_tilted_bump():
    t = np.linspace(0.0, 1.0, 5)  # 0, .25, .5, .75, 1
    loss = np.array([1.0, 2.5, 3.0, 3.2, 3.0])  # chord 1 -> 3: 1.5, 2, 2.5 at the inner points
    got = barriers(t, loss)
    assert list(got) == list(NAMES)
    assert got["barrier"] == pytest.approx(1.0)  # 2.5 - 1.5 at t = .25 (not at the maximum 3.2)
    assert got["barrier_mean"] == pytest.approx(3.2 - 2.0)
    assert got["barrier_max"] == pytest.approx(0.2)


def test_points_outside_the_segment_are_left_out_and_nan_propagates():
    t = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    assert barriers(t, [9.0, 1.0, 2.0, 1.0, 9.0])["barrier_max"] == pytest.approx(1.0)
    assert np.isnan(barriers(t, [0.0, 1.0, np.nan, 1.0, 0.0])["barrier"])


@pytest.mark.parametrize("t, values, match", [
    ([0.0, 0.5], [1.0, 2.0, 3.0], "one length"),
    ([0.0, 0.5, 0.9], [1.0, 2.0, 3.0], "endpoints"),
    ([0.0, 1.0], [1.0, 2.0], "between"),
])
def test_bad_samples_are_refused(t, values, match):
    with pytest.raises(ConfigError, match=match):
        barriers(t, values)

"""The three barriers against values computed by hand."""

import numpy as np
import pytest

from losslens.connectivity.barriers import NAMES, barriers, line_barriers
from losslens.errors import ConfigError
from losslens.landscape.surface import Surface


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


def test_line_barriers_of_the_loss_and_of_the_error():
    t = np.array([-0.5, 0.0, 0.25, 0.5, 1.0, 1.5])  # the ends outside [0, 1] are left out
    line = Surface.from_arrays(t, None, np.array([9.0, 1.0, 3.5, 3.0, 2.0, 9.0]),
                               {"accuracy": np.array([0.0, 0.9, 0.5, 0.6, 0.8, 0.0])})
    found = line_barriers(line)
    # loss: the chord 1 -> 2 is 1.25 at t = .25, the mean of the ends 1.5, the higher end 2; the peak 3.5
    assert found["barrier"] == pytest.approx(2.25)
    assert found["barrier_mean"] == pytest.approx(2.0)
    assert found["barrier_max"] == pytest.approx(1.5)
    # error 1 - accuracy: .1, .5, .4, .2 in [0, 1]; the chord .1 -> .2 is .125 at t = .25, the mean .15
    assert found["error_barrier"] == pytest.approx(0.375)
    assert found["error_barrier_mean"] == pytest.approx(0.35)
    assert found["error_barrier_max"] == pytest.approx(0.3)


def test_line_barriers_refuse_what_is_not_a_line():
    with pytest.raises(TypeError, match="needs the Surface of a line .*got str"):
        line_barriers("line.h5")
    with pytest.raises(ConfigError, match="on a line"):
        line_barriers(Surface.from_arrays([0.0, 1.0], [0.0, 1.0], np.zeros((2, 2))))

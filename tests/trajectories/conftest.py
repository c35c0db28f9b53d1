"""Fixtures of the trajectory tests."""

import pytest

from _trajectory_helpers import tiny_model


@pytest.fixture
def model():
    return tiny_model()

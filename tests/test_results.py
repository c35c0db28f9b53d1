"""Tests of losslens/results.py: every kind of result file, damaged, gives one error naming the file."""

import pytest

from losslens import _io
from losslens.errors import LosslensError
from losslens.results import RESULT_CLASSES, load_result


@pytest.mark.parametrize("kind", sorted(set(RESULT_CLASSES) - {"surface"}))  # surfaces: tests/landscape/test_surface.py
def test_a_file_of_the_right_kind_without_its_contents_is_named_damaged(tmp_path, kind):
    path = _io.write_h5(tmp_path / f"{kind}.h5", kind, {}, {})
    with pytest.raises(LosslensError, match=f"{kind}.h5: damaged {kind} file"):
        load_result(path)


def test_load_result_names_a_path_that_is_not_one():
    with pytest.raises(TypeError, match="needs the path of a result file, got NoneType"):
        load_result(None)

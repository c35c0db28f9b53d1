"""``losslens plot`` draws a result file of every kind, through the figure registry, under the names
the registry gives (tests/conftest.py builds one small result of each kind)."""

import pytest

from losslens.cli.main import main
from losslens.plot.render import figures
from losslens.results import RESULT_CLASSES


@pytest.mark.parametrize("kind", sorted(RESULT_CLASSES))
def test_plot_draws_a_file_of_every_kind(one_of_each_kind, kind, tmp_path, capsys):
    result = one_of_each_kind[kind]
    path = result.save(tmp_path / f"{kind}.h5")
    assert main(["plot", str(path), "--out", str(tmp_path / "out")]) == 0
    stdout = capsys.readouterr().out
    names = [f"{kind}{name}" for name in figures(result)]
    assert stdout.splitlines() == [f"wrote {tmp_path / 'out' / name}" for name in names]
    assert all((tmp_path / "out" / name).stat().st_size > 1000 for name in names)


def test_plot_draws_paths_over_the_plane_beside_them(one_of_each_kind, tmp_path, capsys):
    paths = one_of_each_kind["trajectory"].save(tmp_path / "trajectory.h5")
    assert main(["plot", str(paths)]) == 0
    alone = (tmp_path / "trajectory.html").read_text()
    one_of_each_kind["surface"].save(tmp_path / "trajectory_surface.h5")
    assert main(["plot", str(paths), "--log"]) == 0
    drawn = (tmp_path / "trajectory.html").read_text()
    assert drawn.count('"type":"contour"') == alone.count('"type":"contour"') + 1  # the plane's contour
    assert f"wrote {tmp_path / 'trajectory_losses.png'}" in capsys.readouterr().out

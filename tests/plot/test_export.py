"""The ParaView export of a surface (the reference tool's h52vtp.py), read back as XML and by VTK itself."""

import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

from losslens.cli.main import main
from losslens.landscape.surface import Surface
from losslens.plot.export import write_vtp


def plane(nx, ny):
    """``L = x^2 + 2 y^2 + 0.3 x y + 0.05`` on a ``(ny, nx)`` grid, with an accuracy."""
    x, y = np.linspace(-1, 1, nx), np.linspace(-0.5, 2, ny)
    X, Y = np.meshgrid(x, y)
    loss = X**2 + 2 * Y**2 + 0.3 * X * Y + 0.05
    return Surface.from_arrays(x, y, loss, {"accuracy": np.exp(-loss)})


def piece(path):
    root = ET.parse(path).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    return root.find("PolyData/Piece")


def array(element, name):
    return np.array(element.find(f".//DataArray[@Name='{name}']").text.split(), dtype=np.float64)


@pytest.mark.parametrize("log", [False, True])
def test_vtp_points_quads_and_loss_in_the_reference_tools_order(tmp_path, log):
    nx, ny = 5, 4
    s = plane(nx, ny)
    p = piece(write_vtp(s, tmp_path / "s.vtp", log=log))
    assert int(p.get("NumberOfPoints")) == nx * ny and int(p.get("NumberOfPolys")) == (nx - 1) * (ny - 1)
    points = array(p.find("Points"), "Points").reshape(-1, 3)
    X, Y = np.meshgrid(s.x, s.y)  # the reference tool: meshgrid(x, y), flattened
    assert np.array_equal(points[:, 0], X.ravel()) and np.array_equal(points[:, 1], Y.ravel())
    z = np.log(s.loss.ravel() + 0.1) if log else s.loss.ravel()
    assert np.array_equal(points[:, 2], z)
    assert np.array_equal(array(p.find("PointData"), "loss"), s.loss.ravel())
    assert np.array_equal(array(p.find("PointData"), "accuracy"), s.metrics["accuracy"].ravel())
    quads = array(p.find("Polys"), "connectivity").astype(int).reshape(-1, 4)
    assert quads[0].tolist() == [0, 1, nx + 1, nx] and quads[-1].tolist() == [nx * ny - nx - 2, nx * ny - nx - 1,
                                                                            nx * ny - 1, nx * ny - 2]
    assert array(p.find("Polys"), "offsets").astype(int).tolist() == list(range(4, 4 * len(quads) + 1, 4))


def test_diverged_points_are_left_out_of_the_quads(tmp_path):
    s = plane(4, 3)
    s.loss[1, 2] = np.inf
    with pytest.warns(UserWarning, match="1 of 12 grid points have no finite loss"):
        p = piece(write_vtp(s, tmp_path / "s.vtp"))
    assert int(p.get("NumberOfPolys")) == 6 - 4  # every quad around the point (1, 2) is left out
    z = array(p.find("Points"), "Points").reshape(-1, 3)[:, 2]
    assert np.all(np.isfinite(z)) and z[1 * 4 + 2] == np.nanmax(np.where(np.isfinite(s.loss), s.loss, np.nan))


def test_a_vtk_reader_reads_51_by_51_points(tmp_path):
    vtk_xml = pytest.importorskip("vtkmodules.vtkIOXML", reason="the VTK reader check needs the vtk package")
    s = plane(51, 51)
    reader = vtk_xml.vtkXMLPolyDataReader()
    reader.SetFileName(str(write_vtp(s, tmp_path / "s.vtp")))
    reader.Update()
    out = reader.GetOutput()
    assert out.GetNumberOfPoints() == 2601 and out.GetNumberOfPolys() == 50 * 50
    from vtkmodules.util.numpy_support import vtk_to_numpy

    assert np.array_equal(vtk_to_numpy(out.GetPoints().GetData())[:, 2], s.loss.ravel())
    assert np.array_equal(vtk_to_numpy(out.GetPointData().GetArray("loss")), s.loss.ravel())


def test_cli_exports_a_reference_tool_file(tmp_path, capsys):
    x, y = np.linspace(-1, 1, 3), np.linspace(-1, 1, 3)
    loss = np.arange(9.0).reshape(3, 3) + 1
    with h5py.File(tmp_path / "ref.h5", "w") as f:  # the reference tool's layout: no losslens header
        f["xcoordinates"], f["ycoordinates"], f["train_loss"] = x, y, loss
    assert main(["export", str(tmp_path / "ref.h5"), "--vtp", "--log"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'ref_log.vtp'}"
    z = array(piece(tmp_path / "ref_log.vtp").find("Points"), "Points").reshape(-1, 3)[:, 2]
    assert np.allclose(z, np.log(loss.ravel() + 0.1))
    assert main(["export", str(tmp_path / "ref.h5"), "--vtp", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "ref.vtp").is_file()


def test_cli_refuses_a_line_and_a_missing_flag(tmp_path, capsys):
    Surface.from_arrays(np.linspace(0, 1, 4), None, np.ones(4)).save(tmp_path / "line.h5")
    assert main(["export", str(tmp_path / "line.h5"), "--vtp"]) == 2
    assert "exports a plane" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "line.h5")]) == 2
    assert "--vtp" in capsys.readouterr().err


def test_an_existing_file_that_is_not_vtk_is_never_overwritten(tmp_path, capsys):
    plane(3, 3).save(tmp_path / "s.h5")
    before = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "s.vtp").write_text("not VTK")
    assert main(["export", str(tmp_path / "s.h5"), "--vtp"]) == 2
    assert "s.vtp: exists and is not a VTK XML file" in capsys.readouterr().err
    (tmp_path / "s.vtp").unlink()
    assert (tmp_path / "s.h5").read_bytes() == before
    assert main(["export", str(tmp_path / "s.h5"), "--vtp"]) == 0
    assert main(["export", str(tmp_path / "s.h5"), "--vtp"]) == 0  # its own earlier export is replaced

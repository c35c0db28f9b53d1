"""Surfaces written for other software: a ParaView ``.vtp`` file of a loss plane.

``write_vtp`` writes what the reference tool's ``h52vtp.py`` (tomgoldstein/loss-landscape) writes:
a VTK XML PolyData file whose points are the grid's ``(x, y, z)`` with ``z`` the loss (or
:math:`\\ln(\\text{loss} + 0.1)` with ``log``, the reference tool's log scale), in the reference
tool's order (``np.meshgrid(x, y)`` flattened: point ``k = iy * nx + ix`` is ``(x[ix], y[iy])``), and
whose polygons are the grid's quads ``(k, k + 1, k + nx + 1, k + nx)``. The loss and the metrics of
the surface's own split are point data. Plain XML (ASCII, float64 written to round-trip), so no VTK
library is needed; ParaView and ``vtkXMLPolyDataReader`` read it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from losslens._io import atomic
from losslens.errors import LosslensError
from losslens.landscape.surface import Surface
from losslens.plot._base import load_as

LOG_OFFSET = 0.1  # z = ln(loss + LOG_OFFSET) with log=True, as the reference tool's h52vtp.py


def write_vtp(surface, path: str | os.PathLike, *, log: bool = False) -> Path:
    """Write a plane as a ParaView PolyData file: points ``(x, y, z)``, the grid's quads, point data.

    Points without a finite loss (diverged, or not computed in a partial file) are left out of
    every quad; their ``z`` and point data are set to the largest finite value (VTK reads no NaN
    from ASCII), and a warning says how many there are.

    Args:
        surface: a 2D ``Surface``, or the path of a file holding one.
        path: the ``.vtp`` file to write (written whole under a temporary name, then renamed).
        log: ``z = ln(loss + 0.1)`` instead of the loss.

    Returns:
        The path written.

    Raises:
        ValueError: a line (1D surface), or a plane with no finite loss.
        LosslensError: ``path`` exists and is not a VTK XML file (it is never overwritten).
    """
    surface = load_as(surface, (Surface,), "write_vtp")
    if surface.ndim != 2:
        raise ValueError("write_vtp exports a plane (a 2D surface); this surface is a line")
    ny, nx = surface.shape
    finite = np.isfinite(surface.loss)
    if not finite.any():
        raise ValueError("write_vtp: the surface has no finite loss value")
    if not finite.all():
        warnings.warn(f"losslens: {int((~finite).sum())} of {finite.size} grid points have no finite loss; "
                      "they are left out of the quads", stacklevel=2)
    arrays = {name: _capped(a, finite) for name, a in {"loss": surface.loss, **surface.metrics}.items()
              if np.isfinite(a[finite]).any()}
    z = np.log(arrays["loss"] + LOG_OFFSET) if log else arrays["loss"]
    xx, yy = np.meshgrid(surface.x, surface.y)
    points = np.stack([xx.ravel(), yy.ravel(), z.ravel()], axis=1)
    quads = _quads(nx, ny, finite.ravel())
    path = Path(path)
    if path.exists() and not _is_vtk_xml(path):
        raise LosslensError(f"{path}: exists and is not a VTK XML file; refusing to overwrite it (choose another path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        tmp.write_text(_polydata(points, quads, arrays))
    return path


def _is_vtk_xml(path: Path) -> bool:
    """Whether ``path`` is a regular file starting as a VTK XML file does."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return b"<VTKFile" in f.read(256)


def _capped(values: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """``values``, with the largest of its finite values where they or the loss are not finite."""
    keep = finite & np.isfinite(values)
    return np.where(keep, values, values[keep].max())


def _quads(nx: int, ny: int, finite: np.ndarray) -> np.ndarray:
    """``(n, 4)`` point indices ``(k, k + 1, k + nx + 1, k + nx)`` of the cells whose corners are finite."""
    k = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    quads = np.stack([k, k + 1, k + nx + 1, k + nx], axis=1)
    return quads[finite[quads].all(axis=1)]


def _polydata(points: np.ndarray, quads: np.ndarray, point_data: dict[str, np.ndarray]) -> str:
    """The text of a VTK XML PolyData file (one piece, ASCII)."""
    data = "".join(_data_array(v.ravel(), "Float64", name) for name, v in point_data.items())
    return (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
        "  <PolyData>\n"
        f'    <Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" NumberOfLines="0" NumberOfStrips="0" '
        f'NumberOfPolys="{len(quads)}">\n'
        f'      <PointData Scalars="loss">\n{data}      </PointData>\n'
        f"      <Points>\n{_data_array(points.ravel(), 'Float64', 'Points', components=3)}      </Points>\n"
        "      <Polys>\n"
        f"{_data_array(quads.ravel(), 'Int64', 'connectivity')}"
        f"{_data_array(4 * np.arange(1, len(quads) + 1), 'Int64', 'offsets')}"
        "      </Polys>\n"
        "    </Piece>\n"
        "  </PolyData>\n"
        "</VTKFile>\n"
    )


def _data_array(values: np.ndarray, vtk_type: str, name: str, *, components: int = 1) -> str:
    """One ``<DataArray>`` in ASCII, floats written with ``repr`` so that they read back exactly."""
    text = " ".join(map(repr, values.tolist()))
    return (f'        <DataArray type="{vtk_type}" Name="{name}" NumberOfComponents="{components}" format="ascii">\n'
            f"          {text}\n        </DataArray>\n")

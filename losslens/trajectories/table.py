"""Tables of results as CSV files: one header line with the column names, then one line per row."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

from losslens._io import atomic


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts holding at least ``columns``) with the header ``columns``.

    Floats are written with ``repr`` (they read back exactly); ``None`` and NaN as empty fields. The
    file is written through ``_io.atomic`` (parent directories created).
    """
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
    return Path(path)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)

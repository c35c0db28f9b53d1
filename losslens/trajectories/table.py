"""Tables of results as CSV files: one header line with the column names, then one line per row."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts holding at least ``columns``) with the header ``columns``.

    Floats are written with ``repr`` (they read back exactly); ``None`` and NaN as empty fields.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
    return path


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)

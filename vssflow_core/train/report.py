"""JSON reports of the ``eval``, ``eval-compare``, ``diagnose`` and ``placement-check`` commands."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_report(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temporary file in the same folder, so a
    reader never sees half a report. An existing report at ``path`` is replaced (a rerun updates it).
    Numpy scalars and other number-like values are written as floats."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, out)
